"""Alignment of asynchronous message streams on a fixed frame-rate grid (ROS-free, written once).

Each stream is a sequence of times in nanoseconds, in the order the messages were received, on the stream's
declared timeline: its header stamp (when the data was taken) or its receive time (when the recorder got it).
Frames lie on a grid ``t_k = t_0 + k / fps``. A frame at time t takes, per stream, the message with the latest
time at or before ``t + offset`` (``offset`` is 0 for observations, so nothing from the future leaks in; a
"next state" action samples the joint states one frame later on purpose). When that message is older than the
stream's tolerance the frame is dropped and counted against the stream.

The grid starts when every stream has a sample (no frame before the last stream's first message) and ends at the
earliest last message, so no frame is built from a stream that already stopped.

Stamps that go backwards (a message's time earlier than its predecessor's) are counted and reported; the lookup
uses the time order, so a small backward jitter is harmless. A backward jump larger than the stream's tolerance
means the clock was reset or the stamps are not what the stream declared: ``NonMonotonicStampsError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

TIMELINES = ("header", "receive")
NS = 1_000_000_000


class AlignmentError(ValueError):
    """Streams that cannot be aligned (no samples, no overlap, bad parameters)."""


class NonMonotonicStampsError(AlignmentError):
    """A stream's time jumps backwards by more than its tolerance."""


@dataclass(frozen=True)
class Stream:
    """One input of the alignment.

    ``times_ns``: per message, in receive order, on ``timeline``. ``tolerance_ns``: the oldest a message may be
    at the frame time. ``offset_frames``: sample the stream at ``t + offset_frames / fps`` (1 = next-state
    action). ``receive_ns``: the receive times when the timeline is the header (for the latency figure).
    """

    name: str
    times_ns: np.ndarray
    timeline: str
    tolerance_ns: int
    offset_frames: int = 0
    receive_ns: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.timeline not in TIMELINES:
            raise AlignmentError(f"stream {self.name!r}: timeline must be one of {TIMELINES}, got {self.timeline!r}")
        if self.tolerance_ns < 0:
            raise AlignmentError(f"stream {self.name!r}: tolerance must be >= 0, got {self.tolerance_ns} ns")
        if self.offset_frames < 0:
            raise AlignmentError(f"stream {self.name!r}: offset_frames must be >= 0 (no lookup into the past)")


@dataclass
class StreamReport:
    """Figures of one stream over one episode (seconds, Hz)."""

    name: str
    timeline: str
    messages: int
    rate_hz: float
    median_period_s: float
    max_gap_s: float
    gaps: int  # intervals between consecutive (time-ordered) messages longer than twice the median interval
    backwards_steps: int  # messages whose time is earlier than the previous message's
    largest_backwards_s: float
    dropped_frames: int  # grid frames dropped because this stream's latest message was too old
    tolerance_s: float
    median_latency_s: float | None = None  # receive - header, when the timeline is the header

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class Alignment:
    """The result: kept frames, the message chosen per stream for each, and the figures."""

    fps: float
    start_ns: int
    grid_frames: int  # frames on the grid between start and end
    frame_times_ns: np.ndarray  # grid times of the kept frames
    grid_index: np.ndarray  # position of each kept frame on the grid
    indices: dict[str, np.ndarray]  # per stream: index (receive order) of the message chosen for each kept frame
    streams: dict[str, StreamReport] = field(default_factory=dict)

    @property
    def kept_frames(self) -> int:
        return int(self.frame_times_ns.size)

    @property
    def dropped_frames(self) -> int:
        return self.grid_frames - self.kept_frames

    def report(self) -> dict:
        return {
            "fps": self.fps,
            "grid_frames": self.grid_frames,
            "kept_frames": self.kept_frames,
            "dropped_frames": self.dropped_frames,
            "duration_s": round(self.grid_frames / self.fps, 6),
            # a dataset row maps back to bag time: row k is the k-th grid frame not dropped, at grid_time(start, j)
            "start_ns": int(self.start_ns),
            "dropped_grid_frames": sorted(set(range(self.grid_frames)) - set(self.grid_index.tolist())),
            "streams": {name: r.as_dict() for name, r in self.streams.items()},
        }


def grid_time(start_ns: int, k: np.ndarray | int, fps: float) -> np.ndarray:
    """t_k = start + k / fps in integer nanoseconds (rounded, no accumulated error)."""
    return start_ns + np.round(np.asarray(k, dtype=np.float64) * (NS / fps)).astype(np.int64)


