"""DART perturbation (perturbation.py): hand-worked offsets, labels equal to the clean expert's plan, executed
steps within the driver's limit, and perturbed demonstrations that still pick the box."""

import numpy as np
import pytest

from roarm_description import joints
from roarm_sim import arm_model
from roarm_sim.expert import APPROACH, CLOSE, DESCEND, HOLD, LIFT, ExpertConfig, ScriptedExpert
from roarm_sim.kinematic_rollout import run_episode
from roarm_sim.perturbation import ExecutionPerturbation, PerturbationConfig, envelope, perturbed_setpoint
from roarm_sim.scene import draw_episode


def test_envelope_full_on_the_approach_fading_over_the_descent_off_after():
    assert envelope(APPROACH, 0.0) == 1.0 and envelope(APPROACH, 0.9) == 1.0
    assert envelope(DESCEND, 0.0) == 1.0
    assert envelope(DESCEND, 0.25) == pytest.approx(0.75)
    assert envelope(DESCEND, 1.0) == 0.0 and envelope(DESCEND, 1.7) == 0.0
    for phase in (CLOSE, LIFT, HOLD, "FAILED"):
        assert envelope(phase, 0.5) == 0.0


def test_offset_walks_towards_the_drawn_target_at_max_rate():
    config = PerturbationConfig(std=0.1, max_rate=0.2, hold_time=1.0)
    target = np.clip(np.random.default_rng(7).normal(0.0, 0.1, 5), -0.2, 0.2)  # the first draw, by hand
    p = ExecutionPerturbation(config, seed=7)
    assert np.all(p.offset(0.0, APPROACH, 0.0) == 0.0)  # no time has passed yet
    # 0.25 s at 0.2 rad/s: each joint moved min(|target|, 0.05) towards its target
    expected = np.sign(target) * np.minimum(np.abs(target), 0.05)
    np.testing.assert_allclose(p.offset(0.25, APPROACH, 0.2)[:5], expected)
    assert p.current[joints.GRIPPER_INDEX] == 0.0  # the gripper is never perturbed
    # 0.25 s later, a quarter into the descent: the walk moved on, the envelope scales it by 0.75
    walk = np.sign(target) * np.minimum(np.abs(target), 0.10)
    np.testing.assert_allclose(p.offset(0.5, DESCEND, 0.25)[:5], 0.75 * walk)
    assert np.all(p.offset(0.6, CLOSE, 0.1) == 0.0)
    # offsets never exceed 2 std, whatever the draw
    p = ExecutionPerturbation(config, seed=3)
    assert max(np.max(np.abs(p.offset(t, APPROACH, 0.0))) for t in np.arange(0.0, 30.0, 0.05)) <= 0.2 + 1e-12


def test_zero_std_is_no_perturbation_and_bad_configs_are_refused():
    p = ExecutionPerturbation(PerturbationConfig(std=0.0), seed=1)
    assert all(np.all(p.offset(t, APPROACH, 0.0) == 0.0) for t in np.arange(0.0, 3.0, 0.1))
    for bad in (dict(std=-0.1), dict(std=0.6), dict(max_rate=0.0), dict(hold_time=0.0)):
        with pytest.raises(ValueError):
            PerturbationConfig(**bad)


def _follow(expert, perturbation, episode, dt=0.05, seconds=12.0):
    """An arm that reaches each executed setpoint by the next tick; returns (intended, executed) arrays."""
    expert.start(episode.box, episode.start_pose, 0.0)
    q, intended, executed = np.asarray(episode.start_pose, dtype=float), [], []
    for t in np.arange(0.0, seconds, dt):
        a, b = perturbed_setpoint(expert, perturbation, float(t), q)
        intended.append(a)
        executed.append(b)
        q = b
    return np.array(intended), np.array(executed)


