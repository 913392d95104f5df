"""Timeline of future actions built from action chunks: placement by observation stamp, merge of overlaps.

ROS-free and clock-free: every method takes the current time (seconds on the steady clock the observation stamps
were converted to: see :mod:`vla_policy_node.timebase`). Not thread-safe by itself: the node guards it with one
lock. Smoothing (EMA, step limit, joint limits) is done on the whole plan by :mod:`vla_policy_node.command_plan`.

Timeline. Step k of a chunk computed from an observation stamped ``t_obs`` is meant for ``t_obs + k * dt``
(``dt`` = the training data's step period). Steps live on a grid ``anchor + i * dt``; the anchor is the stamp of
the first chunk placed on an empty timeline, and later chunks snap to the nearest grid slot (at most dt/2 off).
Step i is *current* during ``[t_i, t_i + dt)`` and has *expired* once ``t_i + dt <= now``.

- ``add_chunk``: steps that have already expired when the chunk arrives (inference latency) are dropped and
  counted (``dropped_stale``); the rest are merged into the slots they overlap with the configured rule:
  ``latest`` (the chunk from the newest observation wins), ``weighted_average`` (``old_weight * old +
  new_weight * new``, normalised by the weights' sum) or ``temporal_ensemble`` (ACT: the j-th prediction made for
  a slot, oldest first, weighs ``exp(-ensemble_decay * j)``; the slot holds the weighted mean of all of them).
- ``planned``: (time, merged action) of every step not yet expired, in time order: what the node smooths and
  publishes as one trajectory. ``plan_end``: when the last step expires (the plan runs out).
- ``queue_depth``: steps not yet expired (the current one included).
- ``rebase_when_idle`` (off by default): a chunk whose observation was taken while the timeline was empty (the
  arm was holding still since before the observation, so the observed state is still the current one) starts at
  its arrival instead of its observation stamp: nothing of it is stale. This is what LeRobot's async client does
  implicitly (its timestep counter only advances while actions execute) and what keeps a model slower than its
  own chunk moving (stop-and-go) instead of dropping every step. Counted in ``rebased_chunks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class MergeRule(str, Enum):
    """How a new chunk's step combines with a step already on the timeline for the same time slot."""

    LATEST = "latest"
    WEIGHTED_AVERAGE = "weighted_average"
    TEMPORAL_ENSEMBLE = "temporal_ensemble"

    @classmethod
    def parse(cls, text: str) -> "MergeRule":
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            raise ValueError(f"unknown merge rule {text!r}; choose one of {[r.value for r in cls]}") from None


@dataclass
class SchedulerConfig:
    step_period: float  # seconds between a chunk's steps (1 / dataset fps)
    merge_rule: MergeRule = MergeRule.LATEST
    old_weight: float = 0.3  # weighted_average: weight of the step already on the timeline
    new_weight: float = 0.7  # weighted_average: weight of the new chunk's step
    ensemble_decay: float = 0.01  # temporal_ensemble: m in exp(-m * j), j = 0 for the oldest prediction
    rebase_when_idle: bool = False  # see the module docstring

    def __post_init__(self) -> None:
        self.merge_rule = MergeRule.parse(self.merge_rule) if not isinstance(self.merge_rule, MergeRule) else \
            self.merge_rule
        if not self.step_period > 0:
            raise ValueError(f"step_period must be > 0, got {self.step_period}")
        if self.old_weight < 0 or self.new_weight < 0 or self.old_weight + self.new_weight <= 0:
            raise ValueError("weighted_average weights must be >= 0 and not both 0")
        if self.ensemble_decay < 0:
            raise ValueError(f"ensemble_decay must be >= 0, got {self.ensemble_decay}")


@dataclass
class _Slot:
    value: np.ndarray  # merged action for this slot
    stamp: float  # observation stamp of the newest chunk that wrote here
    weight_sum: float = 1.0  # temporal_ensemble: sum of the weights so far
    weighted_sum: np.ndarray | None = None  # temporal_ensemble: sum of weight * action
    count: int = 1  # predictions merged into this slot


@dataclass
class SchedulerCounters:
    chunks_added: int = 0
    chunks_rejected_nonfinite: int = 0
    dropped_stale: int = 0  # steps already expired when their chunk arrived
    merged_steps: int = 0  # steps that landed on an occupied slot
    rebased_chunks: int = 0  # chunks started at arrival (rebase_when_idle)


@dataclass
class AddResult:
    placed: int  # steps placed on the timeline (new slots + merged)
    merged: int  # of which landed on an occupied slot
    dropped_stale: int
    rebased: bool = False


