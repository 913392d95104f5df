"""A normal shutdown (deactivate, cleanup, destroy) logs no ERROR; a real loss of the serial link still does.
Read from /rosout, where every node of the stack logs (what `ros2 topic echo /rosout` / rqt_console show)."""

import threading
import time

import pytest
from rcl_interfaces.msg import Log
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from std_srvs.srv import SetBool

from driver_rig import Rig, wait_until


class RosoutRecorder:
    def __init__(self, rig: Rig):
        self.lock = threading.Lock()
        self.logs: list[Log] = []
        self.node = Node("rosout_recorder", context=rig.context)
        qos = QoSProfile(depth=100, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)  # /rosout's own QoS
        self.node.create_subscription(Log, "/rosout", self._on_log, qos)
        rig.executor.add_node(self.node)

    def _on_log(self, msg: Log) -> None:
        with self.lock:
            self.logs.append(msg)

    def from_driver(self, level: int | None = None) -> list[Log]:
        with self.lock:
            return [m for m in self.logs if m.name == "arm_driver" and (level is None or m.level == level)]


@pytest.fixture
def rig():
    rig = Rig()
    yield rig
    rig.close()


def test_normal_shutdown_logs_no_error_but_a_lost_link_does(rig):
    recorder = RosoutRecorder(rig)
    assert wait_until(lambda: rig.probe.count() > 5, 3.0)
    # the recorder hears the driver (an INFO on demand: set_torque true logs one)
    rig.probe.call(rig.probe.set_torque, SetBool.Request(data=True))
    assert wait_until(lambda: recorder.from_driver(Log.INFO), 3.0), "no driver log reached /rosout"
    rig.node.trigger_deactivate()
    rig.node.trigger_cleanup()
    assert wait_until(lambda: any("closed" in m.msg for m in recorder.from_driver(Log.INFO)), 3.0)
    time.sleep(0.3)
    assert not recorder.from_driver(Log.ERROR), [m.msg for m in recorder.from_driver(Log.ERROR)]
    # a real loss still is an ERROR
    rig.node.trigger_configure()
    rig.node.trigger_activate()
    assert wait_until(lambda: rig.node.snapshot()["connected"], 3.0)
    rig.sim.disconnect()  # unplugged
    assert wait_until(lambda: any("serial link lost" in m.msg for m in recorder.from_driver(Log.ERROR)), 3.0)
