"""The console script (what `ros2 launch` starts) leaves the lifecycle to the launch file when autostart is false:
the node must come up UNCONFIGURED (no model loaded, nothing commanded) and answer lifecycle requests."""

import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from lifecycle_msgs.msg import State  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402


def test_autostart_false_leaves_the_node_unconfigured():
    child = subprocess.Popen(
        [sys.executable, "-m", "vla_policy_node.vla_policy_node", "--ros-args", "-r", "__node:=vla_policy_autostart",
         "-p", "autostart:=false", "-p", "checkpoint:=/nonexistent/checkpoint"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("autostart_probe", context=context)
    try:
        client = node.create_client(GetState, "vla_policy_autostart/get_state")
        deadline = time.monotonic() + 30.0
        while not client.service_is_ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.service_is_ready(), "lifecycle service of the console script never appeared"
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        future = client.call_async(GetState.Request())
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        executor.shutdown()
        assert future.done(), "get_state did not answer"
        # Unconfigured: a configure with the bogus checkpoint path would have failed and logged a fatal error.
        assert future.result().current_state.id == State.PRIMARY_STATE_UNCONFIGURED
        assert child.poll() is None, "the console script exited instead of waiting for lifecycle requests"
    finally:
        child.terminate()
        output = child.communicate(timeout=15)[0]
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert "configure failed" not in output
