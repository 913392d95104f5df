"""Safety at the serial line: the last check before a T:102 is written. ROS-free; time passed in (steady seconds).

Every joint command the driver writes is compared with the PREVIOUS WRITTEN command. Per joint, the change may be
at most

    allowed = min(velocity_limit * (now - time of the previous write), max_step)

and a larger change is CLAMPED to ``allowed`` (not refused: the arm keeps following the plan, only slower), counted
and reported. Because the elapsed time is the real time between the two writes, the rule holds whatever produced
the command (a spiky trajectory, a point due at t = 0, a late timer, a burst of streamed setpoints).

- No previous write known (start-up, after an unplug, a torque-off or an e-stop): the reference is the arm's
  measured pose and the elapsed time one nominal command period.
- A write reported failed may still have reached the servos (pyserial can raise its write timeout after a complete
  write). Both that pose and the last pose known written are then possible; the next command is clamped into the
  intersection of the two allowed boxes (never empty: it holds the failed pose).
- :meth:`LineGuard.rebase`: a write of the arm's MEASURED pose (hold where it is, torque back on) asks the servos for
  no motion at all; it is never clamped and becomes the new reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Limited:
    """The command to write and which joints were clamped."""

    positions: np.ndarray
    clamped: np.ndarray  # bool per joint
    allowed: np.ndarray  # the per-joint bound that applied (rad)

    @property
    def was_clamped(self) -> bool:
        return bool(np.any(self.clamped))


class LineGuard:
    def __init__(self, velocity_limits: Sequence[float], max_step: float, nominal_period: float):
        self.velocity_limits = np.asarray(velocity_limits, dtype=float)
        if self.velocity_limits.ndim != 1 or np.any(~np.isfinite(self.velocity_limits)) or \
                np.any(self.velocity_limits <= 0):
            raise ValueError(f"velocity limits must be finite and > 0, got {self.velocity_limits.tolist()}")
        if not np.isfinite(max_step):
            raise ValueError(f"max_step must be finite, got {max_step}")
        if not nominal_period > 0:
            raise ValueError(f"nominal_period must be > 0, got {nominal_period}")
        self.max_step = float(max_step)  # <= 0: no per-write step bound (the velocity bound stays)
        self.nominal_period = float(nominal_period)
        self._written: list[tuple[np.ndarray, float]] = []  # poses the servos may hold: (pose, write time)
        self.clamped_writes = 0
        self.clamped_joint_writes = 0
        self.largest_request = 0.0  # rad: largest per-joint change asked of the guard
        self.largest_written = 0.0  # rad: largest per-joint change that went out

    @property
    def reference(self) -> np.ndarray | None:
        """The last pose known written (None: unknown)."""
        return self._written[0][0].copy() if self._written else None

    def reset(self) -> None:
        """Nothing known about what the servos were last told (reconnect, torque off, e-stop)."""
        self._written = []

    def rebase(self, q: Sequence[float], now: float) -> None:
        """``q`` (the measured pose) was written: a command that moves nothing. It is the new reference."""
        self._written = [(np.asarray(q, dtype=float).copy(), float(now))]

    def _allowed(self, dt: float) -> np.ndarray:
        allowed = self.velocity_limits * max(0.0, float(dt))
        if self.max_step > 0:
            allowed = np.minimum(allowed, self.max_step)
        return allowed

    def limit(self, q: Sequence[float], now: float, measured: Sequence[float] | None) -> Limited:
        """Clamp ``q`` for a write at ``now``. ``measured``: the arm's pose, the reference when none is known.
        Nothing is recorded until :meth:`written`."""
        target = np.asarray(q, dtype=float)
        if self._written:
            boxes = [(pose, self._allowed(now - t)) for pose, t in self._written]
        elif measured is not None:
            boxes = [(np.asarray(measured, dtype=float), self._allowed(self.nominal_period))]
        else:
            raise ValueError("no reference for the line guard: neither a previous write nor a measured pose")
        low = np.max([pose - a for pose, a in boxes], axis=0)
        high = np.min([pose + a for pose, a in boxes], axis=0)
        high = np.maximum(high, low)  # the boxes always overlap (see the module docstring); guard rounding
        out = np.clip(target, low, high)
        clamped = np.abs(out - target) > 1e-12
        first = boxes[0][0]
        self.largest_request = max(self.largest_request, float(np.max(np.abs(target - first))))
        return Limited(positions=out, clamped=clamped, allowed=boxes[0][1])

    def written(self, q: Sequence[float], now: float, ok: bool, limited: Limited | None = None) -> None:
        """Record a write: ``ok`` False keeps the last pose known written and adds ``q`` as possible too."""
        pose = np.asarray(q, dtype=float).copy()
        if self._written:
            self.largest_written = max(self.largest_written, float(np.max(np.abs(pose - self._written[0][0]))))
        if limited is not None and limited.was_clamped:
            self.clamped_writes += 1
            self.clamped_joint_writes += int(np.count_nonzero(limited.clamped))
        if ok or not self._written:
            self._written = [(pose, float(now))]
        else:
            self._written = [self._written[0], (pose, float(now))]
