"""``teleop_relay``: leader-follower teleoperation through the follower driver's normal command path.

Subscribes ``leader/joint_states`` (the leader arm's own arm_driver, namespace/remap ``leader``, torque off so a
person can move it) and the follower's ``joint_states``; streams one-point ``joint_trajectory`` setpoints at
``command_rate`` to the follower's arm_driver, which applies its safety checks (limits, max step, watchdog,
e-stop) as for any other controller. What it sends is the episode's ACTION (the recorder records this topic);
the follower's measured ``joint_states`` is the STATE. See relay_core.py for the no-jump rule.

At start it asks the leader's driver to switch torque off (``leader_torque_service``, retried until it answers),
so the leader arm is free to be moved by hand.
"""

from __future__ import annotations

import time
from typing import Any

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roarm_common.node_main import run_node
from roarm_common.parameters import Param, declare_parameters
from roarm_description import joints
from roarm_recorder.relay_core import FollowerStream, RelayConfig

PARAMETERS: tuple[Param, ...] = (
    Param("leader_topic", "leader/joint_states", "measured joints of the leader arm (its own arm_driver)"),
    Param("state_topic", "joint_states", "measured joints of the follower arm"),
    Param("command_topic", "joint_trajectory", "setpoints to the follower's arm_driver (one point each)"),
    Param("command_rate", 30.0, "setpoints per second, Hz", range=(1.0, 200.0)),
    Param("max_step", 0.1, "rad: most any joint's setpoint moves per setpoint (keep below arm_driver max_step)",
          range=(0.001, 1.0)),
    Param("leader_timeout", 0.25, "s without a leader message before the stream stops (the follower holds)",
          range=(0.01, 10.0)),
    Param("joint_offsets", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
          "rad added to the leader's joints, URDF joint order (calibrates one arm against the other)",
          range=(-1.0, 1.0)),
    Param("leader_torque_service", "leader/set_torque",
          "the leader driver's set_torque, called with false at start ('' = leave the leader's torque alone)"),
    Param("enabled", True, "false: never stream"),
    Param("diagnostics_period", 1.0, "s between diagnostics messages", range=(0.05, 60.0)),
)


class TeleopRelayNode(Node):
    def __init__(self, node_name: str = "teleop_relay", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        offsets = list(p["joint_offsets"])
        if len(offsets) != joints.NUM_JOINTS:
            raise ValueError(f"joint_offsets needs {joints.NUM_JOINTS} values, got {offsets}")
        self.stream = FollowerStream(RelayConfig(
            max_step=float(p["max_step"]), leader_timeout=float(p["leader_timeout"]), offsets=offsets,
            lower=joints.LOWER_LIMITS, upper=joints.UPPER_LIMITS))
        self.sent = 0
        self.bad_messages = 0
        self._leader_torque_off = not p["leader_torque_service"]
        self._torque_future = None
        self._pub = self.create_publisher(JointTrajectory, str(p["command_topic"]), 10)
        self._diag = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.create_subscription(JointState, str(p["leader_topic"]), self._on_leader, 10)
        self.create_subscription(JointState, str(p["state_topic"]), self._on_follower, 10)
        self._torque_client = (self.create_client(SetBool, str(p["leader_torque_service"]))
                               if p["leader_torque_service"] else None)
        self.create_timer(1.0 / float(p["command_rate"]), self._tick)
        self.create_timer(float(p["diagnostics_period"]), self._publish_diagnostics)
        self.create_timer(0.5, self._leader_torque)

    def _positions(self, msg: JointState):
        try:
            return joints.order_by_names(msg.name, msg.position)
        except ValueError as exc:
            self.bad_messages += 1
            self.get_logger().warning(f"joint_states ignored: {exc}", throttle_duration_sec=5.0)
            return None

    def _on_leader(self, msg: JointState) -> None:
        q = self._positions(msg)
        if q is not None:
            self.stream.leader(q, time.monotonic())

    def _on_follower(self, msg: JointState) -> None:
        q = self._positions(msg)
        if q is not None:
            self.stream.follower(q)

    def _tick(self) -> None:
        if not self.get_parameter("enabled").value:
            return
        setpoint = self.stream.tick(time.monotonic())
        if setpoint is None:
            return
        msg = JointTrajectory(joint_names=list(joints.JOINT_NAMES),
                              points=[JointTrajectoryPoint(positions=[float(x) for x in setpoint],
                                                           time_from_start=Duration())])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pub.publish(msg)
        self.sent += 1

    def _leader_torque(self) -> None:
        """Leader torque off, retried every 0.5 s until its driver says done (it may start after this node)."""
        if self._leader_torque_off or self._torque_client is None:
            return
        if self._torque_future is not None:
            if not self._torque_future.done():
                return
            reply = self._torque_future.result()
            self._torque_future = None
            if reply is not None and reply.success:
                self._leader_torque_off = True
                self.get_logger().info(f"leader torque off ({reply.message}): move the leader arm by hand")
                return
        if self._torque_client.service_is_ready():
            self._torque_future = self._torque_client.call_async(SetBool.Request(data=False))

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=f"{self.get_name()}: relay", hardware_id="teleop_relay")
        streaming = self.stream.setpoint is not None
        if not self._leader_torque_off:
            status.level, status.message = DiagnosticStatus.WARN, "waiting for the leader driver (torque off)"
        elif not streaming:
            status.level, status.message = DiagnosticStatus.WARN, "no leader or follower joint_states: not streaming"
        else:
            status.level = DiagnosticStatus.OK
            status.message = "tracking the leader" if self.stream.caught_up else "moving toward the leader"
        status.values = [KeyValue(key="setpoints_sent", value=str(self.sent)),
                         KeyValue(key="bad_messages", value=str(self.bad_messages))]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag.publish(array)


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopRelayNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