def _stream_figures(stream: Stream) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(time-sorted times, order, backward steps, largest backward step ns)."""
    times = np.asarray(stream.times_ns, dtype=np.int64)
    steps = np.diff(times)
    backwards = steps[steps < 0]
    largest = int(-backwards.min()) if backwards.size else 0
    order = np.argsort(times, kind="stable")
    return times[order], order, int(backwards.size), largest


def align(streams: Sequence[Stream], fps: float) -> Alignment:
    """Frames on the ``fps`` grid and, per stream, the message each frame takes (see the module docstring)."""
    if fps <= 0:
        raise AlignmentError(f"fps must be > 0, got {fps}")
    if not streams:
        raise AlignmentError("no streams to align")
    names = [s.name for s in streams]
    if len(set(names)) != len(names):
        raise AlignmentError(f"stream names repeat: {names}")
    period_ns = NS / fps
    prepared = {}
    for stream in streams:
        if len(stream.times_ns) == 0:
            raise AlignmentError(f"stream {stream.name!r} has no messages")
        sorted_t, order, backwards, largest = _stream_figures(stream)
        if largest > stream.tolerance_ns:
            first_bad = int(np.argmax(np.diff(np.asarray(stream.times_ns, dtype=np.int64)) < -stream.tolerance_ns))
            raise NonMonotonicStampsError(
                f"stream {stream.name!r}: {stream.timeline} time jumps back by {largest / 1e9:.3f} s (message "
                f"{first_bad + 1} is earlier than message {first_bad}), more than its tolerance "
                f"{stream.tolerance_ns / 1e6:.0f} ms: the clock was reset or the stamps are not on this timeline "
                f"(split the bag, or choose the receive timeline)")
        prepared[stream.name] = (stream, sorted_t, order, backwards, largest)

    # Grid bounds: every stream has a sample at t + offset for t in [start, end].
    start = max(int(sorted_t[0]) - round(s.offset_frames * period_ns) for s, sorted_t, *_ in prepared.values())
    end = min(int(sorted_t[-1]) - round(s.offset_frames * period_ns) for s, sorted_t, *_ in prepared.values())
    if end < start:
        raise AlignmentError(
            "the streams do not overlap in time: " + ", ".join(
                f"{s.name} {sorted_t[0] / 1e9:.3f}..{sorted_t[-1] / 1e9:.3f} s" for s, sorted_t, *_ in prepared.values()))
    # The last frame is the last k with grid_time(k) <= end, counted on the same rounded-ns grid: a camera stamping
    # exactly at fps (t_i = round(i / fps) ns) must keep its last frame (a float floor can miss it by a fraction).
    last = int(np.floor((end - start) / period_ns))
    while int(grid_time(start, last + 1, fps)) <= end:
        last += 1
    while last > 0 and int(grid_time(start, last, fps)) > end:
        last -= 1
    grid_frames = last + 1
    grid = grid_time(start, np.arange(grid_frames), fps)

    keep = np.ones(grid_frames, dtype=bool)
    chosen: dict[str, np.ndarray] = {}
    stale: dict[str, np.ndarray] = {}
    for name, (stream, sorted_t, order, _, _) in prepared.items():
        at = grid + round(stream.offset_frames * period_ns)
        pos = np.searchsorted(sorted_t, at, side="right") - 1  # latest at or before `at`; >= 0 by the grid start
        age = at - sorted_t[pos]
        stale[name] = age > stream.tolerance_ns
        keep &= ~stale[name]
        chosen[name] = order[pos]

    reports = {}
    for name, (stream, sorted_t, order, backwards, largest) in prepared.items():
        intervals = np.diff(sorted_t)
        span = (sorted_t[-1] - sorted_t[0]) / 1e9
        latency = None
        if stream.timeline == "header" and stream.receive_ns is not None and len(stream.receive_ns):
            latency = float(np.median(np.asarray(stream.receive_ns, dtype=np.int64) - np.asarray(stream.times_ns))) / 1e9
        reports[name] = StreamReport(
            name=name,
            timeline=stream.timeline,
            messages=int(sorted_t.size),
            rate_hz=float((sorted_t.size - 1) / span) if span > 0 else 0.0,
            median_period_s=float(np.median(intervals)) / 1e9 if intervals.size else 0.0,
            max_gap_s=float(intervals.max()) / 1e9 if intervals.size else 0.0,
            gaps=int(np.count_nonzero(intervals > 2 * np.median(intervals))) if intervals.size else 0,
            backwards_steps=backwards,
            largest_backwards_s=largest / 1e9,
            dropped_frames=int(np.count_nonzero(stale[name])),
            tolerance_s=stream.tolerance_ns / 1e9,
            median_latency_s=latency,
        )
    return Alignment(
        fps=float(fps),
        start_ns=start,
        grid_frames=grid_frames,
        frame_times_ns=grid[keep],
        grid_index=np.flatnonzero(keep),
        indices={name: idx[keep] for name, idx in chosen.items()},
        streams=reports,
    )
