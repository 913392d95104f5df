"""Test rig: episode_recorder (and friends) as child processes over DDS, and a peer node in the test process that
publishes like the arm's driver and camera, drives the record_episode action and listens to diagnostics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import rclpy
from roarm_common.child_process import die_with_parent
from diagnostic_msgs.msg import DiagnosticArray
from roarm_common.action_client import ActionClient  # rclpy 7 can lose an answer (see the module)
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roarm_description import joints
from roarm_interfaces.action import RecordEpisode
from roarm_interfaces.srv import StopEpisode


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONUNBUFFERED="1")


def yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


GOAL_RESEND_S = 10.0


def start_node(module: str, params: dict[str, Any], log_path: Path, name: str | None = None,
               remaps: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m <module> --ros-args -p k:=v ...`: the node's own console-script body in a process of its own."""
    args = [sys.executable, "-m", module, "--ros-args"]
    if name:
        args += ["-r", f"__node:={name}"]
    for src, dst in (remaps or {}).items():
        args += ["-r", f"{src}:={dst}"]
    for key, value in params.items():
        args += ["-p", f"{key}:={yaml_value(value)}"]
    log = open(log_path, "w")
    return subprocess.Popen(args, env=child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def wait_for(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


class Peer:
    """A node in the test process: fake arm/camera publishers (on request), record_episode client, diagnostics."""

    def __init__(self, name: str = "recorder_test_peer"):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self.action = ActionClient(self.node, RecordEpisode, "record_episode")
        self.stop_client = self.node.create_client(StopEpisode, "stop_episode")
        self.diagnostics: list[Any] = []
        self.node.create_subscription(DiagnosticArray, "diagnostics", self._on_diag, 50)
        self.feedback: list[RecordEpisode.Feedback] = []
        self.published = {"joint_states": 0, "camera/image_raw": 0, "joint_trajectory": 0}
        self._timer = None
        self._thread.start()

    def _spin(self) -> None:
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("episode_recorder"):
                self.diagnostics.append(status)

    # -------------------------------------------------------------------------------- fake arm and camera
    def publish_stream(self, rate: float = 30.0, image_size: int = 8, noisy_images: bool = False) -> None:
        """Joint states, rgb8 images (one grey level per frame; noisy_images: random bytes, which no compression
        shrinks) and commands at ``rate``."""
        self.joint_pub = self.node.create_publisher(JointState, "joint_states", 10)
        self.image_pub = self.node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.command_pub = self.node.create_publisher(JointTrajectory, "joint_trajectory", 10)
        self._tick_index = 0
        self._image_size, self._noisy_images = image_size, noisy_images
        self._timer = self.node.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        i = self._tick_index = self._tick_index + 1
        stamp = self.node.get_clock().now().to_msg()
        q = [0.01 * i] * joints.NUM_JOINTS
        state = JointState(name=list(joints.JOINT_NAMES), position=q)
        state.header.stamp = stamp
        self.joint_pub.publish(state)
        n = self._image_size
        pixels = os.urandom(3 * n * n) if self._noisy_images else bytes([i % 256]) * (3 * n * n)
        image = Image(height=n, width=n, encoding="rgb8", step=3 * n, data=pixels)
        image.header.stamp = stamp
        self.image_pub.publish(image)
        command = JointTrajectory(joint_names=list(joints.JOINT_NAMES),
                                  points=[JointTrajectoryPoint(positions=[x + 0.005 for x in q])])
        command.header.stamp = stamp
        self.command_pub.publish(command)
        for topic in self.published:
            self.published[topic] += 1

    # -------------------------------------------------------------------------------- recorder interface
    def start_episode(self, task: str = "Pick up the white box", max_duration: float = 0.0, timeout: float = 60.0):
        assert self.action.wait_for_server(timeout_sec=timeout), "record_episode server not available"
        self.feedback.clear()
        end = time.monotonic() + timeout
        while True:
            future = self.action.send_goal_async(RecordEpisode.Goal(task=task, max_duration=max_duration),
                                                 feedback_callback=lambda f: self.feedback.append(f.feedback))
            # A goal sent before DDS matched every endpoint of a (re)started server is lost, not queued: send again.
            try:
                wait_for(future.done, min(GOAL_RESEND_S, max(0.1, end - time.monotonic())), "goal response")
                return future.result()
            except AssertionError:
                if time.monotonic() > end:
                    raise

    def result(self, handle, timeout: float = 60.0):
        future = handle.get_result_async()
        wait_for(future.done, timeout, "the episode's result")
        wrapped = future.result()
        return wrapped.status, wrapped.result

    def stop(self, keep: bool, timeout: float = 60.0) -> StopEpisode.Response:
        assert self.stop_client.wait_for_service(timeout_sec=30.0)
        future = self.stop_client.call_async(StopEpisode.Request(keep=keep))
        wait_for(future.done, timeout, "stop_episode reply")
        return future.result()

    def close(self) -> None:
        if not self._running:
            return
        self._running = False
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
