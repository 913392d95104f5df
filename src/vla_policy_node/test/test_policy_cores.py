"""The policy's ROS-free cores against hand-worked numbers: plan smoothing + EMA seeding, inference gating, RTC
leftovers, observation freshness, the clock conventions. No ROS, no model; times are plain floats (steady s)."""

import math

import numpy as np
import pytest

from vla_policy_node.chunk_scheduler import ChunkScheduler, SchedulerConfig
from vla_policy_node.command_plan import CommandPlanner, Plan, SmoothingConfig, smooth
from vla_policy_node.freshness import InputTimes, observation_problem
from vla_policy_node.inference_gate import OVERLAP, STOP_AND_GO, GateConfig, InferenceGate
from vla_policy_node.rtc import PreviousChunk, rtc_arguments
from vla_policy_node.timebase import ros_to_steady, steady_to_ros

DT = 0.1


def col(*values):
    return np.array(values, dtype=float)[:, None]


# ------------------------------------------------------------------------------------------------ smoothing
def test_smooth_ema_hand_worked():
    # y0 = x0 = 0 without a seed; then y += 0.5 (x - y): 5, 7.5, 8.75
    out = smooth(col(0, 10, 10, 10), None, SmoothingConfig(ema_alpha=0.5))
    assert out[:, 0] == pytest.approx([0.0, 5.0, 7.5, 8.75])


def test_smooth_from_seed_with_step_limit_per_joint_and_joint_limits():
    cfg = SmoothingConfig(ema_alpha=1.0, max_joint_step=0.2)
    out = smooth(np.array([[1.0, 1.05], [1.0, 1.05]]), np.array([0.0, 1.0]), cfg)
    assert out[0] == pytest.approx([0.2, 1.05])  # joint 0 clipped to +0.2, joint 1 moves its full 0.05
    assert out[1] == pytest.approx([0.4, 1.05])
    # 0.5 * (10 - 0) = 5 -> clipped to 1.0; then 0.5 * 9 = 4.5 -> 1 + 1 = 2.0 -> clamped to the limit 1.5
    limited = SmoothingConfig(ema_alpha=0.5, max_joint_step=1.0, lower_limits=np.array([-1.0]),
                              upper_limits=np.array([1.5]))
    assert smooth(col(10, 10), np.array([0.0]), limited)[:, 0] == pytest.approx([1.0, 1.5])


def test_smoothing_config_errors():
    with pytest.raises(ValueError, match="ema_alpha"):
        SmoothingConfig(ema_alpha=0.0)
    with pytest.raises(ValueError, match="max_joint_step"):
        SmoothingConfig(max_joint_step=0.0)


def test_plan_sample_is_linear_and_held_at_the_ends():
    plan = Plan(start=1.0, step_period=DT, points=col(0.0, 1.0, 3.0))
    assert plan.end == pytest.approx(1.2)
    assert plan.sample(1.05)[0] == pytest.approx(0.5)
    assert plan.sample(1.15)[0] == pytest.approx(2.0)
    assert plan.sample(0.5)[0] == 0.0 and plan.sample(9.0)[0] == 3.0


# ------------------------------------------------------------------------------------------ planning + seeding
def test_first_plan_seeds_from_the_measured_state_and_starts_at_the_first_step_ahead():
    planner = CommandPlanner(DT, SmoothingConfig(ema_alpha=0.5))
    planned = [(1.0, np.array([10.0])), (1.1, np.array([10.0])), (1.2, np.array([10.0])), (1.3, np.array([10.0]))]
    # now = 1.05: the step at 1.0 has begun; the plan starts at 1.1 from the measured 2.0: 6, 8, 9
    plan = planner.build(planned, now=1.05, measured=[2.0])
    assert plan.start == pytest.approx(1.1)
    assert plan.points[:, 0] == pytest.approx([6.0, 8.0, 9.0])
    assert planner.counters.seeded_from_measured == 1


