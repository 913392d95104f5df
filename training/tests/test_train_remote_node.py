"""The policy node on a GPU workstation, the driver by the arm: plain ROS 2 networking (training/README.md).

Two real processes (a talker standing in for the driver's joint_states, a listener for the policy node) over
DDS with the settings the README gives: the same ROS_DOMAIN_ID connects them, a different one isolates them.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("rclpy")

TALKER = textwrap.dedent("""
    import rclpy, time
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("arm_side_talker")
    pub = node.create_publisher(String, "remote_check", 10)
    end = time.monotonic() + float(__import__("sys").argv[1])
    while time.monotonic() < end:
        pub.publish(String(data="joint_states from the arm's machine"))
        rclpy.spin_once(node, timeout_sec=0.1)
    rclpy.shutdown()
""")
LISTENER = textwrap.dedent("""
    import rclpy, sys, time
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("gpu_side_listener")
    got = []
    node.create_subscription(String, "remote_check", lambda m: got.append(m.data), 10)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end and not got:
        rclpy.spin_once(node, timeout_sec=0.1)
    print("RECEIVED" if got else "NOTHING", flush=True)
    rclpy.shutdown()
""")
WINDOW_S = 12.0  # discovery + first message; the isolated pair must stay silent for all of it


def pair(talker_env: dict, listener_env: dict) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROS_")}
    base["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    talker = subprocess.Popen([sys.executable, "-c", TALKER, str(WINDOW_S + 4)], env={**base, **talker_env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        listener = subprocess.run([sys.executable, "-c", LISTENER, str(WINDOW_S)], env={**base, **listener_env},
                                  capture_output=True, text=True, timeout=WINDOW_S + 60)
    finally:
        talker.terminate()
        talker.wait(timeout=30)
    assert listener.returncode == 0, listener.stderr[-2000:]
    return listener.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_same_domain_connects_and_another_domain_isolates():
    local = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert pair({**local, "ROS_DOMAIN_ID": "42"}, {**local, "ROS_DOMAIN_ID": "42"}) == "RECEIVED"
    assert pair({**local, "ROS_DOMAIN_ID": "42"}, {**local, "ROS_DOMAIN_ID": "43"}) == "NOTHING"


@pytest.mark.slow
def test_discovery_off_isolates_and_a_static_peer_connects():
    """ROS_AUTOMATIC_DISCOVERY_RANGE=OFF discovers nothing, even on one host and domain (ROS 2 docs); the README's
    routed-network recipe is LOCALHOST (or SUBNET) plus the other machine in ROS_STATIC_PEERS."""
    off = {"ROS_DOMAIN_ID": "44", "ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"}
    assert pair(off, off) == "NOTHING"
    peers = {"ROS_DOMAIN_ID": "44", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": "127.0.0.1"}
    assert pair(peers, peers) == "RECEIVED"