class ChunkScheduler:
    """Future actions keyed by time; see the module docstring for the rules."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.counters = SchedulerCounters()
        self._anchor: float | None = None
        self._slots: dict[int, _Slot] = {}
        self._idle_since = -math.inf  # when the timeline last became empty (the arm holds from then on)

    # ----------------------------------------------------------------------------------------------- timeline
    def _slot_time(self, index: int) -> float:
        assert self._anchor is not None
        return self._anchor + index * self.config.step_period

    def _expired(self, index: int, now: float) -> bool:
        return self._slot_time(index) + self.config.step_period <= now + 1e-12

    def _discard_expired(self, now: float) -> None:
        expired = [i for i in self._slots if self._expired(i, now)]
        for index in expired:
            del self._slots[index]
        if expired and not self._slots:
            self._idle_since = self._slot_time(max(expired)) + self.config.step_period

    def add_chunk(self, chunk: np.ndarray, obs_stamp: float, now: float) -> AddResult:
        """Place a [T, J] chunk computed from an observation stamped ``obs_stamp``; see the module docstring."""
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2 or chunk.shape[0] == 0:
            raise ValueError(f"chunk must be [T, J] with T >= 1, got shape {chunk.shape}")
        if not np.all(np.isfinite(chunk)):
            self.counters.chunks_rejected_nonfinite += 1
            raise ValueError("chunk holds NaN or inf values: rejected")
        if self._slots:
            width = next(iter(self._slots.values())).value.shape[0]
            if chunk.shape[1] != width:
                raise ValueError(f"chunk has {chunk.shape[1]} joints, the timeline {width}")
        self._discard_expired(now)
        dt = self.config.step_period
        rebased = False
        if not self._slots:
            if self.config.rebase_when_idle and self._idle_since <= obs_stamp <= now:
                obs_stamp, rebased = float(now), True  # held still since before the observation: start now
            self._anchor = float(obs_stamp)  # re-anchor on an empty timeline: no rounding at all for this chunk
        rule = self.config.merge_rule
        placed = merged = stale = 0
        for k, action in enumerate(chunk):
            index = int(round((obs_stamp + k * dt - self._anchor) / dt))
            if self._expired(index, now):
                stale += 1
                continue
            slot = self._slots.get(index)
            placed += 1
            if slot is None:
                self._slots[index] = _Slot(value=action.copy(), stamp=float(obs_stamp),
                                           weighted_sum=action.copy())
                continue
            merged += 1
            if rule is MergeRule.LATEST:
                if obs_stamp >= slot.stamp:
                    slot.value = action.copy()
            elif rule is MergeRule.WEIGHTED_AVERAGE:
                w_old, w_new = self.config.old_weight, self.config.new_weight
                slot.value = (w_old * slot.value + w_new * action) / (w_old + w_new)
            else:  # temporal ensemble, ACT: weight exp(-m * j) for the j-th prediction (oldest j = 0)
                weight = math.exp(-self.config.ensemble_decay * slot.count)
                slot.weighted_sum = slot.weighted_sum + weight * action
                slot.weight_sum += weight
                slot.value = slot.weighted_sum / slot.weight_sum
            slot.count += 1
            slot.stamp = max(slot.stamp, float(obs_stamp))
        self.counters.chunks_added += 1
        self.counters.dropped_stale += stale
        self.counters.merged_steps += merged
        self.counters.rebased_chunks += int(rebased)
        return AddResult(placed=placed, merged=merged, dropped_stale=stale, rebased=rebased)

    # ------------------------------------------------------------------------------------------------ output
    def current_target(self, now: float) -> np.ndarray | None:
        """The raw (merged, unfiltered) action of the step current at ``now``, or None."""
        self._discard_expired(now)
        for index, slot in self._slots.items():
            if self._slot_time(index) <= now + 1e-12:
                return slot.value.copy()
        return None

    # --------------------------------------------------------------------------------------------- queries
    def queue_depth(self, now: float) -> int:
        """Steps on the timeline that have not expired (the current one included)."""
        self._discard_expired(now)
        return len(self._slots)

    def idle_since(self, now: float) -> float | None:
        """When the timeline ran empty (-inf: never planned), or None while steps remain."""
        self._discard_expired(now)
        return None if self._slots else self._idle_since

    def plan_end(self, now: float) -> float | None:
        """When the last planned step expires (the plan runs out), or None when nothing is planned."""
        self._discard_expired(now)
        return self._slot_time(max(self._slots)) + self.config.step_period if self._slots else None

    def planned(self, now: float) -> list[tuple[float, np.ndarray]]:
        """(time, merged action) of every non-expired step, in time order (for tools and tests)."""
        self._discard_expired(now)
        return [(self._slot_time(i), self._slots[i].value.copy()) for i in sorted(self._slots)]

    def clear(self, now: float | None = None) -> None:
        """Forget every planned step (pause, stale input, task change).

        ``now``: when the arm starts holding (commands stop); None = long ago (no commands were being sent)."""
        if self._slots:
            self._idle_since = -math.inf if now is None else float(now)
        self._slots.clear()
        self._anchor = None
