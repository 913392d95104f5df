"""DriverCore without ROS or a port: a hand-driven steady clock and the bytes it writes, checked with hand-worked
numbers. Defaults: command_rate 50 Hz (period 0.02 s), velocity limits 3 rad/s (URDF), max_step 0.2 rad; so a write
0.02 s after the previous one may move a joint by at most 0.06 rad, one 0.05 s later by 0.15 rad, and never more
than 0.2 rad.
"""

import json
import math

import numpy as np
import pytest

from roarm_description import joints
from roarm_driver import protocol as proto
from roarm_driver.driver_core import DriverConfig, DriverCore, velocity_limits_from
from roarm_driver.safety import SafetyConfig

NAMES = list(joints.JOINT_NAMES)
HOME = joints.HOME_POSITIONS.copy()


class Arm:
    """The clock and the serial line of a DriverCore: ``t`` is set by the test, ``lines`` holds what was written."""

    def __init__(self, **config):
        self.t = 100.0
        self.lines: list[tuple[float, dict]] = []
        config.setdefault("safety", SafetyConfig(max_step=0.2))  # arm_driver.yaml's value
        self.core = DriverCore(DriverConfig(**config), clock=lambda: self.t, send=self._send)
        self.core.link_up()
        self.feedback(HOME)
        self.core.set_active(True)

    def _send(self, data: bytes) -> bool:
        self.lines.append((self.t, json.loads(data)))
        return True

    def feedback(self, q, **overrides):
        fw = joints.urdf_to_firmware(np.asarray(q, dtype=float))
        message = {"T": 1051, **dict(zip(joints.FIRMWARE_KEYS, fw.tolist())), **{k: 0 for k in joints.LOAD_KEYS}}
        message.update(overrides)
        return self.core.on_message(self.t, message)

    def writes(self) -> list[tuple[float, np.ndarray]]:
        """(time, URDF pose) of each T:102 written."""
        return [(t, joints.firmware_to_urdf(np.array([m[k] for k in proto.T102_KEYS])))
                for t, m in self.lines if m["T"] == 102]

    def base_writes(self) -> list[float]:
        return [round(float(q[0]), 6) for _, q in self.writes()]

    def tick_at(self, *times):
        for t in times:
            self.t = t
            self.core.tick()


def assert_within_line_limits(arm, velocity=3.0, max_step=0.2):
    """Every write is within velocity x (time since the previous write) and max_step of the previous one."""
    writes = arm.writes()
    for (t0, q0), (t1, q1) in zip(writes, writes[1:]):
        allowed = min(velocity * (t1 - t0), max_step)
        assert np.max(np.abs(q1 - q0)) <= allowed + 1e-9, (t0, t1, q0, q1)


def test_spike_trajectory_is_cut_to_the_velocity_limit_at_the_line():
    arm = Arm()
    arm.tick_at(100.485)  # nothing runs yet: nothing written
    assert arm.writes() == []
    spike = [HOME, HOME + [1.0, 0, 0, 0, 0, 0], HOME]
    assert arm.core.on_trajectory(NAMES, [0.50, 0.51, 0.52], spike, stamp_age=None)  # start = receipt = 100.485
    # plan: HOME at 100.985, +1 at 100.995, HOME at 101.005. Ticks 100.975 (HOME), 100.995 (+1 rad asked:
    # 0.06 allowed after 0.02 s), 101.015 (HOME again).
    arm.tick_at(100.975, 100.995, 101.015)
    assert arm.base_writes() == [0.0, 0.06, 0.0]
    assert arm.core.snapshot()["line_clamps"] == 1
    assert_within_line_limits(arm)


def test_spike_at_t0_is_compared_with_the_last_written_pose():
    arm = Arm()
    arm.t = 100.0
    assert arm.core.on_trajectory(NAMES, [0.0, 0.02], [HOME + [1.0, 0, 0, 0, 0, 0], HOME], stamp_age=None)
    # The first write has no previous one: from the measured pose over one period, 0.06 rad at most.
    arm.tick_at(100.0, 100.02)
    assert arm.base_writes() == [0.06, 0.0]
    assert_within_line_limits(arm)


def test_a_late_timer_gets_the_elapsed_time_but_never_more_than_max_step():
    arm = Arm()
    # 0 -> 1 rad on the base in 1 s (1 rad/s, within the limit); ticks at 50 Hz, then the timer is 0.3 s late
    arm.core.on_trajectory(NAMES, [0.5, 1.0], [HOME + [0.5, 0, 0, 0, 0, 0], HOME + [1.0, 0, 0, 0, 0, 0]],
                           stamp_age=None)
    arm.tick_at(100.02, 100.04, 100.34, 100.36, 100.38)
    # plan values 0.02, 0.04, 0.34, 0.36, 0.38; the late write may move 3 x 0.3 = 0.9 > max_step: 0.04 + 0.2
    # then 0.06 per tick: 0.30, 0.36, 0.38 (caught up)
    assert arm.base_writes() == pytest.approx([0.02, 0.04, 0.24, 0.30, 0.36])
    arm.tick_at(100.40)
    assert arm.base_writes()[-1] == pytest.approx(0.40)
    assert_within_line_limits(arm)


def test_a_stale_stamp_is_refused_and_counted():
    arm = Arm(max_command_age=0.5)
    assert not arm.core.on_trajectory(NAMES, [0.1, 0.2], [HOME, HOME], stamp_age=0.8)
    snap = arm.core.snapshot()
    assert snap["rejected_stale"] == 1 and "0.800 s old" in snap["last_rejection"]


