"""The simulated pick graph in ONE process: firmware simulator (pty) -> arm_driver -> sim_world -> controller.

Used by demo.py and the end-to-end test. Every node reads its YAML from src/roarm_vla_bringup/config/ through
``--params-file`` cli_args (as launch does), plus typed overrides; one rclpy Context, one MultiThreadedExecutor.
The controller is the scripted expert, or the VLA policy node (lifecycle) with a given checkpoint.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data

from roarm_interfaces.msg import EpisodeOutcome
from roarm_interfaces.srv import ResetEpisode
from sensor_msgs.msg import CameraInfo, Image, JointState
from geometry_msgs.msg import PoseStamped
from trajectory_msgs.msg import JointTrajectory

CONFIG_DIR = Path(__file__).resolve().parents[2] / "roarm_vla_bringup" / "config"

MONITORED_TOPICS = {
    "joint_states": (JointState, 10),
    "joint_trajectory": (JointTrajectory, 10),
    "camera/image_raw": (Image, qos_profile_sensor_data),
    "camera/camera_info": (CameraInfo, qos_profile_sensor_data),
    "sim/box_pose": (PoseStamped, 10),
    "sim/episode_outcome": (EpisodeOutcome, 10),
}


def params_file_args(node_name: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """--ros-args --params-file <node>.yaml (when it exists): the same YAML launch and the runner use."""
    path = config_dir / f"{node_name}.yaml"
    return ["--ros-args", "--params-file", str(path)] if path.exists() else []


def _overrides(values: dict[str, Any] | None) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in (values or {}).items()]


class SimSession:
    """Start with ``start()`` (or ``with``); ``reset(seed)`` and ``wait_for_outcome()`` run episodes."""

    def __init__(self, controller: str = "expert", world_params: dict | None = None,
                 expert_params: dict | None = None, driver_params: dict | None = None,
                 policy_params: dict | None = None, frame_callback: Callable[[Image], None] | None = None,
                 num_threads: int = 6, log: Callable[[str], None] = print):
        if controller not in ("expert", "policy"):
            raise ValueError(f"controller must be 'expert' or 'policy', got {controller!r}")
        self.controller = controller
        self.world_params = {"auto_start": False, **(world_params or {})}
        self.expert_params = expert_params or {}
        self.driver_params = driver_params or {}
        self.policy_params = policy_params or {}
        self.frame_callback = frame_callback
        self.num_threads = num_threads
        self.log = log
        self.simulator = None
        self.context: rclpy.Context | None = None
        self.nodes: dict[str, Node] = {}
        self.lifecycle: list[str] = []
        self.counts: dict[str, int] = defaultdict(int)
        self.outcome: EpisodeOutcome | None = None
        self._outcome_event = threading.Condition()
        self._executor: MultiThreadedExecutor | None = None
        self._thread: threading.Thread | None = None
        self._count_start = time.monotonic()

    def __enter__(self) -> "SimSession":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- start / stop -----------------------------------------------------------------------------------------
    def start(self) -> None:
        from roarm_driver.arm_driver_node import ArmDriverNode
        from roarm_driver.firmware_sim import FirmwareSimulator

        from .scripted_expert_node import ScriptedExpertNode
        from .sim_world_node import SimWorldNode

        self.simulator = FirmwareSimulator()
        port = self.simulator.start()
        self.log(f"firmware simulator on {port}")
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        try:
            self._executor = MultiThreadedExecutor(num_threads=self.num_threads, context=self.context)
            self._add(ArmDriverNode, "arm_driver", {**self.driver_params, "port": port}, lifecycle=True)
            self._add(SimWorldNode, "sim_world", self.world_params)
            if self.controller == "expert":
                self._add(ScriptedExpertNode, "scripted_expert", self.expert_params)
            else:
                from vla_policy_node.vla_policy_node import VlaPolicyNode

                self._add(VlaPolicyNode, "vla_policy", self.policy_params, lifecycle=True)
            self._monitor = self._make_monitor()
            self._thread = threading.Thread(target=self._spin, name="sim_session_executor", daemon=True)
            self._thread.start()
            for name in self.lifecycle:
                for transition in ("configure", "activate"):
                    result = getattr(self.nodes[name], f"trigger_{transition}")()
                    if "SUCCESS" not in str(result):
                        raise RuntimeError(f"{name}: {transition} failed ({result})")
                    self.log(f"{name}: {transition}d")
            self._wait_for_joint_states()
        except BaseException:
            self.stop()
            raise

    def _add(self, cls, name: str, params: dict, lifecycle: bool = False) -> Node:
        node = cls(node_name=name, context=self.context, cli_args=params_file_args(name),
                   parameter_overrides=_overrides(params))
        self.nodes[name] = node
        self._executor.add_node(node)
        if lifecycle:
            self.lifecycle.append(name)
        return node

    def _make_monitor(self) -> Node:
        node = Node("sim_session_monitor", context=self.context)
        for topic, (msg_type, qos) in MONITORED_TOPICS.items():
            node.create_subscription(msg_type, topic, self._counter(topic), qos)
        self.reset_client = node.create_client(ResetEpisode, "sim/reset_episode")
        self.nodes["sim_session_monitor"] = node
        self._executor.add_node(node)
        return node

    def _counter(self, topic: str):
        def count(msg) -> None:
            self.counts[topic] += 1
            if topic == "sim/episode_outcome":
                with self._outcome_event:
                    self.outcome = msg
                    self._outcome_event.notify_all()
            elif topic == "camera/image_raw" and self.frame_callback is not None:
                self.frame_callback(msg)
        return count

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception as exc:  # shutdown races are not errors; anything else is reported
            if self.context is not None and self.context.ok():
                self.log(f"executor stopped: {exc!r}")

    def _wait_for_joint_states(self, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while self.counts["joint_states"] < 5:
            if time.monotonic() > end:
                raise RuntimeError(f"no joint_states from arm_driver within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for name in reversed(self.lifecycle):
            node = self.nodes.get(name)
            try:
                node.trigger_deactivate()
                node.trigger_cleanup()
            except Exception as exc:  # keep shutting the rest down
                self.log(f"{name}: deactivate/cleanup failed: {exc!r}")
        self.lifecycle = []
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=5.0)
            self._executor = None
        if self._thread is not None:  # no callback may still run when the nodes are destroyed
            self._thread.join(timeout=5.0)
            self._thread = None
        for node in self.nodes.values():
            try:
                node.destroy_node()
            except Exception as exc:
                self.log(f"destroying {node.get_name()} failed: {exc!r}")
        self.nodes = {}
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)
            self.context = None
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None

    # --- episodes ---------------------------------------------------------------------------------------------
    def reset(self, seed: int, timeout: float = 30.0) -> ResetEpisode.Response:
        if not self.reset_client.wait_for_service(timeout_sec=10.0):
            raise RuntimeError("sim/reset_episode not available")
        request = ResetEpisode.Request()
        request.seed = int(seed)
        future = self.reset_client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                raise RuntimeError(f"sim/reset_episode did not answer within {timeout:.0f} s")
            time.sleep(0.02)
        response = future.result()
        if not response.success:
            raise RuntimeError(f"reset failed: {response.message}")
        return response

    def wait_for_outcome(self, episode_index: int, timeout: float) -> EpisodeOutcome:
        """Block until episode ``episode_index`` ends (SUCCESS or TIMEOUT); returns its last outcome message."""
        end = time.monotonic() + timeout
        with self._outcome_event:
            while True:
                o = self.outcome
                if o is not None and o.episode_index == episode_index and o.status != EpisodeOutcome.RUNNING:
                    return o
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"episode {episode_index} did not end within {timeout:.0f} s")
                self._outcome_event.wait(min(left, 0.2))

    def restart_counts(self) -> None:
        self.counts = defaultdict(int)
        self._count_start = time.monotonic()

    def topic_rates(self) -> dict[str, float]:
        elapsed = max(1e-6, time.monotonic() - self._count_start)
        return {topic: self.counts.get(topic, 0) / elapsed for topic in MONITORED_TOPICS}
