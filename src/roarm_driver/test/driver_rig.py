"""Test rig: the real ArmDriverNode over a pty to the firmware simulator, plus a probe node, in one rclpy Context.

The simulator runs in its own process (roarm_driver.sim_process.SimulatorProcess: the robot is separate hardware,
and a simulator sharing the driver's interpreter would share its GIL too); the driver node stays in the test process
so that tests can read its snapshot() and reach its link (single-node behaviour)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from roarm_common.action_client import ActionClient  # rclpy 7 can lose an answer (see the module)
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roarm_common.executors import QueueAwareMultiThreadedExecutor

from roarm_interfaces.action import MoveJoints
from roarm_description import joints
from roarm_driver.arm_driver_node import ArmDriverNode
from roarm_driver.sim_process import SimulatorProcess


def wait_until(predicate, timeout: float = 3.0, period: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


class Probe(Node):
    """What other nodes of the stack would do: listen to joint_states/diagnostics, command, call services."""

    def __init__(self, context: Context):
        super().__init__("driver_probe", context=context)
        self.lock = threading.Lock()
        self.states: list[tuple[float, JointState]] = []  # (monotonic receipt, msg)
        self.diagnostics: list[DiagnosticArray] = []
        self.create_subscription(JointState, "joint_states", self._on_state, 50)
        self.create_subscription(DiagnosticArray, "diagnostics", self._on_diag, 10)
        self.commands = self.create_publisher(JointTrajectory, "joint_trajectory", 10)
        self.set_torque = self.create_client(SetBool, "set_torque")
        self.estop = self.create_client(Trigger, "estop")
        self.reset_estop = self.create_client(Trigger, "reset_estop")
        self.move = ActionClient(self, MoveJoints, "move_joints")

    def _on_state(self, msg: JointState) -> None:
        with self.lock:
            self.states.append((time.monotonic(), msg))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics.append(msg)

    def latest(self) -> JointState | None:
        with self.lock:
            return self.states[-1][1] if self.states else None

    def count(self) -> int:
        with self.lock:
            return len(self.states)

    def states_since(self, t: float) -> list[JointState]:
        with self.lock:
            return [m for r, m in self.states if r >= t]

    def send(self, positions, names=None, times=None, stamp=None) -> None:
        """One point (positions) or a trajectory (positions = points, times = time_from_start). ``stamp``: ROS
        time in s for header.stamp (None: zero, i.e. "now")."""
        msg = JointTrajectory()
        if stamp is not None:
            msg.header.stamp.sec = int(stamp)
            msg.header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
        msg.joint_names = list(names or joints.JOINT_NAMES)
        points = positions if times is not None else [positions]
        for i, q in enumerate(points):
            point = JointTrajectoryPoint()
            point.positions = [float(v) for v in q]
            if times is not None:
                point.time_from_start.sec = int(times[i])
                point.time_from_start.nanosec = int(round((times[i] - int(times[i])) * 1e9))
            msg.points.append(point)
        self.commands.publish(msg)

    def call(self, client, request, timeout: float = 3.0):
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        future = client.call_async(request)
        assert wait_until(future.done, timeout), f"{client.srv_name} did not answer"
        return future.result()


class Rig:
    def __init__(self, sim_kwargs: dict | None = None, executor: str = "multi", start: bool = True,
                 sim_started: SimulatorProcess | None = None, **params: Any):
        self.context = Context()
        rclpy.init(context=self.context)
        self.sim = sim_started or SimulatorProcess(seed=0, **(sim_kwargs or {}))
        self.sim.start()
        overrides = {"port": self.sim.port, "reconnect_period": 0.1, **params}
        try:
            self.node = ArmDriverNode(context=self.context,
                                      parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        except BaseException:
            self.sim.stop()
            rclpy.shutdown(context=self.context)
            raise
        self.probe = Probe(self.context)
        self.executor = (QueueAwareMultiThreadedExecutor(num_threads=4, context=self.context) if executor == "multi"
                         else SingleThreadedExecutor(context=self.context))
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down at teardown
            pass

    def start(self) -> None:
        self.node.trigger_configure()
        self.node.trigger_activate()
        assert wait_until(lambda: self.probe.count() > 3, 5.0), f"no joint_states: {self.node.snapshot()}"

    def measured(self) -> np.ndarray:
        return np.array(self.probe.latest().position)

    def t102_count(self) -> int:
        return self.sim.stats["T102"]

    def ros_now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def t102_written(self) -> list[tuple[float, np.ndarray]]:
        """(simulator receipt time, URDF positions) of every T:102 the firmware read, in order."""
        from roarm_driver import protocol as proto

        out = []
        for t, m in self.sim.received_commands():
            if m.get("T") == 102:
                out.append((t, joints.firmware_to_urdf(np.array([float(m[k]) for k in proto.T102_KEYS]))))
        return out

    def close(self) -> None:
        try:
            self.node.trigger_shutdown()
        except Exception:  # noqa: BLE001
            pass
        self.executor.shutdown(timeout_sec=2.0)
        self.probe.destroy_node()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=3.0)
        self.sim.stop()
