"""LineGuard against hand-worked numbers: velocity limit x real elapsed time, max_step, failed writes."""

import numpy as np
import pytest

from roarm_driver.line_guard import LineGuard

V = [3.0, 1.0]  # rad/s, two joints


def test_first_write_is_measured_from_the_measured_pose_over_one_period():
    g = LineGuard(V, max_step=0.2, nominal_period=0.02)
    out = g.limit([1.0, 0.01], now=10.0, measured=[0.0, 0.0])
    # allowed = (3 x 0.02, 1 x 0.02) = (0.06, 0.02): joint 0 clamped, joint 1 passes
    assert out.positions == pytest.approx([0.06, 0.01]) and out.clamped.tolist() == [True, False]


def test_allowed_step_grows_with_the_real_elapsed_time_up_to_max_step():
    g = LineGuard(V, max_step=0.2, nominal_period=0.02)
    g.written([0.0, 0.0], now=1.0, ok=True)
    assert g.limit([1.0, 1.0], now=1.01, measured=None).positions == pytest.approx([0.03, 0.01])
    assert g.limit([1.0, 1.0], now=1.05, measured=None).positions == pytest.approx([0.15, 0.05])
    # a late timer (0.5 s): velocity would allow 1.5 / 0.5 rad, max_step caps both at 0.2
    assert g.limit([1.0, 1.0], now=1.5, measured=None).positions == pytest.approx([0.2, 0.2])
    assert g.limit([-1.0, 0.0], now=1.5, measured=None).positions == pytest.approx([-0.2, 0.0])


def test_max_step_zero_leaves_only_the_velocity_bound():
    g = LineGuard(V, max_step=0.0, nominal_period=0.02)
    g.written([0.0, 0.0], now=0.0, ok=True)
    assert g.limit([5.0, 5.0], now=1.0, measured=None).positions == pytest.approx([3.0, 1.0])


def test_a_failed_write_keeps_both_poses_possible_and_clamps_into_both_boxes():
    g = LineGuard([1.0], max_step=1.0, nominal_period=0.1)
    g.written([0.0], now=0.0, ok=True)
    g.written([0.1], now=0.1, ok=False)  # maybe reached the servo, maybe not
    # at 0.2: from 0.0 (0.2 s ago) at most 0.2; from 0.1 (0.1 s ago) at most 0.2: box [0.0, 0.2]
    assert g.limit([1.0], now=0.2, measured=None).positions == pytest.approx([0.2])
    assert g.limit([-1.0], now=0.2, measured=None).positions == pytest.approx([0.0])


def test_rebase_on_the_measured_pose_is_the_new_reference():
    g = LineGuard(V, max_step=0.2, nominal_period=0.02)
    g.written([0.0, 0.0], now=0.0, ok=True)
    g.rebase([0.5, 0.5], now=1.0)
    assert g.reference.tolist() == [0.5, 0.5]
    assert g.limit([0.51, 0.5], now=1.01, measured=None).positions == pytest.approx([0.51, 0.5])


def test_counts_and_largest_step():
    g = LineGuard(V, max_step=0.2, nominal_period=0.02)
    g.written([0.0, 0.0], now=0.0, ok=True)
    out = g.limit([1.0, 0.0], now=0.02, measured=None)
    g.written(out.positions, 0.02, True, out)
    assert g.clamped_writes == 1 and g.clamped_joint_writes == 1
    assert g.largest_written == pytest.approx(0.06) and g.largest_request == pytest.approx(1.0)


def test_no_reference_at_all_is_an_error():
    with pytest.raises(ValueError, match="no reference"):
        LineGuard(V, 0.2, 0.02).limit([0.0, 0.0], now=0.0, measured=None)


@pytest.mark.parametrize("limits", [[0.0, 1.0], [np.nan, 1.0], [-1.0, 1.0]])
def test_bad_limits_are_refused(limits):
    with pytest.raises(ValueError):
        LineGuard(limits, 0.2, 0.02)
