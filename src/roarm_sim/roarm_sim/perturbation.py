"""DART demonstrations: the scripted expert EXECUTES a smoothly perturbed setpoint but is LABELLED with its clean one.

ROS-free. A policy trained only on clean demonstrations never sees the hand beside the box, so once its own small
errors put it there it has no example of how to get back (it parks the hand 2 cm beside the box: README, Learned
pick). DART (Laskey et al. 2017, "DART: Noise Injection for Robust Imitation Learning") injects noise into what the
demonstrator executes while recording what it intended: the recorded states then include those off-path poses,
and the recorded actions (the expert's clean plan) lead back from them to the box.

The offset is a smooth random walk per arm joint (never the gripper): every ``hold_time`` seconds a new target is
drawn from N(0, std) (clipped at 2 std) and the offset moves towards it at no more than ``max_rate`` rad/s, so the
executed stream's steps stay within the driver's step limit. It is scaled by a phase envelope: 1 while the arm
approaches the box, falling linearly to 0 over the descent (the grasp pose itself is exact, so the demonstration
still succeeds: a failed one is discarded), 0 from the close on.

Missed grasps (``miss_fraction`` of the episodes, drawn per seed): the first pick of such an episode also executes a
fixed base-joint offset of ``miss_offset`` rad (random sign), through the close and the lift, so the jaws close
beside the box; the expert notices that the box did not rise and picks again (expert.check_grasp), with the offset
walked back to 0. The labels stay the clean plan throughout, so the dataset shows what to do after a miss: reopen,
back up, approach again, which a policy whose jaws closed beside the box has otherwise never seen.

    perturbation = ExecutionPerturbation(PerturbationConfig(std=0.05), seed=episode_seed)
    intended, executed = perturbed_setpoint(expert, perturbation, t, q_measured)   # each command tick
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roarm_description import joints

from .expert import APPROACH, DESCEND, ScriptedExpert

PERTURBED_JOINTS = tuple(range(joints.GRIPPER_INDEX))  # the arm joints; the gripper is never perturbed
MISS_JOINT = 0  # the base: turning it moves the jaws sideways off the box at any reach
MAX_STD = 0.5  # rad: beyond this the offsets (2 std) leave the arm's useful range around the expert's path


@dataclass(frozen=True)
class PerturbationConfig:
    std: float = 0.0  # rad, standard deviation of each arm joint's offset target; 0 = no perturbation
    max_rate: float = 0.2  # rad/s, fastest change of the offset (before the envelope)
    hold_time: float = 0.8  # s between two offset targets
    miss_fraction: float = 0.0  # share of the episodes whose first pick misses the box on purpose
    miss_offset: tuple[float, float] = (0.08, 0.14)  # rad, range of that pick's base offset (1.2-4 cm at the box)

    def __post_init__(self):
        if not 0 <= self.std <= MAX_STD or self.max_rate <= 0 or self.hold_time <= 0:
            raise ValueError(f"perturbation std must be within [0, {MAX_STD}], max_rate and hold_time > 0: {self}")
        low, high = self.miss_offset
        if not 0 <= self.miss_fraction <= 1 or not 0 < low <= high <= MAX_STD:
            raise ValueError(f"miss_fraction must be within [0, 1] and 0 < miss_offset low <= high <= {MAX_STD}: "
                             f"{self}")

    @property
    def enabled(self) -> bool:
        return self.std > 0 or self.miss_fraction > 0


def envelope(phase: str, progress: float) -> float:
    """How much of the offset is applied in ``phase`` at ``progress`` (0..1 of its planned duration)."""
    if phase == APPROACH:
        return 1.0
    if phase == DESCEND:
        return 1.0 - min(max(progress, 0.0), 1.0)
    return 0.0


class ExecutionPerturbation:
    """The offset added to the expert's setpoint at time t; ``current`` is the last one handed out."""

    def __init__(self, config: PerturbationConfig, seed: int = 0):
        self.config = config
        self._rng = np.random.default_rng(seed)
        self._walk = np.zeros(joints.NUM_JOINTS)  # the random walk before the envelope
        self._target = np.zeros(joints.NUM_JOINTS)
        self._next_draw: float | None = None
        self._last_t: float | None = None
        self.current = np.zeros(joints.NUM_JOINTS)
        # the miss draw has its own stream: the walk of a seed stays the same whatever miss_fraction is
        self.miss = np.zeros(joints.NUM_JOINTS)  # the first pick's offset in a miss episode, else 0
        if config.miss_fraction > 0:
            rng = np.random.default_rng([seed, 1])
            if rng.random() < config.miss_fraction:
                self.miss[MISS_JOINT] = rng.choice((-1.0, 1.0)) * rng.uniform(*config.miss_offset)
        self._miss_now = np.zeros(joints.NUM_JOINTS)

    @property
    def misses_first_pick(self) -> bool:
        return bool(np.any(self.miss))

    def offset(self, t: float, phase: str, progress: float, attempt: int = 1) -> np.ndarray:
        """The offset at time t in ``phase`` (``progress`` 0..1 through it) of pick ``attempt``."""
        c = self.config
        if not c.enabled:
            return self.current.copy()
        dt = 0.0 if self._last_t is None else max(t - self._last_t, 0.0)
        self._last_t = t
        if self._next_draw is None or t >= self._next_draw:  # std 0 (misses only): every draw is 0
            draw = np.clip(self._rng.normal(0.0, c.std, len(PERTURBED_JOINTS)), -2 * c.std, 2 * c.std)
            self._target[list(PERTURBED_JOINTS)] = draw
            self._next_draw = t + c.hold_time
        step = c.max_rate * dt  # both offsets move towards their targets at max_rate
        self._walk += np.clip(self._target - self._walk, -step, step)
        self._miss_now += np.clip((self.miss if attempt == 1 else 0.0) - self._miss_now, -step, step)
        self.current = envelope(phase, progress) * self._walk + self._miss_now
        return self.current.copy()


def perturbed_setpoint(expert: ScriptedExpert, perturbation: ExecutionPerturbation, t: float, q_measured,
                       q_time: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(intended, executed) setpoints for time t. The expert is shown the measured joints minus the offset it is
    executing, so its phase ends and its resync judge the arm against its own clean plan."""
    q_clean = np.asarray(q_measured, dtype=float) - perturbation.current
    intended = expert.setpoint(t, q_clean, q_time)
    offset = perturbation.offset(t, expert.phase, expert.phase_progress(t), expert.attempt)
    return intended, intended + offset