def test_labels_are_the_clean_plan_and_executed_steps_stay_within_the_driver_limit():
    episode = draw_episode(5)
    config = ExpertConfig()
    clean, clean_executed = _follow(ScriptedExpert(config), ExecutionPerturbation(PerturbationConfig()), episode)
    np.testing.assert_array_equal(clean, clean_executed)
    perturbation = PerturbationConfig(std=0.05, max_rate=0.2)
    intended, executed = _follow(ScriptedExpert(config), ExecutionPerturbation(perturbation, seed=5), episode)
    # the expert sees the arm minus its own offset: its labels are the unperturbed demonstration's, tick by tick
    np.testing.assert_allclose(intended, clean, atol=1e-9)
    offsets = executed - intended
    assert 0.03 < np.abs(offsets).max() <= 0.1 + 1e-12 and np.all(offsets[:, joints.GRIPPER_INDEX] == 0.0)
    # each executed step: at most the expert's step limit plus the walk's rate and the envelope's fade per tick
    steps = np.abs(np.diff(executed, axis=0)).max()
    assert steps <= config.max_command_step + 0.05 * 0.2 + 0.1 * 0.05 / config.min_move_time + 1e-9
    assert steps < 0.2  # arm_driver's max_step
    # the grasp and the lift are exact: no offset once the jaws close
    assert np.all(offsets[-20:] == 0.0)


def test_perturbed_demonstrations_still_pick_the_box():
    results = [run_episode(seed, perturbation=PerturbationConfig(std=0.05), late_tick_probability=0.3)
               for seed in range(300, 320)]
    assert sum(r.status == 1 for r in results) >= 19, [(r.seed, r.detail) for r in results]
    assert all(r.rejected_steps == 0 for r in results)
    assert np.median([r.max_offset for r in results]) > 0.05  # the arm was really pushed off the clean path


# ------------------------------------------------------------------------------------------------ missed grasps
def test_a_miss_episode_offsets_the_base_through_its_first_pick_only():
    config = PerturbationConfig(std=0.0, max_rate=0.2, miss_fraction=1.0, miss_offset=(0.08, 0.14))
    p = ExecutionPerturbation(config, seed=3)
    rng = np.random.default_rng([3, 1])  # the miss draw by hand: is-a-miss, then sign, then size
    assert rng.random() < 1.0
    miss = rng.choice((-1.0, 1.0)) * rng.uniform(0.08, 0.14)
    assert p.misses_first_pick and p.miss[0] == pytest.approx(miss) and np.all(p.miss[1:] == 0.0)
    assert np.all(p.offset(0.0, APPROACH, 0.0, attempt=1) == 0.0)
    # ramps in at max_rate: 0.25 s -> 0.05 rad, then stays through the close and the lift (the DART walk does not)
    assert p.offset(0.25, APPROACH, 0.5, attempt=1)[0] == pytest.approx(np.sign(miss) * 0.05)
    assert p.offset(1.0, CLOSE, 0.5, attempt=1)[0] == pytest.approx(miss)
    assert p.offset(1.5, LIFT, 0.6, attempt=1)[0] == pytest.approx(miss)
    # the next pick walks it back at max_rate: 0.25 s later 0.05 rad less, 1 s later none
    assert p.offset(1.75, APPROACH, 0.1, attempt=2)[0] == pytest.approx(miss - np.sign(miss) * 0.05)
    assert p.offset(2.75, DESCEND, 0.5, attempt=2)[0] == 0.0
    assert np.all(p.current[1:] == 0.0)


def test_the_miss_draw_keeps_each_seeds_walk_and_hits_its_share():
    plain, with_misses = PerturbationConfig(std=0.05), PerturbationConfig(std=0.05, miss_fraction=1.0)
    a, b = ExecutionPerturbation(plain, seed=8), ExecutionPerturbation(with_misses, seed=8)
    for t in np.arange(0.0, 3.0, 0.05):
        da, db = a.offset(t, APPROACH, 0.0), b.offset(t, APPROACH, 0.0)
        np.testing.assert_array_equal(da[1:], db[1:])  # the joints the miss leaves alone: the same walk
    assert b.current[0] - a.current[0] == pytest.approx(b.miss[0])  # 3 s: fully ramped in
    drawn = [ExecutionPerturbation(PerturbationConfig(miss_fraction=0.3), seed=s).misses_first_pick
             for s in range(400)]
    assert 90 <= sum(drawn) <= 150  # 30 % of 400 = 120, binomial std 9
    assert not any(ExecutionPerturbation(PerturbationConfig(std=0.05), seed=s).misses_first_pick for s in range(50))
    for bad in (dict(miss_fraction=1.5), dict(miss_fraction=-0.1), dict(miss_offset=(0.14, 0.08)),
                dict(miss_offset=(0.0, 0.1)), dict(miss_offset=(0.1, 0.9))):
        with pytest.raises(ValueError):
            PerturbationConfig(**bad)


