"""safety.py and trajectory.py: every rule fires, with a clear message; watchdog and e-stop latch are pure."""

import math

import numpy as np
import pytest

from roarm_description import joints
from roarm_driver.safety import CommandRejected, CommandWatchdog, EStopLatch, SafetyConfig, check_command, check_pose
from roarm_driver.trajectory import Trajectory, TrajectoryError, linear_move, min_duration

NAMES = list(joints.JOINT_NAMES)
HOME = joints.HOME_POSITIONS.copy()


def test_valid_command_passes_unchanged():
    q = HOME + 0.1
    out = check_command(NAMES, q, HOME, SafetyConfig())
    assert out.positions == pytest.approx(q) and out.warnings == []


def test_names_in_any_order_and_subsets_fill_from_reference():
    out = check_command([NAMES[2], NAMES[0]], [1.7, 0.2], HOME, SafetyConfig())
    expected = HOME.copy()
    expected[0], expected[2] = 0.2, 1.7
    assert out.positions == pytest.approx(expected)


def test_unknown_joint_name_rejected_with_the_arm_joint_list():
    with pytest.raises(CommandRejected) as err:
        check_command(["elbow_joint"], [0.1], HOME, SafetyConfig())
    assert err.value.rule == "names" and "elbow_joint" in str(err.value) and NAMES[0] in str(err.value)


def test_duplicate_names_and_length_mismatch_rejected():
    with pytest.raises(CommandRejected, match="duplicated"):
        check_command([NAMES[0], NAMES[0]], [0.1, 0.2], HOME, SafetyConfig())
    with pytest.raises(CommandRejected, match="2 joint names but 1"):
        check_command(NAMES[:2], [0.1], HOME, SafetyConfig())


def test_subset_without_reference_is_rejected_as_missing():
    with pytest.raises(CommandRejected, match="missing"):
        check_command(NAMES[:2], [0.0, 0.0], None, SafetyConfig())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(bad):
    q = HOME.copy()
    q[3] = bad
    with pytest.raises(CommandRejected) as err:
        check_command(NAMES, q, HOME, SafetyConfig())
    assert err.value.rule == "nan" and NAMES[3] in str(err.value)


def test_limits_clamp_with_warning_or_reject():
    q = HOME.copy()
    q[1] = 2.0  # shoulder limit is pi/2
    out = check_command(NAMES, q, q, SafetyConfig(limit_mode="clamp", max_step=0))
    assert out.positions[1] == pytest.approx(math.pi / 2)
    assert NAMES[1] in out.warnings[0]
    with pytest.raises(CommandRejected) as err:
        check_command(NAMES, q, HOME, SafetyConfig(limit_mode="reject", max_step=0))
    assert err.value.rule == "limits"


def test_max_step_reject_or_clamp():
    q = HOME.copy()
    q[0] += 0.5
    with pytest.raises(CommandRejected) as err:
        check_command(NAMES, q, HOME, SafetyConfig(max_step=0.2, step_mode="reject"))
    assert err.value.rule == "max_step" and NAMES[0] in str(err.value)
    out = check_command(NAMES, q, HOME, SafetyConfig(max_step=0.2, step_mode="clamp"))
    assert out.positions[0] == pytest.approx(0.2) and out.warnings
    # no reference yet (nothing commanded, nothing measured): no step rule
    assert check_command(NAMES, q, None, SafetyConfig(max_step=0.2)).positions[0] == pytest.approx(0.5)


def test_bad_config_refused():
    with pytest.raises(ValueError):
        SafetyConfig(limit_mode="ignore")
    with pytest.raises(ValueError):
        SafetyConfig(step_mode="warp")


def test_check_pose_limits():
    with pytest.raises(CommandRejected):
        check_pose([0, 0, 0, 0, 0, 9.0], SafetyConfig(limit_mode="reject"))
    assert check_pose([0, 0, 0, 0, 0, 9.0], SafetyConfig()).positions[5] == pytest.approx(1.5)


def test_watchdog_trips_once_per_silence_and_only_when_armed():
    wd = CommandWatchdog(0.5)
    assert not wd.check(100.0)  # never fed: idle arm needs no commands
    wd.feed(100.0)
    assert not wd.check(100.4)
    assert wd.check(100.6)
    assert not wd.check(101.0)  # tripped once, then disarmed
    wd.feed(102.0)
    wd.disarm()
    assert not wd.check(110.0)
    assert wd.trips == 1
    off = CommandWatchdog(0.0)
    off.feed(0.0)
    assert not off.check(1e6)


def test_estop_latches_until_reset():
    latch = EStopLatch()
    assert latch.trigger("operator")
    assert not latch.trigger("again")  # already latched
    assert latch.latched and latch.count == 2
    assert latch.reset() and not latch.latched
    assert not latch.reset()


def test_trajectory_interpolates_in_time_and_prepends_start():
    start = np.zeros(6)
    traj = Trajectory.from_start(start, [1.0, 2.0], [np.ones(6), 3 * np.ones(6)])
    assert traj.duration == 2.0
    assert traj.at(0.5) == pytest.approx(0.5 * np.ones(6))
    assert traj.at(1.5) == pytest.approx(2 * np.ones(6))
    assert traj.at(5.0) == pytest.approx(3 * np.ones(6))
    samples = traj.samples(10.0)
    assert len(samples) == 20 and samples[-1] == pytest.approx(3 * np.ones(6))
    assert traj.max_step(10.0) == pytest.approx(0.2 * np.ones(6))


def test_trajectory_first_point_at_zero_replaces_start():
    traj = Trajectory.from_start(np.zeros(6), [0.0, 1.0], [np.ones(6), np.ones(6)])
    assert traj.at(0.0) == pytest.approx(np.ones(6))
    assert traj.max_step(50.0, start=np.zeros(6))[0] == pytest.approx(1.0)  # the jump is visible to the step rule


def test_trajectory_rejects_bad_times():
    with pytest.raises(TrajectoryError):
        Trajectory.from_start(np.zeros(6), [1.0, 1.0], [np.ones(6), np.ones(6)])
    with pytest.raises(TrajectoryError):
        Trajectory.from_start(np.zeros(6), [], [])
    with pytest.raises(TrajectoryError):
        Trajectory([math.nan], [np.ones(6)])


def test_linear_move_and_min_duration():
    assert min_duration(np.zeros(6), np.array([0, 0.5, 0, 0, 0, 0]), 1.0) == pytest.approx(0.5)
    move = linear_move(np.zeros(6), np.ones(6), 2.0)
    assert move.at(1.0) == pytest.approx(0.5 * np.ones(6))
    assert linear_move(np.zeros(6), np.ones(6), 0.0).at(0.0) == pytest.approx(np.ones(6))
