"""sim_world's fault-injection parameter fault_camera_dropout_s (bench/soak.py's camera drop-out), through a real
sim_world process: off by default (frames keep coming), set at run time -> no frame for that long, then frames
again by themselves; out of range -> refused by name."""

import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

from roarm_description import joints  # noqa: E402

DROPOUT_S = 2.0


@pytest.fixture
def sim_world_process():
    """sim_world in its own process (small, slow camera: the test is about gaps, not rates), and a probe node here
    that publishes joint_states (the camera renders only once the arm's joints are known) and collects images."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from roarm_sim.sim_world_node import main; sys.exit(main())",
         "--ros-args", "-r", "__node:=sim_world", "-r", "__ns:=/soak_dropout", "-p", "image_width:=64",
         "-p", "image_height:=48", "-p", "camera_rate:=10.0", "-p", "auto_start:=false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(__import__("os").environ, PYTHONPATH=":".join(p for p in sys.path if p)))
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("soak_dropout_probe", namespace="/soak_dropout", context=context)
    arrivals: list[float] = []
    node.create_subscription(Image, "camera/image_raw", lambda _m: arrivals.append(time.monotonic()),
                             qos_profile_sensor_data)
    joint_pub = node.create_publisher(JointState, "joint_states", 10)

    def publish_joints():
        msg = JointState(name=list(joints.JOINT_NAMES), position=[0.0] * len(joints.JOINT_NAMES))
        msg.header.stamp = node.get_clock().now().to_msg()
        joint_pub.publish(msg)

    node.create_timer(0.05, publish_joints)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node, arrivals, proc
    executor.shutdown(timeout_sec=2.0)
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    proc.terminate()
    try:
        proc.wait(timeout=10.0)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _set(node, value: float):
    client = node.create_client(SetParameters, "sim_world/set_parameters")
    assert client.wait_for_service(timeout_sec=30.0)
    request = SetParameters.Request(parameters=[ParameterMsg(
        name="fault_camera_dropout_s",
        value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value)))])
    future = client.call_async(request)
    assert _wait(future.done, 10.0)
    return future.result().results[0]


def test_camera_dropout_stops_frames_for_the_set_time_then_they_resume(sim_world_process):
    node, arrivals, proc = sim_world_process
    assert _wait(lambda: len(arrivals) >= 5, 60.0), "sim_world published no images (off by default)"
    refused = _set(node, 61.0)  # above the declared range
    assert not refused.successful and "fault_camera_dropout_s" in refused.reason
    before = len(arrivals)
    set_at = time.monotonic()
    assert _set(node, DROPOUT_S).successful
    answered = time.monotonic()
    assert _wait(lambda: len(arrivals) >= before + 5 and arrivals[-1] > answered + DROPOUT_S, 30.0), \
        "frames did not come back after the drop-out"
    # The drop-out began when the set was handled (between set_at and answered) and lasted DROPOUT_S: no frame
    # arrived from the answer until DROPOUT_S after the request was sent (a frame already in flight may land
    # just after the answer: allow one camera period).
    inside = [t for t in arrivals if answered + 0.1 < t < set_at + DROPOUT_S]
    assert inside == [], f"frames during the drop-out at {[round(t - set_at, 2) for t in inside]} s"
    assert proc.poll() is None
