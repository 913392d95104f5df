"""Timed joint trajectories -> setpoints at the command rate. ROS-free.

A :class:`Trajectory` is a piecewise-linear path through waypoints in time (t = 0 is the pose the arm was
commanded to when the trajectory started). The driver samples it at every command tick with :meth:`Trajectory.at`
(elapsed time, not tick count, so timer jitter does not stretch the motion) and streams each sample as a T:102.
Linear interpolation keeps every sample between its two waypoints: it never overshoots a joint limit that the
waypoints respect, which a spline could.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


class TrajectoryError(ValueError):
    """Bad waypoint times or shapes."""


class Trajectory:
    def __init__(self, times: Sequence[float], positions: Sequence[Sequence[float]]):
        t = np.asarray(times, dtype=float)
        q = np.asarray(positions, dtype=float)
        if t.ndim != 1 or q.ndim != 2 or q.shape[0] != t.shape[0] or t.size < 1:
            raise TrajectoryError(f"need N times and N x J positions, got {t.shape} and {q.shape}")
        if not np.all(np.isfinite(t)) or t[0] < 0:
            raise TrajectoryError(f"times must be finite and >= 0, got {t.tolist()}")
        if np.any(np.diff(t) <= 0):
            raise TrajectoryError(f"time_from_start must strictly increase, got {t.tolist()}")
        self.times = t
        self.positions = q

    @classmethod
    def from_start(cls, start: Sequence[float], times: Sequence[float], positions: Sequence[Sequence[float]]) -> "Trajectory":
        """Prepend ``start`` at t = 0 unless the first waypoint is itself at t = 0 (then it replaces start)."""
        t = [float(x) for x in times]
        q = [np.asarray(p, dtype=float) for p in positions]
        if not t:
            raise TrajectoryError("a trajectory needs at least one point")
        if t[0] > 0:
            t = [0.0] + t
            q = [np.asarray(start, dtype=float)] + q
        return cls(t, q)

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    @property
    def goal(self) -> np.ndarray:
        return self.positions[-1].copy()

    def at(self, elapsed: float) -> np.ndarray:
        """Pose at ``elapsed`` seconds (clamped to [0, duration])."""
        if self.times.size == 1:
            return self.positions[0].copy()
        e = min(max(float(elapsed), 0.0), self.duration)
        i = int(np.searchsorted(self.times, e, side="right")) - 1
        i = min(max(i, 0), self.times.size - 2)
        t0, t1 = self.times[i], self.times[i + 1]
        a = (e - t0) / (t1 - t0)
        return self.positions[i] + a * (self.positions[i + 1] - self.positions[i])

    def samples(self, rate: float) -> np.ndarray:
        """Poses at every command tick k / rate up to and including the end (what the driver will send)."""
        if rate <= 0:
            raise TrajectoryError(f"rate must be > 0, got {rate}")
        n = int(math.floor(self.duration * rate + 1e-9))
        ticks = [k / rate for k in range(1, n + 1)]
        if not ticks or ticks[-1] < self.duration:
            ticks.append(self.duration)
        return np.array([self.at(t) for t in ticks])

    def max_step(self, rate: float, start: Sequence[float] | None = None) -> np.ndarray:
        """Largest per-joint change between consecutive samples (from ``start`` or the t = 0 pose)."""
        s = self.samples(rate)
        first = np.asarray(start if start is not None else self.positions[0], dtype=float)
        path = np.vstack([first, s])
        return np.max(np.abs(np.diff(path, axis=0)), axis=0)


def linear_move(start: Sequence[float], goal: Sequence[float], duration: float) -> Trajectory:
    """Straight joint-space move from ``start`` to ``goal`` in ``duration`` seconds (0: a single setpoint)."""
    if duration <= 0:
        return Trajectory([0.0], [goal])
    return Trajectory([0.0, duration], [start, goal])


def min_duration(start: Sequence[float], goal: Sequence[float], max_velocity: float) -> float:
    """Shortest duration that keeps every joint under ``max_velocity`` rad/s."""
    if max_velocity <= 0:
        raise TrajectoryError(f"max_velocity must be > 0, got {max_velocity}")
    distance = float(np.max(np.abs(np.asarray(goal, dtype=float) - np.asarray(start, dtype=float))))
    return distance / max_velocity