def test_next_plan_continues_the_running_plan_without_a_seam():
    planner = CommandPlanner(DT, SmoothingConfig(ema_alpha=0.5))
    first = planner.build([(0.0, np.array([0.0])), (0.1, np.array([4.0])), (0.2, np.array([4.0])),
                           (0.3, np.array([4.0]))], now=0.0, measured=[0.0])
    assert first.points[:, 0] == pytest.approx([0.0, 2.0, 3.0, 3.5])
    # A merged timeline at now = 0.15: steps 0.2 and 0.3 now say 8. Seed = the running plan at 0.1 = 2.0:
    # y(0.2) = 2 + 0.5 (8 - 2) = 5, y(0.3) = 5 + 0.5 * 3 = 6.5; the measured state (-7) is not used.
    second = planner.build([(0.1, np.array([4.0])), (0.2, np.array([8.0])), (0.3, np.array([8.0]))], now=0.15,
                           measured=[-7.0])
    assert second.start == pytest.approx(0.2) and second.points[:, 0] == pytest.approx([5.0, 6.5])
    assert planner.counters.seeded_from_measured == 1


def test_plan_after_the_previous_one_ran_out_seeds_from_the_measured_state():
    planner = CommandPlanner(DT, SmoothingConfig(ema_alpha=0.5))
    planner.build([(0.0, np.array([4.0])), (0.1, np.array([4.0]))], now=0.0, measured=[4.0])  # ends at 0.1
    plan = planner.build([(2.0, np.array([0.0])), (2.1, np.array([0.0]))], now=2.0, measured=[1.0])
    assert plan.points[:, 0] == pytest.approx([0.5, 0.25])  # from 1.0, not from the old plan's 4.0


def test_a_plan_needs_two_steps_ahead():
    planner = CommandPlanner(DT, SmoothingConfig())
    assert planner.build([(0.0, np.array([1.0])), (0.1, np.array([1.0]))], now=0.05, measured=[0.0]) is None
    assert planner.counters.too_short == 1 and planner.last is None


def test_hold_is_where_the_running_plan_is_and_none_after_it_ran_out():
    planner = CommandPlanner(DT, SmoothingConfig())
    planner.build([(0.0, np.array([0.0])), (0.1, np.array([1.0])), (0.2, np.array([3.0]))], now=0.0, measured=[0.0])
    assert planner.hold(0.15)[0] == pytest.approx(2.0)
    assert planner.last is None  # the next plan seeds from the measured pose
    planner.build([(1.0, np.array([0.0])), (1.1, np.array([1.0]))], now=1.0, measured=[0.0])
    assert planner.hold(5.0) is None and planner.counters.holds == 1


# ------------------------------------------------------------------------------------------------- gating
def gate(**kwargs):
    # 10 steps of 0.1 s: a chunk lasts 1.0 s; default lead = half a chunk = 0.5 s
    return InferenceGate(GateConfig(step_period=DT, chunk_steps=10, **kwargs))


def test_gate_starts_at_once_when_nothing_is_planned():
    g = gate()
    d = g.decide(now=0.0, plan_end=None, idle_since=-math.inf, image_stamp=0.0)
    assert d.start and d.mode == OVERLAP


def test_gate_lead_is_half_a_chunk_or_the_slowest_latency_plus_margin():
    g = gate(latency_margin_s=0.1)
    assert g.lead() == pytest.approx(0.5)
    assert not g.decide(now=1.0, plan_end=1.6, idle_since=None, image_stamp=1.0).start  # 0.6 s left > 0.5
    assert g.decide(now=1.0, plan_end=1.5, idle_since=None, image_stamp=1.0).start
    for latency in (0.2, 0.45, 0.3):  # median 0.3 (overlap still pays: (1 - 0.3)/0.3 > 1/1.3)
        g.record_latency(latency)
    assert g.mode() == OVERLAP
    assert g.lead() == pytest.approx(0.55)  # 0.45 + 0.1 > 0.5
    assert g.decide(now=1.0, plan_end=1.55, idle_since=None, image_stamp=1.0).start
    assert gate(lead_steps=8).lead() == pytest.approx(0.8)


