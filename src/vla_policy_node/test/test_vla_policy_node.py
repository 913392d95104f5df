"""vla_policy with real rclpy and the tiny offline SmolVLA checkpoint.

Cross-node behaviour runs the node's console script in its own process (as launch runs it) and a 'rig' node in the
test process that plays camera + arm driver: it publishes camera/image_raw (rgb8, sensor-data QoS) and
joint_states, and records joint_trajectory, vla/action_chunk and diagnostics. The published plans are checked
against an independent computation from the raw chunks (ActionChunk): with merge_rule latest, a plan's points are
the newest chunk's steps from the plan's start on, EMA-smoothed from the running plan (or the measured state) and
clamped to the joint limits. Single-node behaviour (stop-and-go, configure errors, the YAML) runs in-process.
"""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from roarm_description.joints import HOME_POSITIONS, JOINT_NAMES, LOWER_LIMITS, UPPER_LIMITS
from roarm_interfaces.msg import ActionChunk
from vla_policy_node.command_plan import Plan, SmoothingConfig, smooth
from vla_policy_node.vla_policy_node import VlaPolicyNode

FPS = 5.0  # chunk steps at 5 Hz: a 10-step chunk lasts 2 s (slack for a loaded 2-core machine)
DT = 1.0 / FPS
ALPHA = 0.5
SMOOTHING = SmoothingConfig(ema_alpha=ALPHA, lower_limits=LOWER_LIMITS, upper_limits=UPPER_LIMITS)


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class Rig(Node):
    """Camera + driver stand-in."""

    def __init__(self, context, name="vla_test_rig", namespace=""):
        super().__init__(name, context=context, namespace=namespace)
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.state_pub = self.create_publisher(JointState, "joint_states", 10)
        self.lock = threading.Lock()
        self.commands, self.chunks, self.diagnostics = [], [], []
        self.create_subscription(JointTrajectory, "joint_trajectory", self._on_command, 10)
        self.create_subscription(ActionChunk, "vla/action_chunk", self._on_chunk, 10)
        self.create_subscription(DiagnosticArray, "diagnostics", self._on_diag, 10)
        self.publish_images = True
        self.joint_positions = HOME_POSITIONS.copy()
        self._rng = np.random.default_rng(0)
        self.create_timer(1.0 / 30.0, self._tick_camera)
        self.create_timer(1.0 / 50.0, self._tick_state)

    def _on_command(self, msg):
        with self.lock:
            self.commands.append(msg)

    def _on_chunk(self, msg):
        with self.lock:
            self.chunks.append(msg)

    def _on_diag(self, msg):
        if msg.status and msg.status[0].name.startswith("vla_policy"):
            with self.lock:
                self.diagnostics.append(msg)

    def snapshot(self):
        with self.lock:
            return list(self.commands), list(self.chunks)

    def clear(self):
        with self.lock:
            self.commands.clear()
            self.chunks.clear()

    def diag_values(self):
        with self.lock:
            if not self.diagnostics:
                return {}
            return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}

    def _tick_camera(self):
        if not self.publish_images:
            return
        msg = Image()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.height, msg.width, msg.encoding, msg.step = 48, 64, "rgb8", 64 * 3
        msg.data = self._rng.integers(0, 256, 48 * 64 * 3, dtype=np.uint8).tobytes()
        self.image_pub.publish(msg)

    def _tick_state(self):
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(JOINT_NAMES)
        msg.position = [float(x) for x in self.joint_positions]
        self.state_pub.publish(msg)

    def call(self, srv_type, name, request, timeout=15.0):
        client = self.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"{name} not available"
        future = client.call_async(request)
        deadline = time.time() + timeout
        while not future.done() and time.time() < deadline:
            time.sleep(0.01)
        assert future.done(), f"{name} did not answer"
        return future.result()


def wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def plans_of(commands):
    return [m for m in commands if len(m.points) >= 2]


def as_plan(msg) -> Plan:
    return Plan(start=stamp_s(msg.header.stamp), step_period=DT,
                points=np.array([p.positions for p in msg.points], dtype=float))


