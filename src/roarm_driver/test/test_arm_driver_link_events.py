"""Serial link events seen from outside: a normal shutdown (deactivate, cleanup) logs no ERROR (read from /rosout,
what rqt_console shows); a write reported failed that reached the arm does not leave the step reference behind."""

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


def test_normal_shutdown_logs_no_error(rig):
    recorder = RosoutRecorder(rig)
    assert wait_until(lambda: rig.probe.count() > 5, 3.0)
    # the recorder hears the driver (an INFO on demand: set_torque true logs one)
    for _ in range(10):  # until the recorder has matched the driver's /rosout publisher (discovery)
        rig.probe.call(rig.probe.set_torque, SetBool.Request(data=True))
        if wait_until(lambda: recorder.from_driver(Log.INFO), 0.5):
            break
    assert recorder.from_driver(Log.INFO), "no driver log reached /rosout"
    rig.node.trigger_deactivate()
    rig.node.trigger_cleanup()
    assert wait_until(lambda: any("closed" in m.msg for m in recorder.from_driver(Log.INFO)), 6.0), \
        [m.msg for m in recorder.from_driver()]
    time.sleep(0.3)
    assert not recorder.from_driver(Log.ERROR), [m.msg for m in recorder.from_driver(Log.ERROR)]
    # (a real loss is reported as an ERROR diagnostic: test_arm_driver_node.py, unplug and replug)


def test_a_write_reported_failed_that_reached_the_arm_does_not_block_the_stream(rig):
    # pyserial raises its write timeout after a COMPLETE write when the writing thread was descheduled past
    # write_timeout (a loaded machine): the arm got the setpoint, the driver counted it lost. The driver used to
    # keep its old step reference, so the stream's next setpoint (one step further) was refused as two steps,
    # and so was every later one. Now the next step is measured from the measured pose.
    assert wait_until(lambda: rig.probe.count() > 5, 3.0)
    link = rig.node._link
    write = link.write
    reported = {"failed": 0}

    def write_then_report_timeout(data: bytes) -> bool:
        ok = write(data)
        if data.startswith(b'{"T":102') and not reported["failed"]:
            reported["failed"] += 1
            return False  # the bytes went out; the caller is told they did not
        return ok

    q = list(rig.measured())
    q[0] += 0.1  # an accepted setpoint first: the driver's step reference is the last commanded pose
    rig.probe.send(q)
    assert wait_until(lambda: abs(rig.sim.joints[0] - q[0]) < 5e-3, 3.0)
    link.write = write_then_report_timeout
    for k in range(1, 4):  # steps of 0.15 rad (max_step 0.2): only ever one step from the arm
        q[0] += 0.15
        rig.probe.send(q)
        assert wait_until(lambda: abs(rig.sim.joints[0] - q[0]) < 5e-3, 3.0), (k, rig.node.snapshot()["last_rejection"])
    snapshot = rig.node.snapshot()
    assert snapshot["setpoints_lost"] == 1 and not snapshot.get("rejected_max_step"), snapshot["last_rejection"]
