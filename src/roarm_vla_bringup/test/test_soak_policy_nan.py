"""bench/soak.py's NaN fault on a real vla_policy process under GraphRunner: a checkpoint whose chunks are all NaN
is refused chunk after chunk (counted and reported in diagnostics, no plan, nothing non-finite on any topic), and
the same process plans again once a good checkpoint is swapped back in through its lifecycle and parameter
services, as the soak does it."""

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roarm_description import joints  # noqa: E402
from roarm_interfaces.msg import ActionChunk  # noqa: E402
from roarm_vla_bringup.graph import load_graph  # noqa: E402
from roarm_vla_bringup.runner import GraphRunner  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from soak import finite_message  # noqa: E402


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny random SmolVLA and its NaN twin, built by bench/soak.py's own nan_checkpoint()."""
    from roarm_training.small_smolvla import build_tiny_checkpoint, build_tiny_vlm
    from soak import nan_checkpoint

    vlm = build_tiny_vlm(tmp_path_factory.mktemp("vlm"))
    good = build_tiny_checkpoint(tmp_path_factory.mktemp("good"), vlm_folder=vlm)
    return good, nan_checkpoint(good, tmp_path_factory.mktemp("nan") / "pretrained_model")


def _wait(predicate, timeout, runner):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        runner.spin_for(0.1)
    return False


@pytest.mark.slow
def test_nan_policy_is_refused_then_a_swapped_in_checkpoint_plans_again(checkpoints):
    good, bad = checkpoints
    graph = load_graph("pick", sim=True, controller="policy", overrides={"checkpoint": str(bad)})
    with GraphRunner(graph, log=lambda _m: None, only={"vla_policy"}) as runner:
        node = runner.create_node("soak_nan_probe")
        seen = {"plans": 0, "messages": 0, "nonfinite": 0}
        lock = threading.Lock()

        def check(msg, plan=False):
            with lock:
                seen["messages"] += 1
                seen["plans"] += int(plan)
                seen["nonfinite"] += int(not finite_message(msg))

        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(JointTrajectory, "vla/predicted_trajectory", lambda m: check(m, True), reliable)
        node.create_subscription(JointTrajectory, "joint_trajectory", check, reliable)
        node.create_subscription(ActionChunk, "vla/action_chunk", check, reliable)
        image_pub = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        joint_pub = node.create_publisher(JointState, "joint_states", 10)
        pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8).tobytes()

        def publish_inputs():  # a fresh camera frame and the arm's joints, as sim_world and arm_driver send them
            stamp = node.get_clock().now().to_msg()
            image = Image(height=64, width=64, encoding="rgb8", step=64 * 3, data=pixels)
            image.header.stamp = stamp
            image_pub.publish(image)
            state = JointState(name=list(joints.JOINT_NAMES), position=[0.0] * len(joints.JOINT_NAMES))
            state.header.stamp = stamp
            joint_pub.publish(state)

        node.create_timer(0.05, publish_inputs)

        def rejected() -> int:
            return int(runner.diagnostics("vla_policy").get("rejected_nonfinite_chunks", 0) or 0)

        assert _wait(lambda: rejected() >= 3, 60.0, runner), runner.diagnostics("vla_policy")
        assert _wait(lambda: "NaN" in runner.diagnostics("vla_policy").get("_message", ""), 10.0, runner)
        with lock:
            assert seen["plans"] == 0 and seen["nonfinite"] == 0, seen

        for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
            assert runner.change_state("vla_policy", transition)
        client = node.create_client(SetParameters, "vla_policy/set_parameters")
        assert client.wait_for_service(timeout_sec=30.0)
        future = client.call_async(SetParameters.Request(
            parameters=[Parameter("checkpoint", value=str(good)).to_parameter_msg()]))
        assert _wait(future.done, 30.0, runner) and future.result().results[0].successful
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert runner.change_state("vla_policy", transition, timeout=300.0)

        assert _wait(lambda: seen["plans"] >= 3, 60.0, runner), (seen, runner.diagnostics("vla_policy"))
        # /diagnostics is periodic: the message that names the new checkpoint may come after the first plans
        def reports_good() -> bool:
            return runner.diagnostics("vla_policy").get("checkpoint", "").rstrip("/").endswith(good.name)

        assert _wait(reports_good, 30.0, runner), runner.diagnostics("vla_policy")
        with lock:
            assert seen["nonfinite"] == 0, seen
        assert runner.processes["vla_policy"].starts == 1  # the same process recovered: no respawn