def chunk_array(chunk) -> np.ndarray:
    return np.array(chunk.positions, dtype=float).reshape(chunk.num_steps, len(chunk.joint_names))


def check_plan_message(msg):
    assert list(msg.joint_names) == list(JOINT_NAMES)
    for k, point in enumerate(msg.points):
        assert point.time_from_start.sec * 10**9 + point.time_from_start.nanosec == round(k * DT * 1e9)
        q = np.array(point.positions)
        assert np.all(np.isfinite(q)) and np.all(q >= LOWER_LIMITS - 1e-9) and np.all(q <= UPPER_LIMITS + 1e-9)


def expected_points(plan_msg, chunk, previous: Plan | None, measured: np.ndarray) -> np.ndarray:
    """The plan the node must send for this chunk (merge_rule latest: the chunk's steps from the plan's start),
    EMA-seeded from the previous plan at the step before the start, or from the measured state when none runs."""
    start, obs = stamp_s(plan_msg.header.stamp), stamp_s(chunk.header.stamp)
    j0 = round((start - obs) / DT)
    # On an empty timeline the grid is the chunk's own (exact); later chunks snap to it (at most dt/2 off).
    tolerance = 2e-3 if previous is None else DT / 2 + 2e-3
    assert j0 >= 0 and abs((start - obs) - j0 * DT) <= tolerance, (start, obs)
    if previous is not None and start - DT <= previous.end + 1e-3:
        # Both plans lie on one step grid in the node's steady time; their ROS stamps carry the steady->ROS offset
        # taken at two moments (microseconds apart), so snap to the grid instead of interpolating between points.
        index = min(max(round((start - DT - previous.start) / DT), 0), len(previous.points) - 1)
        seed = previous.points[index]
    else:
        seed = measured
    return smooth(chunk_array(chunk)[j0:], seed, SMOOTHING)


