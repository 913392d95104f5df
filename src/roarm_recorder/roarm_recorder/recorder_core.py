"""Episode bookkeeping without ROS: per-topic activity, when an episode ends, what the sim outcome says.

The node passes times in (seconds on any monotonic clock), so the rules are unit-tested with hand-worked numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class TopicActivity:
    """Messages per topic since the episode started and when the last one came."""

    topics: Sequence[str]
    started: float
    counts: dict[str, int] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {t: 0 for t in self.topics}

    def seen(self, topic: str, now: float) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.last[topic] = now

    def silent_for(self, now: float) -> list[float]:
        """Seconds since each topic's last message; -1 for a topic that has sent nothing yet."""
        return [now - self.last[t] if t in self.last else -1.0 for t in self.topics]

    def silent_topics(self, now: float, timeout: float) -> list[str]:
        """Topics quiet for longer than ``timeout``: silent since their last message, or never heard once the
        episode is older than ``timeout``."""
        out = []
        for topic, silence in zip(self.topics, self.silent_for(now)):
            quiet = silence if silence >= 0 else now - self.started
            if quiet > timeout:
                out.append(topic)
        return out


@dataclass
class OutcomeTracker:
    """Follows sim/episode_outcome for ONE recording: the sim episode that RUNS during it decides its outcome.

    An outcome message that was already final when recording started (the previous sim episode's SUCCESS, latched)
    neither ends nor labels this recording: only an episode index first seen RUNNING after the start counts.
    """

    RUNNING, SUCCESS, TIMEOUT = 0, 1, 2
    episode_index: int | None = None
    seed: int | None = None
    outcome: str = "unknown"
    finished: bool = False

    def update(self, episode_index: int, seed: int, status: int) -> None:
        if self.finished:
            return
        if status == self.RUNNING:
            if self.episode_index is None:
                self.episode_index, self.seed = int(episode_index), int(seed)
            return
        if self.episode_index is not None and int(episode_index) == self.episode_index:
            self.outcome = "success" if status == self.SUCCESS else "timeout"
            self.finished = True


def end_reason(*, elapsed: float, max_duration: float, stop_request: bool | None, cancelled: bool,
               error: str, outcome_finished: bool, stop_on_outcome: bool, outcome: str = "unknown",
               keep_failed: bool = True) -> tuple[str, bool] | None:
    """(reason, keep) when the episode must end now, else None. First match wins, in this order:
    a write error (nothing more can be stored: keep what is there, marked by the reason), a cancel (discard),
    an operator's stop (keep or discard as asked), the sim outcome (keep a success; a failure only with
    keep_failed), the time limit (keep)."""
    if error:
        return "error", True
    if cancelled:
        return "cancelled", False
    if stop_request is not None:
        return ("stopped", True) if stop_request else ("discarded", False)
    if stop_on_outcome and outcome_finished:
        return "outcome", outcome == "success" or keep_failed
    if elapsed >= max_duration:
        return "max_duration", True
    return None
