"""action_visualizer over real rclpy topics: a published ActionChunk yields the path markers and the ghost pose."""

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from roarm_interfaces.msg import ActionChunk  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from roarm_description import joints, kinematics  # noqa: E402
from roarm_vla_bringup.action_visualizer_node import ActionVisualizerNode  # noqa: E402


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _spin_until(executor, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def test_chunk_yields_markers_and_ghost(context):
    visualizer = ActionVisualizerNode(context=context)
    peer = rclpy.create_node("chunk_peer", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(visualizer)
    executor.add_node(peer)
    markers, ghosts = [], []
    peer.create_subscription(MarkerArray, "vla/markers", markers.append, 10)
    peer.create_subscription(JointState, "vla/predicted_joint_states", ghosts.append, 10)
    pub = peer.create_publisher(ActionChunk, "vla/action_chunk", 10)

    rng = np.random.default_rng(4)
    rows = np.linspace(joints.HOME_POSITIONS, rng.uniform(joints.LOWER_LIMITS / 2, joints.UPPER_LIMITS / 2), 12)
    chunk = ActionChunk(joint_names=list(joints.JOINT_NAMES), step_period=0.1, num_steps=12,
                        positions=rows.ravel().tolist(), inference_latency=0.25, sequence=7, task="pick")
    chunk.header.stamp = peer.get_clock().now().to_msg()
    try:
        assert _spin_until(executor, lambda: pub.get_subscription_count() > 0)
        pub.publish(chunk)
        assert _spin_until(executor, lambda: markers and ghosts), "no markers / ghost pose for a published chunk"

        by_ns = {m.ns: m for m in markers[-1].markers}
        line, spheres, label = by_ns["vla_path"], by_ns["vla_path_steps"], by_ns["vla_label"]
        assert line.type == Marker.LINE_STRIP and spheres.type == Marker.SPHERE_LIST
        expected = kinematics.tcp_positions(rows)
        for marker in (line, spheres):
            assert marker.header.frame_id == "base_link"
            got = np.array([[p.x, p.y, p.z] for p in marker.points])
            np.testing.assert_allclose(got, expected, atol=1e-9)
            assert len(marker.colors) == 12
            # colour by time: from start_color (cyan) to end_color (magenta), per point
            assert marker.colors[0].b == pytest.approx(1.0) and marker.colors[0].r == pytest.approx(0.0)
            assert marker.colors[-1].r == pytest.approx(1.0) and marker.colors[-1].g == pytest.approx(0.1)
            reds = [c.r for c in marker.colors]
            assert reds == sorted(reds) and reds[0] < reds[-1]
        assert "#7" in label.text and "250 ms" in label.text
        assert label.pose.position.z == pytest.approx(expected[-1][2] + 0.04)

        ghost = ghosts[-1]
        assert list(ghost.name) == list(joints.JOINT_NAMES)
        np.testing.assert_allclose(ghost.position, rows[-1])

        # A malformed chunk is refused (counted), never shown; the next good chunk is.
        before = len(markers)
        bad = ActionChunk(joint_names=list(joints.JOINT_NAMES), step_period=0.1, num_steps=3, positions=[0.0] * 7)
        pub.publish(bad)
        assert _spin_until(executor, lambda: visualizer.chunks_rejected == 1)
        assert len(markers) == before
        # The ghost pose keeps being re-published (fresh TF for the 'predicted/' robot_state_publisher).
        count = len(ghosts)
        assert _spin_until(executor, lambda: len(ghosts) >= count + 2, timeout=2.0)
    finally:
        executor.shutdown()
        visualizer.destroy_node()
        peer.destroy_node()
