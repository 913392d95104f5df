"""DART perturbation (perturbation.py): hand-worked offsets, labels equal to the clean expert's plan, executed
steps within the driver's limit, and perturbed demonstrations that still pick the box."""

import numpy as np
import pytest

from roarm_description import joints
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