def _pick_with_a_box(expert, episode, box_rises: bool, dt=0.05, seconds=20.0):
    """An arm that reaches each setpoint by the next tick; the box rises with the lift only if ``box_rises``.
    Returns [(t, attempt started)] for each new attempt and the setpoints."""
    expert.start(episode.box, episode.start_pose, 0.0)
    q, retries, setpoints = np.asarray(episode.start_pose, dtype=float), [], []
    box = episode.box
    for t in np.arange(0.0, seconds, dt):
        if box_rises and expert.phase in (LIFT, HOLD) and expert.phase_progress(float(t)) > 0.2:
            box = episode.box.with_position(episode.box.position + [0.0, 0.0, 0.03])
        phase, progress = expert.phase, expert.phase_progress(float(t))
        if expert.check_grasp(box, float(t)):
            retries.append((float(t), phase, progress, expert.attempt))
        q = expert.setpoint(float(t), q)
        setpoints.append(q)
    return retries, np.array(setpoints)


def test_the_expert_picks_again_when_the_box_did_not_rise_and_gives_up_after_max_attempts():
    episode = draw_episode(5)
    expert = ScriptedExpert(ExpertConfig(max_attempts=3))
    retries, setpoints = _pick_with_a_box(expert, episode, box_rises=False)
    # judged half-way through each lift: two new picks, then the third miss fails the episode
    assert [(phase, attempt) for _, phase, _, attempt in retries] == [(LIFT, 2), (LIFT, 3)]
    assert all(progress >= 0.5 for _, _, progress, _ in retries)
    assert expert.failure.startswith("missed the grasp 3 time(s)") and expert.phase == "FAILED"
    # each new pick starts from the last setpoint (no jump) and reopens the jaws on its way back to the pre-grasp
    assert np.abs(np.diff(setpoints, axis=0)).max() <= ExpertConfig().max_command_step + 1e-12
    pick_open = arm_model.gripper_angle_for_gap(min(episode.box.size_xy + ExpertConfig().open_margin,
                                                    arm_model.MAX_GAP))
    after = setpoints[int(round(retries[0][0] / 0.05)):, joints.GRIPPER_INDEX]
    assert after[0] < 0.05 and after.max() == pytest.approx(pick_open, abs=1e-9)


def test_the_expert_does_not_retry_a_grasp_whose_box_rose_or_before_it_started():
    episode = draw_episode(5)
    expert = ScriptedExpert(ExpertConfig())
    assert not expert.check_grasp(episode.box, 0.0)  # nothing planned yet
    retries, _ = _pick_with_a_box(expert, episode, box_rises=True)
    assert retries == [] and expert.phase == HOLD and expert.attempt == 1 and not expert.failure
    once = ScriptedExpert(ExpertConfig(max_attempts=1))
    retries, _ = _pick_with_a_box(once, episode, box_rises=False)
    assert retries == [] and once.failure.startswith("missed the grasp 1 time(s)")


def test_demonstrations_that_miss_their_first_grasp_recover_and_pick_the_box():
    config = PerturbationConfig(std=0.05, miss_fraction=1.0)
    results = [run_episode(seed, perturbation=config, late_tick_probability=0.3) for seed in range(330, 342)]
    assert sum(r.status == 1 for r in results) >= 11, [(r.seed, r.detail) for r in results]
    assert all(r.attempts >= 2 for r in results)  # every first pick missed ...
    assert all(r.rejected_steps == 0 for r in results)  # ... with steps the driver accepts
    # the misses are real: an expert that may not pick again fails them all
    once = [run_episode(seed, perturbation=config, expert_config=ExpertConfig(max_attempts=1))
            for seed in range(330, 336)]
    assert all(r.status != 1 and r.attempts == 1 for r in once), [(r.seed, r.detail) for r in once]
