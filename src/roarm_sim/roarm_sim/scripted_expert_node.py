"""scripted_expert: picks the box in the simulated world by streaming joint setpoints, like the policy node does.

Reads sim/episode_outcome (which episode runs), sim/box_pose and joint_states; when a new episode starts RUNNING it
plans the pick from the arm's measured pose (expert.py) and streams one-point JointTrajectory messages on
``joint_trajectory`` at ``command_rate`` until the episode ends. Silent otherwise, so it never fights a reset.
The same setpoints, before any DART perturbation (perturbation_std > 0: perturbation.py), go to ``intended_topic``:
what a demonstration recorded with perturbation is labelled with.
"""

from __future__ import annotations

import math
import time

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roarm_description import joints
from roarm_interfaces.msg import EpisodeOutcome

from .expert import ExpertConfig, PlanningError, ScriptedExpert
from .perturbation import MAX_STD, ExecutionPerturbation, PerturbationConfig, perturbed_setpoint
from .scene import BoxPose
from .sim_world_node import POSITIVE, skip_if_running
from roarm_common.node_main import run_node
from roarm_common.parameters import Param, declare_parameters

PARAMETERS = (
    Param("command_rate", 20.0, "joint_trajectory setpoints per second, Hz", range=(0.1, 1000.0)),
    Param("max_joint_speed", 1.0, "fastest arm joint during a move, rad/s", range=POSITIVE),
    Param("gripper_speed", 2.0, "gripper opening/closing speed, rad/s", range=POSITIVE),
    Param("min_move_time", 0.5, "shortest move of a phase, s", range=POSITIVE),
    Param("approach_height", 0.07, "pre-grasp: the jaws' clamp point this far above the box centre, m",
          range=(0.0, 1.0)),
    Param("lift_height", 0.12, "lift the box this far, m", range=(0.0, 1.0)),
    Param("open_margin", 0.02, "open the jaws to the box width plus this before descending, m", range=(0.0, 0.2)),
    Param("close_time", 0.8, "time given to the jaws to close on the box, s", range=(0.0, 60.0)),
    Param("settle_tolerance", 0.04, "a phase ends when the measured joints are this close to its goal, rad",
          range=(0.0, 3.2)),
    Param("settle_timeout", 2.0, "... or this long after its planned time, s", range=(0.0, 60.0)),
    Param("max_command_step", 0.15, "most any joint's setpoint moves per command, rad (keep below arm_driver "
          "max_step)", range=(1e-4, 3.2)),
    Param("resync_time", 0.3, "restart the setpoints from the measured joints when the arm has stood still this long "
          "more than max_command_step from the last setpoint (the driver refuses the stream), s", range=POSITIVE),
    Param("box_size", 0.03, "box footprint edge assumed by the expert when planning, m (sim_world draws "
          "0.025..0.04)", range=(0.005, 0.2)),
    Param("box_height", 0.03, "box height assumed by the expert, m", range=(0.005, 0.2)),
    Param("outcome_timeout", 0.5, "stop streaming when no RUNNING sim/episode_outcome arrived for this long, s",
          range=POSITIVE),
    Param("enabled", True, "false: never stream (the policy drives)"),
    Param("perturbation_std", 0.0, "DART: std of the smooth offset added to each arm joint's EXECUTED setpoint "
          "(joint_trajectory) while intended_topic carries the clean one, rad; 0 = none (perturbation.py)",
          range=(0.0, MAX_STD)),
    Param("perturbation_max_rate", 0.2, "DART: fastest change of that offset, rad/s", range=(1e-3, 10.0)),
    Param("perturbation_hold_time", 0.8, "DART: seconds between two random offset targets, s", range=(0.01, 60.0)),
    Param("perturbation_miss_fraction", 0.0, "share of the episodes (drawn per seed) whose first pick executes a "
          "base offset that makes the jaws close beside the box, to record the recovery (perturbation.py)",
          range=(0.0, 1.0)),
    Param("max_attempts", 3, "picks tried in one episode: a grasp whose box did not rise with the lift is tried "
          "again from where the arm is (1 = never)", range=(1, 20)),
    Param("intended_topic", "expert/intended_trajectory", "the expert's clean setpoints (the demonstration's "
          "action when perturbation_std > 0; equal to joint_trajectory when it is 0)"),
)