@pytest.fixture(scope="module")
def policy_process(tiny_checkpoint):
    """The console script in its own process (autostart: configure + activate) and a rig in this process."""
    child = subprocess.Popen(
        [sys.executable, "-m", "vla_policy_node.vla_policy_node", "--ros-args",
         "-p", f"checkpoint:={tiny_checkpoint}", "-p", f"action_fps:={FPS}", "-p", f"ema_alpha:={ALPHA}",
         "-p", "max_joint_step:=0.0", "-p", "merge_rule:=latest", "-p", "rebase_when_idle:=false",
         "-p", "noise_seed:=0", "-p", "observation_timeout_s:=0.4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    context = rclpy.Context()
    rclpy.init(context=context)
    rig = Rig(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(rig)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield child, rig
    finally:
        child.send_signal(2)  # SIGINT: the node holds and exits
        try:
            output = child.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            child.kill()
            output = child.communicate()[0]
        executor.shutdown(timeout_sec=5.0)
        thread.join(10.0)
        rig.destroy_node()
        rclpy.shutdown(context=context)
        assert "Traceback" not in output, output[-3000:]


def test_publishes_smoothed_multi_point_plans(policy_process):
    child, rig = policy_process
    assert wait_for(lambda: len(plans_of(rig.snapshot()[0])) >= 4 or child.poll() is not None, 90.0), \
        "no plans on joint_trajectory"
    assert child.poll() is None, child.communicate()[0][-3000:]
    commands, chunks = rig.snapshot()
    plans = plans_of(commands)
    assert len(plans) == len(commands), "only multi-point plans while running (no streamed setpoints)"
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    previous = None
    for plan_msg, chunk in zip(plans, chunks):  # one plan per chunk, published right after it
        check_plan_message(plan_msg)
        expected = expected_points(plan_msg, chunk, previous, HOME_POSITIONS)
        assert np.array(plan_msg.points[0].positions).shape == (6,)
        np.testing.assert_allclose([p.positions for p in plan_msg.points], expected, atol=1e-6)
        assert chunk.step_period == pytest.approx(DT) and chunk.num_steps == 10
        previous = as_plan(plan_msg)
    # A plan starts at its chunk's first step not yet begun: never before the chunk's observation.
    assert all(stamp_s(p.header.stamp) >= stamp_s(c.header.stamp) - 1e-3 for p, c in zip(plans, chunks))


def test_disable_holds_where_the_plan_is_and_resumes_from_the_measured_pose(policy_process):
    child, rig = policy_process
    assert wait_for(lambda: plans_of(rig.snapshot()[0]), 60.0)
    count = len(rig.snapshot()[0])
    assert rig.call(SetBool, "vla/enable", SetBool.Request(data=False)).success
    assert wait_for(lambda: any(len(m.points) == 1 for m in rig.snapshot()[0][count:]), 10.0), \
        "no hold published on disable"
    commands, _ = rig.snapshot()
    # A plan may still have gone out between the count and the disable: the hold follows the last one before it.
    index = next(i for i in range(count, len(commands)) if len(commands[i].points) == 1)
    hold = commands[index]
    last_plan = as_plan(plans_of(commands[:index])[-1])
    count = index
    assert list(hold.joint_names) == list(JOINT_NAMES)
    # The hold is where the last plan was when the node paused (sampled just before the hold's stamp).
    held = np.array(hold.points[0].positions)
    t = stamp_s(hold.header.stamp)
    # (the stamp is taken around the sampling: within 0.1 s of it either way on a loaded machine)
    gaps = [np.abs(last_plan.sample(t - d) - held).max() for d in np.linspace(-0.1, 0.1, 2001)]
    assert min(gaps) < 1e-6, min(gaps)
    time.sleep(1.0)
    assert len(rig.snapshot()[0]) == count + 1, "commands sent while paused"
    # Meanwhile the arm is moved by someone else; on resume the first plan starts from the measured pose.
    rig.joint_positions = HOME_POSITIONS + np.array([0.3, 0, 0, 0, 0, 0])
    time.sleep(0.3)
    rig.clear()
    assert rig.call(SetBool, "vla/enable", SetBool.Request(data=True)).success
    assert wait_for(lambda: plans_of(rig.snapshot()[0]), 30.0), "no plan after enable"
    commands, chunks = rig.snapshot()
    expected = expected_points(commands[0], chunks[0], None, rig.joint_positions)
    np.testing.assert_allclose([p.positions for p in commands[0].points], expected, atol=1e-6)


def test_stale_images_hold_and_stop_plans(policy_process):
    child, rig = policy_process
    rig.joint_positions = HOME_POSITIONS.copy()
    assert wait_for(lambda: plans_of(rig.snapshot()[0]), 30.0)
    rig.clear()
    rig.publish_images = False
    assert wait_for(lambda: "image stale" in rig.diag_values().get("hold_reason", ""), 10.0), \
        "stale images not reported"
    # A plan still running was stopped with a one-point hold (one already over needs none); nothing follows.
    count = len(rig.snapshot()[0])
    time.sleep(1.0)
    assert len(rig.snapshot()[0]) == count, "plans sent on stale images"
    rig.publish_images = True
    assert wait_for(lambda: len(plans_of(rig.snapshot()[0])) >= 1, 30.0), "no plan once images are fresh again"


def test_nan_from_the_model_is_never_sent(nan_checkpoint):
    child = subprocess.Popen(
        [sys.executable, "-m", "vla_policy_node.vla_policy_node", "--ros-args", "-r", "__ns:=/nan",
         "-p", f"checkpoint:={nan_checkpoint}"],  # own namespace: the module's policy process still runs
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    rig = Rig(context, name="vla_nan_rig", namespace="nan")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(rig)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: int(rig.diag_values().get("rejected_nonfinite_chunks", 0)) >= 3, 90.0), \
            rig.diag_values()
        commands, chunks = rig.snapshot()
        assert commands == [] and chunks == []
        with rig.lock:
            assert "NaN" in rig.diagnostics[-1].status[0].message
    finally:
        child.send_signal(2)
        child.communicate(timeout=30)
        executor.shutdown(timeout_sec=5.0)
        thread.join(10.0)
        rig.destroy_node()
        rclpy.shutdown(context=context)


# ----------------------------------------------------------------------------------------- in-process
@pytest.fixture
def ros():
    """A private context + an executor spinning in a thread; yields a function that starts the node and rig (in
    their own namespace: the module's policy process may still be running)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    created = []

    def start(checkpoint, **params):
        overrides = [Parameter("checkpoint", value=str(checkpoint))]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        node = VlaPolicyNode(context=context, parameter_overrides=overrides, namespace="inproc")
        rig = Rig(context, name="vla_inproc_rig", namespace="inproc")
        created.extend([node, rig])
        executor.add_node(node)
        executor.add_node(rig)
        return node, rig

    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield start
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(10.0)
        for node in created:
            node.destroy_node()
        rclpy.shutdown(context=context)


def test_model_slower_than_its_chunk_moves_stop_and_go(ros, tiny_checkpoint):
    # A 10-step chunk at 30 Hz lasts 0.33 s; each inference takes > 0.5 s. Placed by observation stamp every step
    # would be stale; the gate waits for the plan to run out, observes the holding arm, and the chunk is rebased
    # to its arrival: whole chunks are planned, none is wasted.
    node, rig = ros(tiny_checkpoint, debug_extra_latency_s=0.5)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: int(node.diagnostics_values().get("rebased_chunks", 0)) >= 3, 30.0)
    values = node.diagnostics_values()
    assert values["gate_mode"] == "stop_and_go"
    assert int(values["dropped_stale_actions"]) == 0
    plans = plans_of(rig.snapshot()[0])
    assert len(plans) >= 3 and all(len(p.points) == 10 for p in plans[1:])  # whole chunks


def test_configure_fails_clearly_on_camera_key_mismatch(ros, tiny_checkpoint):
    node, rig = ros(tiny_checkpoint, camera_key="observation.images.wrist")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    values = node.diagnostics_values()
    assert "observation.images.wrist" in values["config_error"] and "observation.images.top" in values["config_error"]
    assert wait_for(lambda: rig.diagnostics and rig.diagnostics[-1].status[0].level == b"\x02", 5.0)


def test_flow_steps_parameter_reaches_the_loaded_policy(ros, tiny_checkpoint):
    # 0 keeps the checkpoint's num_steps; a positive value replaces it in the policy sample_actions reads.
    node, _ = ros(tiny_checkpoint, flow_steps=3)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.diagnostics_values()["flow_steps"] == "3"
    assert node._runtime.policy.config.num_steps == 3
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    default, _ = ros(tiny_checkpoint, flow_steps=0)
    assert default.trigger_configure() == TransitionCallbackReturn.SUCCESS
    from lerobot.configs.policies import PreTrainedConfig

    saved = PreTrainedConfig.from_pretrained(str(tiny_checkpoint)).num_steps
    assert saved != 3 and default.diagnostics_values()["flow_steps"] == str(saved)


def test_out_of_range_parameter_is_refused_with_its_name(tiny_checkpoint):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(Exception, match="ema_alpha"):
            VlaPolicyNode(context=context, parameter_overrides=[Parameter("ema_alpha", value=1.5)])
    finally:
        rclpy.shutdown(context=context)


def test_yaml_parameters_load_and_configure(tiny_checkpoint):
    """The bringup YAML is the single source of truth: every key loads with the declared type and configures."""
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parents[2] / "roarm_vla_bringup" / "config" / "vla_policy.yaml"
    expected = yaml.safe_load(path.read_text())["vla_policy"]["ros__parameters"]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = VlaPolicyNode(context=context, cli_args=["--ros-args", "--params-file", str(path)],
                         parameter_overrides=[Parameter("checkpoint", value=str(tiny_checkpoint))])
    try:
        for key, value in expected.items():
            if key != "checkpoint":
                assert node.get_parameter(key).value == value, key
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
