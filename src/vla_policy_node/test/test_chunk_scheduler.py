"""ChunkScheduler against hand-worked examples (pure numpy, no ROS, no model).

Convention in these examples: dt = 0.1 s, one joint unless said otherwise, chunk values chosen so that the expected
numbers can be checked by hand.
"""

import math

import numpy as np
import pytest

from vla_policy_node.chunk_scheduler import ChunkScheduler, MergeRule, SchedulerConfig

DT = 0.1


def col(*values):
    """A one-joint chunk [T, 1]."""
    return np.array(values, dtype=float)[:, None]


def make(**kwargs):
    return ChunkScheduler(SchedulerConfig(step_period=DT, **kwargs))


def test_chunk_placed_by_observation_stamp_and_stale_steps_dropped():
    s = make()
    # Observation at t=1.0, chunk ready at t=1.25 (latency 0.25 s): steps for 1.0 and 1.1 have expired
    # (1.1 + 0.1 <= 1.25), step 2 (1.2) is current, steps 3, 4 are in the future.
    result = s.add_chunk(col(10, 11, 12, 13, 14), obs_stamp=1.0, now=1.25)
    assert result.dropped_stale == 2 and result.placed == 3
    assert s.counters.dropped_stale == 2
    assert s.queue_depth(1.25) == 3
    assert s.current_target(1.25)[0] == 12
    assert s.current_target(1.31)[0] == 13
    assert s.current_target(1.42)[0] == 14
    assert s.current_target(1.55) is None  # 1.4 + 0.1 <= 1.55: nothing current
    assert s.plan_end(1.55) is None and s.idle_since(1.55) == pytest.approx(1.5)


def test_nothing_before_first_chunk_and_plan_end():
    s = make()
    assert s.current_target(0.0) is None
    assert s.queue_depth(0.0) == 0 and s.plan_end(0.0) is None
    s.add_chunk(col(1, 2, 3, 4), obs_stamp=0.0, now=0.0)
    assert s.plan_end(0.0) == pytest.approx(0.4)  # the last step (0.3) expires at 0.4
    # Jump to t=0.35: step 3 (0.3) is current.
    assert s.current_target(0.35)[0] == 4


def test_merge_latest_newer_observation_wins():
    s = make(merge_rule="latest")
    s.add_chunk(col(0, 1, 2, 3, 4), obs_stamp=0.0, now=0.0)
    # Second chunk from t=0.2 overlaps slots 2..4 and extends to slot 6.
    result = s.add_chunk(col(20, 30, 40, 50, 60), obs_stamp=0.2, now=0.2)
    assert result.merged == 3 and result.placed == 5
    values = [float(v[0]) for _, v in s.planned(0.2)]
    assert values == [20, 30, 40, 50, 60]
    # An older observation arriving late does not overwrite newer predictions.
    s.add_chunk(col(-1, -1, -1), obs_stamp=0.1, now=0.2)
    assert [float(v[0]) for _, v in s.planned(0.2)][:2] == [20, 30]


def test_merge_weighted_average_hand_worked():
    s = make(merge_rule=MergeRule.WEIGHTED_AVERAGE, old_weight=0.3, new_weight=0.7)
    s.add_chunk(col(0, 10, 20), obs_stamp=0.0, now=0.0)
    s.add_chunk(col(100, 100, 100), obs_stamp=0.1, now=0.1)
    planned = s.planned(0.1)
    # slot 1: 0.3*10 + 0.7*100 = 73; slot 2: 0.3*20 + 0.7*100 = 76; slot 3: new only = 100
    assert [round(float(v[0]), 9) for _, v in planned] == [73.0, 76.0, 100.0]
    assert [round(t, 9) for t, _ in planned] == [0.1, 0.2, 0.3]
    # Weights are normalised by their sum: 1 and 1 -> plain mean.
    s2 = make(merge_rule="weighted_average", old_weight=1.0, new_weight=1.0)
    s2.add_chunk(col(2, 4), obs_stamp=0.0, now=0.0)
    s2.add_chunk(col(6), obs_stamp=0.1, now=0.1)
    assert float(s2.planned(0.1)[0][1][0]) == pytest.approx(5.0)


def test_merge_temporal_ensemble_act_weights_hand_worked():
    # exp(-m) = 0.5: the oldest prediction weighs 1, the next 0.5, the next 0.25.
    s = make(merge_rule="temporal_ensemble", ensemble_decay=math.log(2.0))
    s.add_chunk(col(0, 0, 0), obs_stamp=0.0, now=0.0)
    s.add_chunk(col(3, 3), obs_stamp=0.1, now=0.1)  # slots 1, 2
    s.add_chunk(col(7), obs_stamp=0.2, now=0.2)  # slot 2
    planned = s.planned(0.2)
    # slot 2: (1*0 + 0.5*3 + 0.25*7) / (1 + 0.5 + 0.25) = 3.25 / 1.75
    assert float(planned[0][1][0]) == pytest.approx(3.25 / 1.75)
    # m = 0: every prediction weighs the same (a plain running mean).
    s0 = make(merge_rule="temporal_ensemble", ensemble_decay=0.0)
    s0.add_chunk(col(0, 0), obs_stamp=0.0, now=0.0)
    s0.add_chunk(col(3), obs_stamp=0.1, now=0.1)
    assert float(s0.current_target(0.1)[0]) == pytest.approx(1.5)