class ScriptedExpertNode(Node):
    def __init__(self, node_name: str = "scripted_expert", **kwargs):
        super().__init__(node_name, **kwargs)
        p = declare_parameters(self, PARAMETERS)
        self.params = p
        self.config = ExpertConfig(
            max_joint_speed=float(p["max_joint_speed"]), gripper_speed=float(p["gripper_speed"]),
            min_move_time=float(p["min_move_time"]), approach_height=float(p["approach_height"]),
            lift_height=float(p["lift_height"]), open_margin=float(p["open_margin"]),
            close_time=float(p["close_time"]), settle_tolerance=float(p["settle_tolerance"]),
            settle_timeout=float(p["settle_timeout"]), max_command_step=float(p["max_command_step"]),
            resync_time=float(p["resync_time"]), max_attempts=int(p["max_attempts"]))
        self.expert = ScriptedExpert(self.config)
        self.perturbation_config = PerturbationConfig(std=float(p["perturbation_std"]),
                                                      max_rate=float(p["perturbation_max_rate"]),
                                                      hold_time=float(p["perturbation_hold_time"]),
                                                      miss_fraction=float(p["perturbation_miss_fraction"]))
        self.perturbation = ExecutionPerturbation(self.perturbation_config)
        self._q: np.ndarray | None = None
        self._q_time: float | None = None
        self._box: PoseStamped | None = None
        self._outcome: EpisodeOutcome | None = None
        self._outcome_time = 0.0
        self._planned_episode: int | None = None
        self._sent = 0
        # Inputs only store the latest message (one attribute assignment each): a reentrant group, so the node's
        # default (mutually exclusive) group is not kept busy at 50 Hz; rclpy's MultiThreadedExecutor busy-waits
        # while a ready entity's group is busy. The tick runs one at a time (skip_if_running).
        inputs = ReentrantCallbackGroup()
        self.create_subscription(JointState, "joint_states", self._on_joint_states, 10, callback_group=inputs)
        self.create_subscription(PoseStamped, "sim/box_pose", self._on_box, 10, callback_group=inputs)
        self.create_subscription(EpisodeOutcome, "sim/episode_outcome", self._on_outcome, 10, callback_group=inputs)
        self.pub = self.create_publisher(JointTrajectory, "joint_trajectory", 10)
        self.intended_pub = self.create_publisher(JointTrajectory, str(p["intended_topic"]), 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.create_timer(1.0 / float(p["command_rate"]), skip_if_running(self._tick), callback_group=inputs)
        self.create_timer(1.0, self._publish_diagnostics)

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            self._q = joints.order_by_names(msg.name, msg.position)
            self._q_time = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9  # when the driver read it
        except ValueError as exc:
            self.get_logger().warn(f"ignoring joint_states: {exc}", throttle_duration_sec=5.0)

    def _on_box(self, msg: PoseStamped) -> None:
        self._box = msg

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        self._outcome = msg
        self._outcome_time = time.monotonic()

    def _tick(self) -> None:
        outcome = self._outcome
        if (not self.params["enabled"] or outcome is None or self._q is None or self._box is None
                or outcome.status != EpisodeOutcome.RUNNING
                or time.monotonic() - self._outcome_time > float(self.params["outcome_timeout"])):
            return
        now = time.monotonic()
        if outcome.episode_index != self._planned_episode or self._outcome_seed != outcome.seed:
            # Plan only from joint_states measured after the episode started (after the reset's move_joints):
            # an older one, held up in a busy executor, shows the arm where the reset took it FROM, and the first
            # setpoint planned from it is far from the driver's last commanded pose (refused: "step larger than
            # max_step").
            started = outcome.header.stamp.sec + outcome.header.stamp.nanosec * 1e-9 - float(outcome.elapsed)
            if self._q_time is None or self._q_time < started:
                return
            self._planned_episode = outcome.episode_index
            self._outcome_seed = outcome.seed
            # one perturbation sequence per episode seed: a re-recorded seed is the same demonstration
            self.perturbation = ExecutionPerturbation(self.perturbation_config, seed=max(int(outcome.seed), 0))
            try:
                self.expert.start(self._box_pose(), self._q, now)
                self.get_logger().info(f"episode {outcome.episode_index}: planned the pick from the measured pose")
            except PlanningError as exc:
                self.get_logger().error(f"episode {outcome.episode_index}: {exc}")
                return
        if self.expert.failure:
            return
        if self.expert.check_grasp(self._box_pose(), now):
            self.get_logger().info(f"episode {outcome.episode_index}: the box did not rise with the lift (a missed "
                                   f"grasp): pick {self.expert.attempt} planned from here")
        intended, executed = perturbed_setpoint(self.expert, self.perturbation, now, self._q, self._q_time)
        stamp = self.get_clock().now().to_msg()
        self.pub.publish(self._setpoint_message(executed, stamp))
        self.intended_pub.publish(self._setpoint_message(intended, stamp))
        self._sent += 1

    def _setpoint_message(self, setpoint: np.ndarray, stamp) -> JointTrajectory:
        msg = JointTrajectory()
        msg.header.stamp = stamp
        msg.joint_names = list(joints.JOINT_NAMES)
        point = JointTrajectoryPoint()
        point.positions = [float(v) for v in joints.clamp_to_limits(setpoint)]
        period = 1.0 / float(self.params["command_rate"])
        point.time_from_start = Duration(sec=int(period), nanosec=int((period % 1.0) * 1e9))
        msg.points = [point]
        return msg

    _outcome_seed = None

    def _box_pose(self) -> BoxPose:
        pose = self._box.pose
        yaw = 2.0 * math.atan2(pose.orientation.z, pose.orientation.w)
        return BoxPose(pose.position.x, pose.position.y, pose.position.z, yaw, float(self.params["box_size"]),
                       float(self.params["box_height"]))

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=f"{self.get_name()}: scripted expert", hardware_id="sim")
        if self.expert.failure:
            status.level, status.message = DiagnosticStatus.ERROR, self.expert.failure
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        status.values = [KeyValue(key="phase", value=self.expert.phase if self._planned_episode is not None else "IDLE"),
                         KeyValue(key="episode_index", value=str(self._planned_episode)),
                         KeyValue(key="setpoints_sent", value=str(self._sent)),
                         KeyValue(key="resyncs", value=str(self.expert.resyncs)),
                         KeyValue(key="attempt", value=str(self.expert.attempt)),
                         KeyValue(key="perturbation_rad", value=f"{float(np.max(np.abs(self.perturbation.current))):.4f}")]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.diag_pub.publish(array)


def main(args=None) -> int:
    return run_node(ScriptedExpertNode, args)


if __name__ == "__main__":
    main()
