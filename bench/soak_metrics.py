"""bench/soak.py's arithmetic, ROS-free (plain Python, times passed in; unit-tested in
src/roarm_vla_bringup/test/test_soak_metrics.py with hand-worked numbers):

- RssTracker: first and last VmRSS per (process name, pid) -> growth % per pid (a respawn starts a new baseline);
- WriteGapCounter: command ticks missed on the wire, from the times of the driver's T:102 writes as the firmware
  read them (the driver writes one per command tick while a plan runs, so a gap of k periods hides k - 1 ticks;
  a gap of `idle_gap_s` or more is no plan at all, not a missed tick);
- messages_lost: messages a topic is short of after a recovery, against its rate before the fault;
- unexpected_starts: process starts that neither the first start nor an injected kill explain (a crash that the
  runner's respawn hid).
"""

from __future__ import annotations

import math
from pathlib import Path


def rss_kb(pid: int | None) -> int | None:
    """VmRSS of a live process, kB; None when it is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssTracker:
    """First and last RSS per (name, pid); growth is per pid so that a respawned process starts a new baseline."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], int] = {}
        self.last: dict[tuple[str, int], int] = {}

    def record(self, name: str, pid: int, kb: int | None) -> None:
        if kb:
            self.first.setdefault((name, pid), kb)
            self.last[(name, pid)] = kb

    def growth_pct(self) -> dict[str, float]:
        """name -> the largest growth (last / first - 1, in %) over that name's pids."""
        out: dict[str, float] = {}
        for key, first in self.first.items():
            growth = 100.0 * (self.last[key] / first - 1.0)
            out[key[0]] = max(out.get(key[0], -math.inf), growth)
        return {name: round(value, 2) for name, value in out.items()}

    def table(self) -> dict[str, dict[str, float]]:
        """name -> {start_mb, end_mb} of its latest pid (the one still running at the end)."""
        out: dict[str, dict[str, float]] = {}
        for (name, _pid), first in self.first.items():  # insertion order: a later pid replaces an earlier one
            out[name] = {"start_mb": round(first / 1024.0, 1), "end_mb": round(self.last[(name, _pid)] / 1024.0, 1)}
        return out


class WriteGapCounter:
    """Missed command ticks from write times (seconds, any clock), fed in batches that may overlap."""

    def __init__(self, period_s: float, idle_gap_s: float) -> None:
        if period_s <= 0 or idle_gap_s <= period_s:
            raise ValueError(f"need 0 < period_s < idle_gap_s, got {period_s}, {idle_gap_s}")
        self.period = period_s
        self.idle_gap = idle_gap_s
        self.writes = 0
        self.missed = 0
        self.late_gaps = 0
        self.idle_gaps = 0
        self.worst_gap_s = 0.0
        self._last: float | None = None

    def feed(self, times) -> None:
        """Write times in order; those at or before the last one already fed are skipped (overlapping batches)."""
        for t in times:
            if self._last is not None and t <= self._last:
                continue
            self.writes += 1
            if self._last is not None:
                gap = t - self._last
                if gap >= self.idle_gap:
                    self.idle_gaps += 1
                else:
                    self.worst_gap_s = max(self.worst_gap_s, gap)
                    hidden = int(round(gap / self.period)) - 1
                    if hidden > 0:
                        self.missed += hidden
                        self.late_gaps += 1
            self._last = t

    def as_dict(self) -> dict[str, float]:
        return {"writes": self.writes, "missed_ticks": self.missed, "late_gaps": self.late_gaps,
                "idle_gaps": self.idle_gaps, "worst_gap_ms": round(1000.0 * self.worst_gap_s, 1)}


def messages_lost(rate_before_hz: float, window_s: float, received: int) -> int:
    """How many messages a topic is short of over `window_s` after recovery, at its rate before the fault."""
    return max(0, int(math.floor(rate_before_hz * window_s - received)))


def unexpected_starts(starts: int, kills: int) -> int:
    """Starts beyond the first one and one per injected kill: the process died unasked and was respawned."""
    return max(0, starts - 1 - kills)