def test_gate_switches_to_stop_and_go_for_a_model_slower_than_0_62_of_its_chunk():
    g = gate()
    g.record_latency(0.6)  # overlap: (1 - 0.6)/0.6 = 0.67 of the time; stop-and-go: 1/1.6 = 0.625 -> overlap
    assert g.mode() == OVERLAP
    g = gate()
    g.record_latency(0.7)  # overlap: 0.43; stop-and-go: 0.59 -> stop-and-go
    assert g.mode() == STOP_AND_GO
    d = g.decide(now=1.0, plan_end=1.1, idle_since=None, image_stamp=1.0)
    assert not d.start and "run out" in d.reason
    # The plan ran out at 1.1: an image taken at 1.05 shows a moving arm -> wait; one from 1.12 -> start.
    assert not g.decide(now=1.15, plan_end=None, idle_since=1.1, image_stamp=1.05).start
    assert g.decide(now=1.15, plan_end=None, idle_since=1.1, image_stamp=1.12).start
    # Without rebasing there is no stop-and-go: the gate stays in overlap mode.
    g = gate(rebase_when_idle=False)
    g.record_latency(0.7)
    assert g.mode() == OVERLAP and g.decide(now=1.15, plan_end=None, idle_since=1.1, image_stamp=1.05).start


def test_gate_config_errors():
    with pytest.raises(ValueError, match="step_period"):
        GateConfig(step_period=0.0, chunk_steps=10)
    with pytest.raises(ValueError, match="chunk_steps"):
        GateConfig(step_period=DT, chunk_steps=0)


def test_scheduler_plan_end_and_gate_together():
    # A 10-step chunk observed at 0.0 and placed at 0.0: the plan runs out at 1.0; lead 0.5 -> start at 0.5.
    s = ChunkScheduler(SchedulerConfig(step_period=DT))
    s.add_chunk(np.zeros((10, 1)), obs_stamp=0.0, now=0.0)
    g = gate()
    assert s.plan_end(0.45) == pytest.approx(1.0)
    assert not g.decide(0.45, s.plan_end(0.45), s.idle_since(0.45), 0.45).start
    assert g.decide(0.5, s.plan_end(0.5), s.idle_since(0.5), 0.5).start


# --------------------------------------------------------------------------------------------------- RTC
def test_rtc_leftover_hand_worked():
    actions = np.arange(10, dtype=float).reshape(1, 10, 1)
    prev = PreviousChunk(start=2.0, model_actions=actions, latency=0.25)
    # observation at 2.31: round(3.1) = 3 steps done -> leftover from step 3; delay ceil(0.25 / 0.1) = 3 steps
    args = rtc_arguments(prev, obs_stamp=2.31, step_period=DT)
    assert args["prev_chunk_left_over"][0, :, 0].tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert args["inference_delay"] == 3
    assert rtc_arguments(prev, obs_stamp=1.9, step_period=DT) == {}  # before the chunk started
    assert rtc_arguments(prev, obs_stamp=3.0, step_period=DT) == {}  # all 10 steps done
    assert rtc_arguments(None, obs_stamp=2.0, step_period=DT) == {}
    assert rtc_arguments(PreviousChunk(2.0, actions, 0.2), 2.0, DT)["inference_delay"] == 2  # exactly 2 steps


# ------------------------------------------------------------------------------------------------ freshness
def test_observation_freshness_hand_worked():
    fresh = InputTimes(received=9.9, stamp=9.8)
    assert observation_problem(10.0, fresh, fresh, timeout=0.5) == ""
    assert "no image" in observation_problem(10.0, None, fresh, 0.5)
    assert "no joint_states" in observation_problem(10.0, fresh, None, 0.5)
    # received just now but taken 0.7 s ago: stale
    assert observation_problem(10.0, InputTimes(10.0, 9.3), fresh, 0.5) == "image stale (0.70 s > 0.5 s)"
    # taken recently but the last one arrived 0.6 s ago (the camera stopped): stale
    assert "image stale (0.60 s" in observation_problem(10.0, InputTimes(9.4, 9.4), fresh, 0.5)
    assert "joint_states stale (0.80 s" in observation_problem(10.0, fresh, InputTimes(9.2, 9.2), 0.5)


# ------------------------------------------------------------------------------------------------ timebase
def test_ros_and_steady_conversions():
    # ROS now 1000.0 while steady now is 50.0: a stamp 999.8 was taken at steady 49.8
    assert ros_to_steady(999.8, ros_now=1000.0, steady_now=50.0) == pytest.approx(49.8)
    assert ros_to_steady(0.0, ros_now=1000.0, steady_now=50.0) == 50.0  # unstamped: now
    assert steady_to_ros(50.3, steady_now=50.0, ros_now=1000.0) == pytest.approx(1000.3)