def test_stamp_age_places_the_plan_in_the_past_and_skips_the_points_already_due():
    arm = Arm()
    # stamped 0.1 s ago: points at -0.06 (past), -0.02 (past), +0.02, +0.06 s from receipt
    points = [HOME + [d, 0, 0, 0, 0, 0] for d in (0.01, 0.02, 0.03, 0.04)]
    assert arm.core.on_trajectory(NAMES, [0.04, 0.08, 0.12, 0.16], points, stamp_age=0.1)
    assert arm.core.snapshot()["points_skipped"] == 2
    arm.tick_at(100.01)  # from HOME (written pose unknown -> measured) halfway to 0.03 at 100.02
    assert arm.base_writes() == pytest.approx([0.015])


def test_streamed_setpoint_clamped_at_the_line_is_completed_by_the_ticks():
    arm = Arm()
    arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.15, 0, 0, 0, 0, 0]], stamp_age=None)  # within max_step
    assert arm.base_writes() == [0.06]  # written at once, clamped (first write: one period from measured)
    arm.tick_at(100.02, 100.04, 100.06)
    assert arm.base_writes() == pytest.approx([0.06, 0.12, 0.15])  # then no more writes: reached
    assert arm.core.state == "streaming" and not arm.core.pending


def test_streamed_setpoint_beyond_max_step_is_refused_unless_near_another_pose():
    arm = Arm()
    assert not arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.5, 0, 0, 0, 0, 0]], stamp_age=None)
    assert arm.core.snapshot()["rejected_max_step"] == 1
    arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.15, 0, 0, 0, 0, 0]], stamp_age=None)
    arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.3, 0, 0, 0, 0, 0]], stamp_age=None)  # 0.15 from the last
    # 0.45 is 0.15 from the accepted 0.3: accepted; 0.05 is 0.25 from it but within 0.2 of the measured HOME
    assert arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.45, 0, 0, 0, 0, 0]], stamp_age=None)
    assert arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.05, 0, 0, 0, 0, 0]], stamp_age=None)


def test_watchdog_holds_the_last_written_pose():
    arm = Arm(watchdog_timeout=0.2)
    arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.05, 0, 0, 0, 0, 0]], stamp_age=None)
    arm.tick_at(100.1, 100.21)
    assert arm.core.state == "holding" and arm.core.snapshot()["watchdog_trips"] == 1
    assert arm.base_writes() == pytest.approx([0.05, 0.05])


def test_plan_exhausted_ticks_count_the_ticks_holding_the_end():
    arm = Arm()
    arm.core.on_trajectory(NAMES, [0.02, 0.04], [HOME + [0.02, 0, 0, 0, 0, 0], HOME + [0.04, 0, 0, 0, 0, 0]],
                           stamp_age=None)
    arm.tick_at(100.02, 100.04, 100.06, 100.08)
    assert arm.core.snapshot()["plan_exhausted_ticks"] == 2
    assert arm.base_writes() == pytest.approx([0.02, 0.04, 0.04, 0.04])  # the last point is held


@pytest.mark.parametrize("field, value, kind", [
    ("b", 1e9, "range"), ("e", 1e308, "range"), ("r", 100, "range"), ("b", True, "type"), ("tB", math.nan, "type"),
    ("tS", "12", "type"), ("s", None, "type")])
def test_bad_feedback_is_counted_dropped_and_not_published(field, value, kind):
    arm = Arm()
    before = arm.core.measured.copy()
    assert arm.feedback(HOME + 0.1, **{field: value}) is None
    snap = arm.core.snapshot()
    assert snap["bad_feedback"] == 1 and snap[f"bad_feedback_{kind}"] == 1 and field in snap["last_bad_feedback"]
    assert arm.core.measured.tolist() == before.tolist() and arm.core.feedback_suspect()
    arm.t += 3.0
    assert not arm.core.feedback_suspect()  # WARN clears after bad_feedback_warn_s without a bad line


def test_feedback_a_little_outside_the_limits_is_accepted():
    arm = Arm()
    q = HOME.copy()
    q[2] = math.pi  # firmware elbow range reaches pi, the URDF stops at 2.95: within the 0.35 margin
    assert arm.feedback(q) is not None


def test_reconnect_forgets_the_written_pose_and_writes_nothing_that_moves():
    arm = Arm()
    arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.05, 0, 0, 0, 0, 0]], stamp_age=None)
    n = len(arm.lines)
    arm.core.link_down("unplugged")
    arm.core.link_up()
    assert [m["T"] for _, m in arm.lines[n:]] == [605]
    assert arm.core.precondition() == "no_state" and arm.core.guard.reference is None


def test_estop_hold_writes_the_measured_pose_unclamped():
    arm = Arm(estop_action="hold")
    arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.15, 0, 0, 0, 0, 0]], stamp_age=None)
    arm.feedback(HOME + [0.03, 0, 0, 0, 0, 0])  # the arm lags behind the command
    arm.core.estop()
    assert arm.base_writes()[-1] == pytest.approx(0.03) and arm.core.state == "estop"
    assert not arm.core.on_trajectory(NAMES, [0.0], [HOME], stamp_age=None)


def test_velocity_limit_override_and_config_checks():
    assert velocity_limits_from([0, 1.5, 0, 0, 0, 0]) == (3.0, 1.5, 3.0, 3.0, 3.0, 3.0)
    with pytest.raises(ValueError):
        velocity_limits_from([1.0])
    with pytest.raises(ValueError):
        DriverConfig(feedback_mode="poll")
    arm = Arm(velocity_limits=(1.0,) * 6, safety=SafetyConfig(max_step=0.2))
    arm.core.on_trajectory(NAMES, [0.0], [HOME + [0.1, 0, 0, 0, 0, 0]], stamp_age=None)
    assert arm.base_writes() == pytest.approx([0.02])  # 1 rad/s x 0.02 s
