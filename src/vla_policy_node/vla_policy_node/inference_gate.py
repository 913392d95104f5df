"""When to start the next inference. ROS-free; steady times passed in (see :mod:`timebase`).

The driver executes the published plan on its own clock; the policy only has to deliver the next chunk before the
plan runs out. With inference latency ``L`` (observation stamp -> chunk placed) and chunk duration ``D``:

- **overlap** (``L`` well below ``D``): start when the plan left (``plan_end - now``) is at most the *lead*
  ``max(lead_steps * dt, L_high + margin)``: ``lead_steps`` (``queue_threshold``, default half a chunk) or the
  slowest of the recent latencies plus a margin, whichever is longer. The new chunk then arrives before the plan
  runs out and is merged into it: the arm never stops (no starved ticks). It executes ``D - L`` of every chunk,
  one chunk per ``L``: a fraction ``min(1, (D - L) / L)`` of the time moving.
- **stop-and-go** (``rebase_when_idle`` and a model too slow for its chunk): wait until the plan has run out and
  an image of the holding arm has arrived; the chunk is then rebased to its arrival and executed whole. That moves
  ``D`` out of every ``D + L``. The gate picks stop-and-go when ``D / (D + L) > min(1, (D - L) / L)`` (with the
  median latency; the switch is near ``L = 0.62 D``).
- In both modes, once the plan has run out (``idle_since`` known) and ``rebase_when_idle`` is on, an image taken
  before the plan ran out is not used: its chunk could not be rebased (the arm was still moving).

One inference at a time: the node asks only while the inference thread is idle.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

OVERLAP = "overlap"
STOP_AND_GO = "stop_and_go"


@dataclass(frozen=True)
class GateConfig:
    step_period: float  # s between a chunk's steps
    chunk_steps: int  # steps per chunk (the checkpoint's chunk_size)
    lead_steps: int = 0  # start when at most this many steps of plan are left; 0 = half a chunk
    latency_margin_s: float = 0.1  # added to the slowest recent latency for the lead
    rebase_when_idle: bool = True
    latency_window: int = 5  # latencies kept for the estimates

    def __post_init__(self) -> None:
        if not self.step_period > 0:
            raise ValueError(f"step_period must be > 0, got {self.step_period}")
        if self.chunk_steps < 1:
            raise ValueError(f"chunk_steps must be >= 1, got {self.chunk_steps}")
        if self.lead_steps < 0 or self.latency_margin_s < 0 or self.latency_window < 1:
            raise ValueError("lead_steps and latency_margin_s must be >= 0, latency_window >= 1")

    @property
    def chunk_duration(self) -> float:
        return self.chunk_steps * self.step_period

    @property
    def base_lead(self) -> float:
        steps = self.lead_steps or max(1, self.chunk_steps // 2)
        return steps * self.step_period


@dataclass(frozen=True)
class GateDecision:
    start: bool
    mode: str  # OVERLAP or STOP_AND_GO
    reason: str  # why not (or "start")


class InferenceGate:
    """Decides when the next inference starts; remembers recent latencies. See the module docstring."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self._latencies: deque[float] = deque(maxlen=config.latency_window)

    def record_latency(self, latency: float) -> None:
        """Observation stamp -> chunk placed, s."""
        if math.isfinite(latency) and latency >= 0:
            self._latencies.append(float(latency))

    def reset_latencies(self) -> None:
        self._latencies.clear()

    @property
    def latency_median(self) -> float | None:
        return float(np.median(self._latencies)) if self._latencies else None

    @property
    def latency_high(self) -> float | None:
        return max(self._latencies) if self._latencies else None

    def mode(self) -> str:
        latency = self.latency_median
        if not self.config.rebase_when_idle or latency is None:
            return OVERLAP
        duration = self.config.chunk_duration
        overlap_fraction = min(1.0, max(0.0, duration - latency) / max(latency, 1e-9))
        return STOP_AND_GO if duration / (duration + latency) > overlap_fraction else OVERLAP

    def lead(self) -> float:
        """Plan time left (s) at which an overlapping inference starts."""
        high = self.latency_high
        return max(self.config.base_lead, (high + self.config.latency_margin_s) if high is not None else 0.0)

    def decide(self, now: float, plan_end: float | None, idle_since: float | None, image_stamp: float) -> GateDecision:
        """``plan_end``: when the plan runs out (None: nothing planned); ``idle_since``: when the plan ran out
        (None while it runs, -inf: nothing was ever planned); ``image_stamp``: the candidate observation's stamp."""
        mode = self.mode()
        if mode == STOP_AND_GO and idle_since is None:
            return GateDecision(False, mode, "stop-and-go: waiting for the plan to run out")
        if mode == OVERLAP and plan_end is not None:
            left = plan_end - now
            if left > self.lead() + 1e-9:
                return GateDecision(False, mode, f"plan covers {left:.2f} s > lead {self.lead():.2f} s")
        if self.config.rebase_when_idle and idle_since is not None and image_stamp < idle_since:
            return GateDecision(False, mode, "waiting for an image of the holding arm")
        return GateDecision(True, mode, "start")
