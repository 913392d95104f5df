"""The plan the driver executes: merged chunk steps -> EMA-smoothed, step-limited, clamped joint positions.

ROS-free; steady times passed in (see :mod:`timebase`). The node publishes each plan as ONE multi-point
trajectory_msgs/JointTrajectory (header stamp = :attr:`Plan.start` in ROS time, point ``k`` at ``k * dt``); the
driver executes it at its own rate and replaces the unexecuted part of the running plan from the new start time.

Smoothing runs along the plan's steps: ``y_k = y_(k-1) + clip(alpha * (x_k - y_(k-1)), +-max_joint_step)``,
then clamped to the joint limits. Its seed ``y_(-1)`` (EMA seeding) is

- the previous plan's value at the step before the new plan starts, while that plan still runs there (the new
  plan continues the old one without a seam), or
- the **measured** joint state when no plan runs there (first plan, the plan ran out, after a hold): the arm holds
  where it is, possibly moved by someone else meanwhile (an episode reset, a move_joints goal), so the first step
  is small for the driver too.

A plan starts at the first step not before ``now`` (a step already begun is being executed by the driver from
the previous plan); it needs two points or more (one point would be a streamed setpoint for the driver).
:meth:`CommandPlanner.hold` gives the pose to hold when the plan must stop (pause, stale input, task change,
deactivate): where the running plan is now (None when it has already run out); the next plan then seeds from the
measured pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class SmoothingConfig:
    ema_alpha: float = 1.0  # 1 = no smoothing
    max_joint_step: float = math.inf  # per step, per joint (rad)
    lower_limits: np.ndarray | None = None
    upper_limits: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ValueError(f"ema_alpha must be in (0, 1], got {self.ema_alpha}")
        if not self.max_joint_step > 0:
            raise ValueError(f"max_joint_step must be > 0 (inf = no limit), got {self.max_joint_step}")


def smooth(targets: np.ndarray, seed: np.ndarray | None, config: SmoothingConfig) -> np.ndarray:
    """[K, J] targets -> [K, J] commands (EMA from ``seed``, step limit, joint limits). No seed: y_0 = x_0."""
    targets = np.asarray(targets, dtype=float)
    out = np.empty_like(targets)
    y = None if seed is None else np.asarray(seed, dtype=float)
    for k, x in enumerate(targets):
        if y is None:
            y = x.copy()
        else:
            y = y + np.clip(config.ema_alpha * (x - y), -config.max_joint_step, config.max_joint_step)
        if config.lower_limits is not None and config.upper_limits is not None:
            y = np.clip(y, config.lower_limits, config.upper_limits)
        out[k] = y
    return out


@dataclass(frozen=True)
class Plan:
    start: float  # steady time of point 0
    step_period: float
    points: np.ndarray  # [K, J]

    @property
    def times(self) -> np.ndarray:
        return self.start + self.step_period * np.arange(len(self.points))

    @property
    def end(self) -> float:
        """Steady time of the last point (the driver holds it afterwards)."""
        return self.start + self.step_period * (len(self.points) - 1)

    def sample(self, t: float) -> np.ndarray:
        """Linear interpolation between points (as the driver executes it), held at both ends."""
        times = self.times
        return np.array([np.interp(t, times, self.points[:, j]) for j in range(self.points.shape[1])])


@dataclass
class PlannerCounters:
    plans: int = 0
    holds: int = 0
    too_short: int = 0  # merged plans with fewer than 2 steps ahead: not sent
    seeded_from_measured: int = 0


class CommandPlanner:
    """Builds plans from the scheduler's merged steps; remembers the last plan sent. See the module docstring."""

    def __init__(self, step_period: float, config: SmoothingConfig) -> None:
        if not step_period > 0:
            raise ValueError(f"step_period must be > 0, got {step_period}")
        self.step_period = float(step_period)
        self.config = config
        self.last: Plan | None = None
        self.counters = PlannerCounters()

    def seed_for(self, start: float, measured: Sequence[float] | None) -> np.ndarray | None:
        previous_step = start - self.step_period
        if self.last is not None and previous_step <= self.last.end + 1e-9:
            return self.last.sample(previous_step)
        self.counters.seeded_from_measured += 1
        return None if measured is None else np.asarray(measured, dtype=float).copy()

    def build(self, planned: Sequence[tuple[float, np.ndarray]], now: float,
              measured: Sequence[float] | None) -> Plan | None:
        """The plan for the merged steps ``planned`` ((steady time, action) in time order) at ``now``; None (and
        nothing remembered) when fewer than two steps lie ahead."""
        ahead = [(t, np.asarray(x, dtype=float)) for t, x in planned if t >= now - 1e-9]
        if len(ahead) < 2:
            self.counters.too_short += 1
            return None
        start = ahead[0][0]
        seed = self.seed_for(start, measured)
        points = smooth(np.stack([x for _, x in ahead]), seed, self.config)
        plan = Plan(start=float(start), step_period=self.step_period, points=points)
        self.last = plan
        self.counters.plans += 1
        return plan

    def hold(self, now: float) -> np.ndarray | None:
        """The pose to hold from ``now`` when the plan must stop: where the running plan is now; None when no plan
        runs any more (the driver already holds its last point, and the arm may since have been moved by someone
        else: a hold would fight that). Forgets the plan either way, so the next plan seeds from the measured pose."""
        running = self.last is not None and now <= self.last.end + 1e-9
        pose = self.last.sample(now) if running else None
        self.last = None
        self.counters.holds += int(running)
        return pose
