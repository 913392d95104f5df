"""Timed plans executed on the driver's own steady clock. ROS-free; every time is passed in (seconds, steady).

Clock convention (the whole driver): scheduling runs on a steady clock (``time.monotonic()`` in the node); message
stamps are ROS time (sim-time aware). A trajectory's header stamp is turned into steady time ONCE, at receipt:
``start_steady = receipt_steady - (ros_now - stamp)``; a zero stamp means "start now" (``start_steady = receipt``).

The replacement rule is ros2_control joint_trajectory_controller's: a new trajectory replaces the part of the
running plan that has not been executed yet, from the new trajectory's start time on. In detail, with
``t_a = max(start, now)`` (the anchor):

- the running plan is kept for ``t < t_a`` (a start in the future lets the old plan run until then);
- points of the new trajectory whose time lies before ``t_a`` are in the past: skipped (counted);
- from ``t_a`` the plan goes in a straight line from where the plan is at ``t_a`` (the old plan's sample, or the
  last commanded pose when nothing ran) to the first point still ahead, then through the remaining points; a point
  due exactly at ``t_a`` (``time_from_start`` 0 with a zero stamp) is the anchor itself (a jump the line guard
  limits: see :mod:`roarm_driver.line_guard`);
- a trajectory whose every point lies in the past is refused (:class:`TrajectoryError`), as the controller does;
- when the plan runs out its last point is held; every command tick spent holding the end of a plan is counted in
  ``plan_exhausted_ticks`` (the policy's plan ran dry: its benchmark reads this).

Interpolation is linear between knots: a sample never leaves the segment between two waypoints, so it cannot
overshoot a joint limit the waypoints respect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from roarm_driver.trajectory import TrajectoryError

__all__ = ["TrajectoryExecutor", "Replacement", "TrajectoryError", "ros_stamp_to_steady"]


def ros_stamp_to_steady(stamp_ros: float, ros_now: float, steady_now: float) -> float:
    """Steady time of a ROS-time stamp, with the ROS -> steady offset taken now (at receipt). 0 stamp = now."""
    if stamp_ros == 0.0:
        return steady_now
    return steady_now - (ros_now - stamp_ros)


@dataclass(frozen=True)
class Replacement:
    """What :meth:`TrajectoryExecutor.replace` did."""

    anchor_time: float  # steady time from which the new trajectory rules
    skipped: int  # points of the new trajectory that were already in the past
    kept_old: int  # knots of the running plan kept (they run before anchor_time)
    end_time: float  # steady time of the plan's last point


class TrajectoryExecutor:
    """Holds the plan (steady-time knots) and samples it at command ticks."""

    def __init__(self) -> None:
        self._times: np.ndarray | None = None  # [K] steady seconds, strictly increasing
        self._positions: np.ndarray | None = None  # [K, J]
        self.counts_exhaustion = False  # topic trajectories count their exhausted ticks; moves and setpoints do not
        self.plan_exhausted_ticks = 0
        self.points_skipped = 0
        self.trajectories = 0

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        return self._times is not None

    @property
    def end_time(self) -> float | None:
        return None if self._times is None else float(self._times[-1])

    @property
    def goal(self) -> np.ndarray | None:
        return None if self._positions is None else self._positions[-1].copy()

    @property
    def knots(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(times, positions) copies of the plan (tests, diagnostics)."""
        if self._times is None:
            return None
        return self._times.copy(), self._positions.copy()

    def exhausted(self, now: float) -> bool:
        return self._times is not None and now > self._times[-1]

    # ------------------------------------------------------------------ plans
    def clear(self) -> None:
        self._times = self._positions = None
        self.counts_exhaustion = False

    def hold(self, q: Sequence[float], now: float) -> None:
        """A constant plan (a streamed setpoint, or a pose to hold): one knot, never counted as exhausted."""
        self._times = np.array([float(now)])
        self._positions = np.asarray(q, dtype=float).reshape(1, -1).copy()
        self.counts_exhaustion = False

    def start_plan(self, times: Sequence[float], positions: Sequence[Sequence[float]],
                   counts_exhaustion: bool = False) -> None:
        """A plan given in steady time (a move planned by the driver itself)."""
        t = np.asarray(times, dtype=float)
        q = np.asarray(positions, dtype=float)
        _check_knots(t, q)
        self._times, self._positions = t.copy(), q.copy()
        self.counts_exhaustion = counts_exhaustion

    def replace(self, start: float, times_from_start: Sequence[float], positions: Sequence[Sequence[float]],
                now: float, current: Sequence[float]) -> Replacement:
        """Merge a new trajectory (``start`` steady, points at ``start + times_from_start``) into the plan by the
        replacement rule of the module docstring. ``current``: the last commanded pose, used as the anchor when no
        plan runs. Raises TrajectoryError (bad times/shapes, or every point in the past) and changes nothing then."""
        tfs = np.asarray(times_from_start, dtype=float)
        q = np.asarray(positions, dtype=float)
        if tfs.ndim != 1 or tfs.size < 1 or q.ndim != 2 or q.shape[0] != tfs.size:
            raise TrajectoryError(f"need N times and N x J positions, got {tfs.shape} and {q.shape}")
        if not np.all(np.isfinite(tfs)) or tfs[0] < 0:
            raise TrajectoryError(f"time_from_start must be finite and >= 0, got {tfs.tolist()}")
        if np.any(np.diff(tfs) <= 0):
            raise TrajectoryError(f"time_from_start must strictly increase, got {tfs.tolist()}")
        absolute = float(start) + tfs
        anchor_time = max(float(start), float(now))
        ahead = absolute >= anchor_time
        if not np.any(ahead):
            raise TrajectoryError(
                f"every point lies in the past: the trajectory ended {anchor_time - absolute[-1]:.3f} s ago")
        skipped = int(np.count_nonzero(~ahead))
        if self._times is not None:
            anchor = self.sample(anchor_time)
            keep = self._times < anchor_time
            old_t, old_q = self._times[keep], self._positions[keep]
        else:
            anchor = np.asarray(current, dtype=float).copy()
            old_t = np.array([float(now)]) if anchor_time > now else np.empty(0)  # hold here until the start
            old_q = anchor.reshape(1, -1) if anchor_time > now else np.empty((0, anchor.size))
        new_t, new_q = absolute[ahead], q[ahead]
        if new_t[0] > anchor_time:
            new_t = np.concatenate([[anchor_time], new_t])
            new_q = np.vstack([anchor, new_q])
        times = np.concatenate([old_t, new_t])
        poses = np.vstack([old_q.reshape(-1, new_q.shape[1]), new_q])
        _check_knots(times, poses)
        self._times, self._positions = times, poses
        self.counts_exhaustion = True
        self.points_skipped += skipped
        self.trajectories += 1
        return Replacement(anchor_time=anchor_time, skipped=skipped, kept_old=int(old_t.size),
                           end_time=float(times[-1]))

    # ------------------------------------------------------------------ sampling
    def sample(self, now: float) -> np.ndarray | None:
        """The plan's pose at steady time ``now`` (first knot before the plan, last knot after it)."""
        if self._times is None:
            return None
        t, q = self._times, self._positions
        if now <= t[0] or t.size == 1:
            return q[0].copy()
        if now >= t[-1]:
            return q[-1].copy()
        i = int(np.searchsorted(t, now, side="right")) - 1
        a = (now - t[i]) / (t[i + 1] - t[i])
        return q[i] + a * (q[i + 1] - q[i])

    def tick(self, now: float) -> np.ndarray | None:
        """Sample for a command tick; a tick past the end of a counted plan is an exhausted tick."""
        q = self.sample(now)
        if q is not None and self.counts_exhaustion and now > self._times[-1]:
            self.plan_exhausted_ticks += 1
        return q


def _check_knots(t: np.ndarray, q: np.ndarray) -> None:
    if t.ndim != 1 or q.ndim != 2 or q.shape[0] != t.size or t.size < 1:
        raise TrajectoryError(f"need K times and K x J positions, got {t.shape} and {q.shape}")
    if np.any(np.diff(t) <= 0):
        raise TrajectoryError(f"plan times must strictly increase, got {t.tolist()}")
