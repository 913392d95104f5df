"""Leader -> follower setpoints without ROS: what teleop_relay streams on each tick.

The follower's driver refuses a setpoint more than its ``max_step`` away from where the arm is or was last sent
(roarm_driver.safety). A leader can be anywhere when teleoperation starts and can be moved faster than one step per
tick, so the relay never jumps: its setpoint starts at the follower's MEASURED pose and moves toward the leader by at
most ``max_step`` per joint per tick. Once caught up it tracks the leader exactly (plus the per-joint offsets that
calibrate one arm against the other). A leader silent for ``leader_timeout`` stops the stream (the follower's
watchdog then holds the arm); the next stream starts again from the follower's measured pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class RelayConfig:
    max_step: float = 0.1  # rad per tick per joint (below the driver's max_step)
    leader_timeout: float = 0.25  # s without a leader message before the stream stops
    offsets: Sequence[float] | None = None  # rad added to the leader's joints (follower = leader + offset)
    lower: Sequence[float] | None = None  # follower joint limits, rad (setpoints are clamped into them)
    upper: Sequence[float] | None = None


class FollowerStream:
    def __init__(self, config: RelayConfig):
        self.config = config
        self.setpoint: np.ndarray | None = None
        self._leader: np.ndarray | None = None
        self._leader_time: float | None = None
        self._follower: np.ndarray | None = None

    def leader(self, positions: Sequence[float], now: float) -> None:
        q = np.asarray(positions, dtype=float)
        if self.config.offsets is not None:
            q = q + np.asarray(self.config.offsets, dtype=float)
        if self.config.lower is not None and self.config.upper is not None:
            q = np.clip(q, self.config.lower, self.config.upper)
        self._leader, self._leader_time = q, now

    def follower(self, positions: Sequence[float]) -> None:
        self._follower = np.asarray(positions, dtype=float)

    def tick(self, now: float) -> np.ndarray | None:
        """The setpoint to send now, or None (no leader yet / leader silent / follower pose unknown)."""
        if self._leader is None or self._leader_time is None or now - self._leader_time > self.config.leader_timeout:
            self.setpoint = None  # restart from the measured pose when the leader comes back
            return None
        if self.setpoint is None:
            if self._follower is None:
                return None
            self.setpoint = self._follower.copy()
        step = np.clip(self._leader - self.setpoint, -self.config.max_step, self.config.max_step)
        self.setpoint = self.setpoint + step
        return self.setpoint.copy()

    @property
    def caught_up(self) -> bool:
        return self.setpoint is not None and self._leader is not None and bool(
            np.allclose(self.setpoint, self._leader, atol=1e-9))
