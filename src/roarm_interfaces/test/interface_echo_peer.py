"""Peer process for test_interfaces_two_processes.py: echoes every custom message and serves every custom
service and the action with answers computed from the request, so the test can tell a real round trip from a
default-constructed reply. Exits when stdin closes (the test process ended) or after --lifetime seconds."""

import argparse
import sys
import threading
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from roarm_interfaces.action import MoveJoints
from roarm_interfaces.msg import ActionChunk, EpisodeOutcome
from roarm_interfaces.srv import GetEpisodeOutcome, ResetEpisode, SetTask, StartEpisode, StopEpisode


class EchoPeer(Node):
    def __init__(self):
        super().__init__("interface_echo_peer")
        group = ReentrantCallbackGroup()
        self._chunk_echo = self.create_publisher(ActionChunk, "echo/action_chunk", 10)
        self._outcome_echo = self.create_publisher(EpisodeOutcome, "echo/episode_outcome", 10)
        self.create_subscription(ActionChunk, "in/action_chunk", self._chunk_echo.publish, 10)
        self.create_subscription(EpisodeOutcome, "in/episode_outcome", self._on_outcome, 10)
        self._last_outcome = EpisodeOutcome()
        self._task = "initial task"
        self._episode = 0
        self.create_service(StartEpisode, "start_episode", self._start)
        self.create_service(StopEpisode, "stop_episode", self._stop)
        self.create_service(SetTask, "set_task", self._set_task)
        self.create_service(ResetEpisode, "reset_episode", self._reset)
        self.create_service(GetEpisodeOutcome, "get_outcome", self._get_outcome)
        ActionServer(self, MoveJoints, "move_joints", execute_callback=self._execute,
                     cancel_callback=lambda _goal: CancelResponse.ACCEPT, callback_group=group)

    def _on_outcome(self, msg):
        self._last_outcome = msg
        self._outcome_echo.publish(msg)

    def _start(self, request, response):
        response.success = bool(request.task)
        response.message = f"recording '{request.task}'" if request.task else "empty task"
        response.episode_index = self._episode
        return response

    def _stop(self, request, response):
        response.success = True
        response.episode_index = self._episode
        response.message = "kept" if request.keep else "discarded"
        response.message_count = 42 if request.keep else 0
        response.duration = 1.5
        self._episode += 1
        return response

    def _set_task(self, request, response):
        response.previous_task, self._task = self._task, request.task
        response.success = True
        response.message = f"task is now '{request.task}'"
        return response

    def _reset(self, request, response):
        response.success = True
        response.seed_used = request.seed if request.seed >= 0 else 1000
        response.episode_index = self._episode
        response.box_pose.header.frame_id = "base_link"
        response.box_pose.pose.position.x = 0.001 * response.seed_used
        response.box_pose.pose.orientation.w = 1.0
        return response

    def _get_outcome(self, _request, response):
        response.outcome = self._last_outcome
        return response

    def _execute(self, goal_handle):
        goal = goal_handle.request
        steps = 5
        for k in range(1, steps + 1):
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                return MoveJoints.Result(success=False, message="canceled")
            feedback = MoveJoints.Feedback()
            feedback.progress = k / steps
            feedback.current_positions = [p * k / steps for p in goal.positions]
            goal_handle.publish_feedback(feedback)
            time.sleep(goal.duration / steps)
        goal_handle.succeed()
        return MoveJoints.Result(success=True, message="reached", final_positions=list(goal.positions), max_error=0.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lifetime", type=float, default=120.0)
    args = parser.parse_args()
    rclpy.init()
    node = EchoPeer()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    print("READY", flush=True)
    deadline = time.monotonic() + args.lifetime
    # stdin closing means the test process is gone: leave then.
    threading.Thread(target=lambda: (sys.stdin.read(), rclpy.try_shutdown()), daemon=True).start()
    while rclpy.ok() and time.monotonic() < deadline:
        time.sleep(0.1)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
