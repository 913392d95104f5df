"""Episode outcome: SUCCESS when the box is held above a height with the gripper closed on it for a moment,
TIMEOUT when the time limit passes first. Terminal outcomes latch until the next reset.

ROS-free. Status codes equal roarm_interfaces/msg/EpisodeOutcome's constants.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNNING, SUCCESS, TIMEOUT = 0, 1, 2
STATUS_NAMES = {RUNNING: "RUNNING", SUCCESS: "SUCCESS", TIMEOUT: "TIMEOUT"}


@dataclass(frozen=True)
class OutcomeRules:
    lift_height: float = 0.05  # box bottom this far above the table top, m
    hold_time: float = 0.3  # ... continuously, with the box grasped, for this long, s
    time_limit: float = 30.0  # episode fails with TIMEOUT after this many seconds, s

    def __post_init__(self):
        if self.lift_height <= 0 or self.hold_time < 0 or self.time_limit <= 0:
            raise ValueError(f"bad outcome rules {self}: lift_height and time_limit must be > 0, hold_time >= 0")


@dataclass
class OutcomeState:
    status: int = RUNNING
    elapsed: float = 0.0
    detail: str = "episode running"


class OutcomeJudge:
    """Feed it (elapsed seconds, box bottom height, grasped) each step; read .state."""

    def __init__(self, rules: OutcomeRules = OutcomeRules()):
        self.rules = rules
        self.state = OutcomeState()
        self._held_since: float | None = None

    def reset(self) -> None:
        self.state = OutcomeState()
        self._held_since = None

    @property
    def done(self) -> bool:
        return self.state.status != RUNNING

    def update(self, elapsed: float, box_height: float, grasped: bool) -> OutcomeState:
        if self.done:
            return self.state
        self.state.elapsed = elapsed
        lifted = grasped and box_height >= self.rules.lift_height
        if lifted:
            if self._held_since is None:
                self._held_since = elapsed
            if elapsed - self._held_since >= self.rules.hold_time:
                self.state.status = SUCCESS
                self.state.detail = (f"box held {box_height * 100:.1f} cm above the table (>= "
                                     f"{self.rules.lift_height * 100:.1f} cm) for {self.rules.hold_time:.1f} s "
                                     f"after {elapsed:.1f} s")
                return self.state
        else:
            self._held_since = None
        if elapsed >= self.rules.time_limit:
            self.state.status = TIMEOUT
            self.state.detail = (f"time limit {self.rules.time_limit:.1f} s reached; box "
                                 f"{'grasped' if grasped else 'not grasped'}, "
                                 f"{box_height * 100:.1f} cm above the table")
        else:
            self.state.detail = (f"running: box {'grasped' if grasped else 'not grasped'}, "
                                 f"{box_height * 100:.1f} cm above the table")
        return self.state
