"""Where one chunk's time goes: a stage-by-stage profile of ``PolicyRuntime.predict`` on a SmolVLA policy.

ROS-free; used by ``bench/profile_chunk.py`` and its test. The profiler wraps, for the duration of a ``with``
block, the callables one inference goes through (instance attributes shadowing the class methods, removed on
exit, so the runtime is unchanged afterwards):

- ``preprocess``: the checkpoint's LeRobot preprocessor (normalization, tokenizer, device move);
- ``vision``: ``vlm_with_expert.embed_image`` = SigLIP vision encoder + connector (pixel shuffle + projection),
  whatever backs it (torch or an exported runtime);
- ``prefix``: the one ``vlm_with_expert.forward`` call with ``fill_kv_cache=True``: image + language + state
  tokens through the VLM's text layers, filling the KV cache;
- ``flow_steps``: every ``model.denoise_step`` call (action expert over the cached prefix); their count is
  reported too (= ``num_steps`` when the KV cache is reused, which is how the cache use is checked);
- ``postprocess``: the checkpoint's postprocessor (unnormalization);
- ``other``: the rest of ``predict`` (observation to tensors, image resize with padding, embeddings glue,
  numpy conversions), i.e. total minus the stages above.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

STAGES = ("preprocess", "vision", "prefix", "flow_steps", "postprocess", "other")


@dataclass
class ChunkProfile:
    """Seconds per stage for one inference, and how often each wrapped callable ran."""

    seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    calls: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES if s != "other"})
    prefix_passes_with_cache_fill: int = 0
    total_s: float = 0.0


class _Timed:
    """A callable that adds its own wall time to ``profile.seconds[stage]`` (and counts calls)."""

    def __init__(self, profiler: "StageProfiler", stage: str, inner: Callable, *, only_if: Callable | None = None):
        self.profiler, self.stage, self.inner, self.only_if = profiler, stage, inner, only_if

    def __call__(self, *args, **kwargs):
        current = self.profiler.current
        if current is None or (self.only_if is not None and not self.only_if(*args, **kwargs)):
            return self.inner(*args, **kwargs)
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            current.seconds[self.stage] += time.perf_counter() - start
            current.calls[self.stage] += 1

    def __getattr__(self, name: str) -> Any:  # processors are objects with attributes, keep them reachable
        return getattr(self.inner, name)


class StageProfiler:
    """``with StageProfiler(runtime) as prof: p = prof.run(image, state, task, noise=...)`` -> ChunkProfile."""

    def __init__(self, runtime) -> None:
        model = getattr(runtime.policy, "model", None)
        if model is None or not hasattr(model, "vlm_with_expert") or not hasattr(model, "denoise_step"):
            raise TypeError(f"{type(runtime.policy).__name__} is not a SmolVLA policy: nothing to profile by stage")
        self.runtime = runtime
        self.current: ChunkProfile | None = None
        self._installed: list[tuple[object, str, bool, Any]] = []

    def _wrap(self, owner: object, name: str, stage: str, only_if: Callable | None = None) -> None:
        had_own = name in vars(owner)
        previous = vars(owner).get(name)
        self._installed.append((owner, name, had_own, previous))
        object.__setattr__(owner, name, _Timed(self, stage, getattr(owner, name), only_if=only_if))

    def __enter__(self) -> "StageProfiler":
        rt = self.runtime
        vwe = rt.policy.model.vlm_with_expert
        self._wrap(rt, "preprocessor", "preprocess")
        self._wrap(rt, "postprocessor", "postprocess")
        self._wrap(vwe, "embed_image", "vision")
        self._wrap(vwe, "forward", "prefix", only_if=lambda *a, **k: bool(k.get("fill_kv_cache")))
        self._wrap(rt.policy.model, "denoise_step", "flow_steps")
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, had_own, previous in reversed(self._installed):
            if had_own:
                object.__setattr__(owner, name, previous)
            else:
                del vars(owner)[name]
        self._installed.clear()

    def run(self, image, state, task: str, **predict_kwargs) -> ChunkProfile:
        if not self._installed:
            raise RuntimeError("StageProfiler.run must be called inside its 'with' block")
        profile = ChunkProfile()
        self.current = profile
        try:
            prediction = self.runtime.predict(image, state, task, **predict_kwargs)
        finally:
            self.current = None
        profile.total_s = prediction.latency_s
        profile.prefix_passes_with_cache_fill = profile.calls["prefix"]
        measured = sum(v for k, v in profile.seconds.items() if k != "other")
        profile.seconds["other"] = max(0.0, profile.total_s - measured)
        return profile


def median_profile(profiles: list[ChunkProfile]) -> dict[str, float]:
    """Median seconds per stage (and ``total``) over several runs."""
    if not profiles:
        raise ValueError("no profiles")
    out = {s: statistics.median(p.seconds[s] for p in profiles) for s in STAGES}
    out["total"] = statistics.median(p.total_s for p in profiles)
    return out
