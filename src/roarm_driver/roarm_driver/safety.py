"""Command safety for the arm driver: what holds whatever a caller sends. ROS-free, time passed in.

Rules, applied in this order to every joint command (URDF radians):
1. names: unknown or duplicated joint names are rejected with the list of the arm's joints; a subset of the
   joints is allowed (the others keep the reference pose); names and values must have the same length;
2. NaN / inf anywhere -> rejected;
3. joint limits (``joints.LOWER_LIMITS`` .. ``UPPER_LIMITS``): ``clamp`` (the command is clamped and a warning
   says which joints) or ``reject``;
4. maximum step per command: no joint may move more than ``max_step`` rad away from the reference (the last
   commanded pose) in one command: ``reject`` or ``clamp`` (the step is cut to ``max_step`` per joint). The node
   may retry a refused step against other references (the measured pose; see ArmDriverNode._check_setpoint).

:class:`CommandWatchdog` is the "no fresh command within a timeout -> hold" timer; :class:`EStopLatch` is the
latching e-stop state (only an explicit reset clears it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from roarm_description import joints

LIMIT_MODES = ("clamp", "reject")
STEP_MODES = ("clamp", "reject")


class CommandRejected(ValueError):
    """A command that breaks a safety rule; the message says which rule and which joints."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"{rule}: {message}")
        self.rule = rule


@dataclass(frozen=True)
class SafetyConfig:
    limit_mode: str = "clamp"  # what to do with a joint outside its URDF limits: clamp | reject
    max_step: float = 0.35  # rad: the most any joint may move per command (<= 0 disables the rule)
    step_mode: str = "reject"  # what to do with a larger step: reject | clamp

    def __post_init__(self) -> None:
        if self.limit_mode not in LIMIT_MODES:
            raise ValueError(f"limit_mode must be one of {LIMIT_MODES}, got {self.limit_mode!r}")
        if self.step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be one of {STEP_MODES}, got {self.step_mode!r}")
        if not math.isfinite(self.max_step):
            raise ValueError(f"max_step must be finite, got {self.max_step}")


@dataclass
class Checked:
    """A command that passed: the positions to send (full joint vector) and the warnings to log."""

    positions: np.ndarray
    warnings: list[str] = field(default_factory=list)


def merge_named(names: Sequence[str], values: Sequence[float], base: Sequence[float] | None) -> np.ndarray:
    """Named values over a full base pose, in joints.JOINT_NAMES order. Rejects unknown/duplicate names; with
    ``base`` None every joint must be named."""
    names = list(names)
    values = list(values)
    if len(names) != len(values):
        raise CommandRejected("names", f"{len(names)} joint names but {len(values)} positions")
    if not names:
        raise CommandRejected("names", "no joint names in the command")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CommandRejected("names", f"duplicated joint name(s) {duplicates}")
    full = {} if base is None else dict(zip(joints.JOINT_NAMES, np.asarray(base, dtype=float)))
    full.update(zip(names, values))
    try:
        return joints.order_by_names(full.keys(), full.values())
    except ValueError as exc:  # unknown names: joints.py's message lists the arm's joints
        raise CommandRejected("names", str(exc)) from None


def check_finite(q: Sequence[float]) -> None:
    arr = np.asarray(q, dtype=float)
    bad = [f"{n}={v}" for n, v in zip(joints.JOINT_NAMES, arr) if not math.isfinite(v)]
    if bad:
        raise CommandRejected("nan", f"non-finite position(s) {bad}")


def apply_limits(q: np.ndarray, mode: str) -> tuple[np.ndarray, list[str]]:
    violations = joints.limit_violations(q)
    if not violations:
        return q, []
    if mode == "reject":
        raise CommandRejected("limits", "; ".join(violations))
    return joints.clamp_to_limits(q), ["clamped to joint limits: " + "; ".join(violations)]


def apply_max_step(q: np.ndarray, reference: np.ndarray | None, max_step: float, mode: str) -> tuple[np.ndarray, list[str]]:
    if reference is None or max_step <= 0:
        return q, []
    step = q - reference
    too_far = np.abs(step) > max_step + 1e-9
    if not np.any(too_far):
        return q, []
    detail = "; ".join(
        f"{n} {step[i]:+.3f}" for i, n in enumerate(joints.JOINT_NAMES) if too_far[i]
    )
    if mode == "reject":
        raise CommandRejected("max_step", f"step larger than {max_step:.3f} rad: {detail}")
    return reference + np.clip(step, -max_step, max_step), [f"step cut to {max_step:.3f} rad: {detail}"]


def check_command(
    names: Sequence[str],
    values: Sequence[float],
    reference: Sequence[float] | None,
    config: SafetyConfig,
    base: Sequence[float] | None = None,
) -> Checked:
    """Apply every rule. ``reference``: last commanded pose (None: no step rule yet). ``base``: pose that fills
    joints not named (defaults to ``reference``; required when only some joints are named)."""
    ref = None if reference is None else np.asarray(reference, dtype=float)
    fill = base if base is not None else ref
    q = merge_named(names, values, fill)
    check_finite(q)
    q, warn_limits = apply_limits(q, config.limit_mode)
    q, warn_step = apply_max_step(q, ref, config.max_step, config.step_mode)
    return Checked(positions=q, warnings=warn_limits + warn_step)


def check_pose(q: Sequence[float], config: SafetyConfig) -> Checked:
    """Rules 2-3 for a full pose in JOINT_NAMES order (trajectory waypoints: their steps are checked per sample)."""
    arr = np.asarray(q, dtype=float)
    if arr.shape != (joints.NUM_JOINTS,):
        raise CommandRejected("names", f"expected {joints.NUM_JOINTS} positions, got {arr.shape}")
    check_finite(arr)
    arr, warnings = apply_limits(arr, config.limit_mode)
    return Checked(arr, warnings)


class CommandWatchdog:
    """Trips once when no command was fed for ``timeout`` seconds while armed. Pure: callers pass the time."""

    def __init__(self, timeout: float):
        self.timeout = float(timeout)
        self._last: float | None = None
        self.trips = 0

    @property
    def armed(self) -> bool:
        return self._last is not None

    def feed(self, now: float) -> None:
        self._last = now

    def disarm(self) -> None:
        """Stop watching (no stream in progress: trajectories, actions and idle do not need fresh commands)."""
        self._last = None

    def check(self, now: float) -> bool:
        """True exactly once per silence longer than the timeout (then disarmed until the next feed)."""
        if self.timeout <= 0 or self._last is None:
            return False
        if now - self._last > self.timeout:
            self._last = None
            self.trips += 1
            return True
        return False


class EStopLatch:
    """Latching e-stop: :meth:`trigger` latches, only :meth:`reset` clears. Records why and when."""

    def __init__(self) -> None:
        self.latched = False
        self.reason = ""
        self.count = 0

    def trigger(self, reason: str) -> bool:
        """Latch; returns True when it was not latched before."""
        was = self.latched
        self.latched = True
        self.reason = reason
        self.count += 1
        return not was

    def reset(self) -> bool:
        was = self.latched
        self.latched = False
        self.reason = ""
        return was
