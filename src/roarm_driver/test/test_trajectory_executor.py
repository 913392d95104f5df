"""TrajectoryExecutor against hand-worked examples (plain numpy, times in steady seconds passed in).

Convention: one joint unless said otherwise, so each pose is a 1-vector and the numbers can be checked by hand.
"""

import numpy as np
import pytest

from roarm_driver.trajectory_executor import TrajectoryError, TrajectoryExecutor, ros_stamp_to_steady


def q(*values):
    return np.array(values, dtype=float)[:, None]


def value(executor, t):
    return float(executor.sample(t)[0])


def test_stamp_becomes_steady_time_at_receipt_and_zero_means_now():
    # ROS time 1000.0 at receipt, steady 50.0: a stamp of 999.8 (0.2 s ago) starts at steady 49.8.
    assert ros_stamp_to_steady(999.8, ros_now=1000.0, steady_now=50.0) == pytest.approx(49.8)
    assert ros_stamp_to_steady(0.0, ros_now=1000.0, steady_now=50.0) == 50.0


def test_first_trajectory_starts_from_the_commanded_pose_and_holds_the_last_point():
    ex = TrajectoryExecutor()
    # received at t=10 with start 10: points 1.0 at 10.5 and 2.0 at 11.0, from the commanded pose 0.0
    r = ex.replace(start=10.0, times_from_start=[0.5, 1.0], positions=q(1.0, 2.0), now=10.0, current=[0.0])
    assert (r.anchor_time, r.skipped, r.kept_old, r.end_time) == (10.0, 0, 0, 11.0)
    assert value(ex, 10.0) == 0.0
    assert value(ex, 10.25) == pytest.approx(0.5)  # halfway to 1.0
    assert value(ex, 10.75) == pytest.approx(1.5)
    assert ex.tick(11.0)[0] == 2.0 and ex.plan_exhausted_ticks == 0  # at the end: not past it
    assert ex.tick(11.02)[0] == 2.0 and ex.tick(11.04)[0] == 2.0  # held, and counted
    assert ex.plan_exhausted_ticks == 2


def test_points_in_the_past_are_skipped_and_the_plan_goes_to_the_first_point_ahead():
    ex = TrajectoryExecutor()
    # Stamp 0.3 s before receipt: start 9.7. Points at 9.8 (1.0), 10.0 (2.0), 10.2 (3.0), 10.4 (4.0).
    # Receipt 10.05: 9.8 and 10.0 are past (skipped); from 0.0 at 10.05 straight to 3.0 at 10.2.
    r = ex.replace(start=9.7, times_from_start=[0.1, 0.3, 0.5, 0.7], positions=q(1, 2, 3, 4), now=10.05,
                   current=[0.0])
    assert (r.anchor_time, r.skipped) == (10.05, 2)
    assert value(ex, 10.05) == 0.0
    assert value(ex, 10.1) == pytest.approx(1.0)  # 0.05 of 0.15 s toward 3.0
    assert value(ex, 10.3) == pytest.approx(3.5)
    assert ex.points_skipped == 2


def test_new_trajectory_replaces_the_unexecuted_part_from_its_start_time():
    ex = TrajectoryExecutor()
    ex.replace(start=0.0, times_from_start=[1.0, 2.0], positions=q(1.0, 2.0), now=0.0, current=[0.0])
    # At t=0.5 a new trajectory arrives whose start is 1.5 (in the future): the old plan runs until 1.5
    # (where it is at 1.5), then straight to -1.0 at 2.5.
    r = ex.replace(start=1.5, times_from_start=[1.0], positions=q(-1.0), now=0.5, current=[99.0])
    assert r.anchor_time == 1.5 and r.skipped == 0 and r.kept_old == 2  # old knots at 0.0 and 1.0
    assert value(ex, 0.5) == pytest.approx(0.5)  # old plan still rules
    assert value(ex, 1.25) == pytest.approx(1.25)
    assert value(ex, 1.5) == pytest.approx(1.5)  # old plan's value at the new start
    assert value(ex, 2.0) == pytest.approx(0.25)  # halfway from 1.5 to -1.0
    assert value(ex, 3.0) == -1.0


def test_replacement_starting_now_takes_over_from_where_the_plan_is():
    ex = TrajectoryExecutor()
    ex.replace(start=0.0, times_from_start=[1.0], positions=q(1.0), now=0.0, current=[0.0])
    # zero-stamp trajectory at 0.4 (start = now): from the old plan's 0.4 to 0.0 at 0.6
    ex.replace(start=0.4, times_from_start=[0.2], positions=q(0.0), now=0.4, current=[99.0])
    assert value(ex, 0.4) == pytest.approx(0.4)
    assert value(ex, 0.5) == pytest.approx(0.2)
    assert value(ex, 0.7) == 0.0


def test_a_point_due_at_the_start_replaces_the_anchor():
    ex = TrajectoryExecutor()
    # time_from_start 0 with start = now: the point IS the pose now (a jump: the line guard limits it)
    ex.replace(start=5.0, times_from_start=[0.0, 0.1], positions=q(1.0, 1.0), now=5.0, current=[0.0])
    assert value(ex, 5.0) == 1.0


def test_start_in_the_future_without_a_plan_holds_the_commanded_pose_until_then():
    ex = TrajectoryExecutor()
    ex.replace(start=2.0, times_from_start=[1.0], positions=q(1.0), now=1.0, current=[0.5])
    assert value(ex, 1.0) == 0.5 and value(ex, 2.0) == 0.5
    assert value(ex, 2.5) == pytest.approx(0.75)


def test_a_trajectory_entirely_in_the_past_is_refused_and_changes_nothing():
    ex = TrajectoryExecutor()
    ex.replace(start=0.0, times_from_start=[1.0], positions=q(1.0), now=0.0, current=[0.0])
    with pytest.raises(TrajectoryError, match="past"):
        ex.replace(start=0.0, times_from_start=[0.1, 0.2], positions=q(5, 6), now=0.5, current=[0.0])
    assert value(ex, 1.0) == 1.0


@pytest.mark.parametrize("times", [[0.2, 0.1], [0.1, 0.1], [-0.1, 0.2], [float("nan"), 1.0]])
def test_bad_times_are_refused(times):
    with pytest.raises(TrajectoryError):
        TrajectoryExecutor().replace(0.0, times, q(1, 2), now=0.0, current=[0.0])


def test_setpoint_hold_is_never_counted_as_exhausted():
    ex = TrajectoryExecutor()
    ex.hold([0.3, 0.1], now=1.0)
    assert ex.tick(5.0).tolist() == [0.3, 0.1] and ex.plan_exhausted_ticks == 0
    ex.start_plan([0.0, 1.0], [[0.0], [1.0]])  # a move planned by the driver: not counted either
    ex.tick(2.0)
    assert ex.plan_exhausted_ticks == 0