def test_stamps_snap_to_the_grid_of_the_first_chunk():
    s = make(merge_rule="latest")
    s.add_chunk(col(0, 1, 2, 3), obs_stamp=0.0, now=0.0)
    # Observation at 0.13 -> its step 0 lands on slot round(1.3) = 1 (t = 0.1), step 1 on slot 2.
    s.add_chunk(col(50, 60), obs_stamp=0.13, now=0.13)
    planned = s.planned(0.13)
    assert [round(t, 9) for t, _ in planned] == [0.1, 0.2, 0.3]
    assert [float(v[0]) for _, v in planned] == [50, 60, 3]


def test_queue_depth():
    s = make()
    s.add_chunk(col(*range(5)), obs_stamp=0.0, now=0.0)
    assert s.queue_depth(0.0) == 5
    assert s.queue_depth(0.15) == 4  # slot 0 expired at 0.1
    assert s.queue_depth(0.25) == 3
    assert s.queue_depth(0.35) == 2
    assert s.queue_depth(0.55) == 0


def test_non_finite_chunk_rejected_and_counted():
    s = make()
    with pytest.raises(ValueError, match="NaN"):
        s.add_chunk(col(0.0, float("nan")), obs_stamp=0.0, now=0.0)
    with pytest.raises(ValueError):
        s.add_chunk(col(0.0, float("inf")), obs_stamp=0.0, now=0.0)
    assert s.counters.chunks_rejected_nonfinite == 2
    assert s.queue_depth(0.0) == 0 and s.current_target(0.0) is None


def test_bad_config_and_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="merge rule"):
        SchedulerConfig(step_period=DT, merge_rule="median")
    with pytest.raises(ValueError, match="step_period"):
        SchedulerConfig(step_period=0.0)
    s = make()
    s.add_chunk(np.zeros((3, 6)), obs_stamp=0.0, now=0.0)
    with pytest.raises(ValueError, match="joints"):
        s.add_chunk(np.zeros((3, 5)), obs_stamp=0.0, now=0.0)


def test_clear_forgets_the_plan():
    s = make()
    s.add_chunk(col(4, 4), obs_stamp=0.0, now=0.0)
    s.clear(now=0.05)
    assert s.queue_depth(0.05) == 0 and s.current_target(0.05) is None and s.idle_since(0.05) == 0.05
    s.add_chunk(col(8), obs_stamp=1.0, now=1.0)
    assert float(s.current_target(1.0)[0]) == 8.0


def test_rebase_when_idle_starts_chunk_at_arrival():
    s = make(rebase_when_idle=True)
    # Nothing planned yet (the arm holds): observation at 1.0, chunk ready at 1.25 -> step 0 is for 1.25.
    result = s.add_chunk(col(10, 11, 12, 13, 14), obs_stamp=1.0, now=1.25)
    assert result.rebased and result.dropped_stale == 0 and result.placed == 5
    assert [round(t, 9) for t, _ in s.planned(1.25)] == [1.25, 1.35, 1.45, 1.55, 1.65]
    assert s.current_target(1.25)[0] == 10
    assert s.counters.rebased_chunks == 1
    # Without the option the same chunk loses its first two steps (test above).
    assert make().add_chunk(col(10, 11, 12, 13, 14), obs_stamp=1.0, now=1.25).dropped_stale == 2


def test_no_rebase_when_the_arm_was_moving_at_the_observation():
    s = make(rebase_when_idle=True)
    s.add_chunk(col(0, 1, 2, 3, 4), obs_stamp=0.0, now=0.0)  # rebased (idle): slots 0.0 .. 0.4, empty from 0.5
    # Observation at 0.3 (the arm was moving), ready at 0.9: placed by its stamp, steps 0.3 .. 0.7 all expired.
    result = s.add_chunk(col(5, 6, 7, 8, 9), obs_stamp=0.3, now=0.9)
    assert not result.rebased and result.dropped_stale == 5 and s.queue_depth(0.9) == 0
    # Observation at 0.95, after the timeline ran empty at 0.5 (arm holding): rebased to its arrival at 1.2.
    result = s.add_chunk(col(20, 21), obs_stamp=0.95, now=1.2)
    assert result.rebased and [round(t, 9) for t, _ in s.planned(1.2)] == [1.2, 1.3]
    # A pause (clear) at 1.25 while moving: an observation from before the pause is not rebased.
    s.clear(now=1.25)
    assert not s.add_chunk(col(1, 1, 1, 1), obs_stamp=1.22, now=1.4).rebased


def test_idle_since_reports_when_the_plan_ran_out():
    s = make()
    assert s.idle_since(0.0) == -math.inf  # never planned
    s.add_chunk(col(1, 2, 3), obs_stamp=0.0, now=0.0)
    assert s.idle_since(0.25) is None  # slot 2 (0.2 .. 0.3) still current
    assert s.idle_since(0.31) == pytest.approx(0.3)
