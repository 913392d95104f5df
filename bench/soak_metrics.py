"""bench/soak.py's arithmetic, ROS-free (plain Python, times passed in; unit-tested in
src/roarm_vla_bringup/test/test_soak_metrics.py with hand-worked numbers):

- RssTracker: VmRSS samples per (process name, pid) -> growth % per pid, whole run and second half;
- WriteGapCounter: command ticks missed on the wire, from the times of the driver's T:102 writes as the firmware
  read them (the driver writes one per command tick while a plan runs, so a gap of k periods followed by n writes
  read together hides k - n ticks; a gap of `idle_gap_s` or more is no plan at all, not a missed tick);
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
    """RSS samples per (name, pid); growth is per pid so that a respawned process starts a new baseline.

    growth: last / first sample - 1. late growth: last / the first sample at or after the middle of the pid's
    sampled time - 1 (memory that saturates early shows growth but little late growth; a leak shows both).
    rebase(name): the next sample of that name's current pid becomes its baseline (a respawned process is sampled
    while it still loads its model; its baseline is taken once it runs).
    """

    def __init__(self) -> None:
        self.samples: dict[tuple[str, int], list[tuple[float, int]]] = {}
        self._rebase: set[str] = set()

    def record(self, name: str, pid: int, kb: int | None, t: float) -> None:
        if not kb:
            return
        key = (name, pid)
        if name in self._rebase:
            self._rebase.discard(name)
            self.samples[key] = []
        self.samples.setdefault(key, []).append((t, kb))

    def rebase(self, name: str) -> None:
        self._rebase.add(name)

    @staticmethod
    def _late_first(samples: list[tuple[float, int]]) -> int:
        middle = (samples[0][0] + samples[-1][0]) / 2.0
        return next(kb for t, kb in samples if t >= middle)

    def growth_pct(self, late: bool = False) -> dict[str, float]:
        """name -> the largest growth in % over that name's pids (late=True: over the second half)."""
        out: dict[str, float] = {}
        for (name, _pid), samples in self.samples.items():
            if not samples:
                continue
            first = self._late_first(samples) if late else samples[0][1]
            growth = 100.0 * (samples[-1][1] / first - 1.0)
            out[name] = max(out.get(name, -math.inf), growth)
        return {name: round(value, 2) for name, value in out.items()}

    def table(self) -> dict[str, dict[str, float]]:
        """name -> {start_mb, end_mb} of its latest pid (the one still running at the end)."""
        out: dict[str, dict[str, float]] = {}
        for (name, _pid), samples in self.samples.items():  # insertion order: a later pid replaces an earlier one
            if samples:
                out[name] = {"start_mb": round(samples[0][1] / 1024.0, 1),
                             "end_mb": round(samples[-1][1] / 1024.0, 1)}
        return out

    def latest_mb(self, name: str) -> float | None:
        keys = [key for key in self.samples if key[0] == name and self.samples[key]]
        return round(self.samples[keys[-1]][-1][1] / 1024.0, 1) if keys else None


class WriteGapCounter:
    """Missed command ticks from write times (seconds, any clock), fed in batches that may overlap.

    The firmware stamps every line it reads in one pass of its loop with the same time, so writes that waited in
    the pty arrive as a group with one time: a gap of k periods followed by a group of n writes hides k - n ticks
    (the driver was on time, the reader was late, when n = k).
    """

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
        self._count_at_last = 0  # writes seen at the last time (a group may span two batches)
        self._hidden_at_last = 0  # ticks counted missed in the gap before that group

    def feed(self, times) -> None:
        """Write times in order; what an earlier batch already held is not counted again."""
        times = list(times)
        if self._last is not None:
            extra = sum(1 for t in times if t == self._last) - self._count_at_last
            if extra > 0:  # more of the last group than the previous batch held
                self.writes += extra
                self._count_at_last += extra
                undo = min(extra, self._hidden_at_last)
                self.missed -= undo
                self._hidden_at_last -= undo
                if undo and self._hidden_at_last == 0:
                    self.late_gaps -= 1
            times = [t for t in times if t > self._last]
        i = 0
        while i < len(times):
            t = times[i]
            n = 1
            while i + n < len(times) and times[i + n] == t:
                n += 1
            i += n
            self.writes += n
            hidden = 0
            if self._last is not None:
                gap = t - self._last
                if gap >= self.idle_gap:
                    self.idle_gaps += 1
                else:
                    self.worst_gap_s = max(self.worst_gap_s, gap)
                    hidden = max(0, int(round(gap / self.period)) - n)
                    if hidden:
                        self.missed += hidden
                        self.late_gaps += 1
            self._last, self._count_at_last, self._hidden_at_last = t, n, hidden

    def as_dict(self) -> dict[str, float]:
        return {"writes": self.writes, "missed_ticks": self.missed, "late_gaps": self.late_gaps,
                "idle_gaps": self.idle_gaps, "worst_gap_ms": round(1000.0 * self.worst_gap_s, 1)}


def messages_lost(rate_before_hz: float, window_s: float, received: int) -> int:
    """How many messages a topic is short of over `window_s` after recovery, at its rate before the fault."""
    return max(0, int(math.floor(rate_before_hz * window_s - received)))


def unexpected_starts(starts: int, kills: int) -> int:
    """Starts beyond the first one and one per injected kill: the process died unasked and was respawned."""
    return max(0, starts - 1 - kills)
