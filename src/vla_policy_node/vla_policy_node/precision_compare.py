"""Latency and action deviation of each precision mode against fp32, on the same observation and noise.

ROS-free; used by ``bench/policy_latency.py`` and the tests. Each mode loads the checkpoint afresh (conversions
are in place), runs ``warmup`` + ``repeats`` inferences with the SAME observation and the SAME start noise, and
compares its actions with fp32's:
- ``max_abs_dev_rad`` / ``mean_abs_dev_rad``: joint-space difference of the final actions (URDF radians);
- ``rel_dev``: ||a_mode - a_fp32|| / ||a_fp32 - noise|| in the model's normalized action space, i.e. the deviation
  as a fraction of the flow-matching displacement (random weights give arbitrary actions, so a relative figure
  is the meaningful one).
"""

from __future__ import annotations

import gc
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from .policy_runtime import PolicyRuntime, RuntimeConfig


@dataclass
class ModeResult:
    mode: str
    device: str
    median_latency_s: float = float("nan")
    latencies_s: tuple[float, ...] = ()
    ratio_to_fp32: float = float("nan")
    max_abs_dev_rad: float = float("nan")
    mean_abs_dev_rad: float = float("nan")
    rel_dev: float = float("nan")
    error: str = ""  # why the mode could not run (e.g. fp16 on a CPU)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["latencies_s"] = [round(x, 5) for x in self.latencies_s]
        return out


def sample_observation(seed: int = 0, height: int = 480, width: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic RGB image and a joint state near home (URDF radians)."""
    from roarm_description.joints import HOME_POSITIONS

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    state = HOME_POSITIONS + rng.normal(0.0, 0.1, size=HOME_POSITIONS.shape)
    return image, state


def compare_precisions(
    checkpoint: str,
    modes: Iterable[str],
    *,
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    image: np.ndarray | None = None,
    state: Sequence[float] | None = None,
    task: str = "Pick up the white box",
    noise_seed: int = 0,
    runtime_overrides: dict | None = None,
) -> list[ModeResult]:
    """One :class:`ModeResult` per mode (fp32 always measured first: it is the reference)."""
    if image is None or state is None:
        image, state = sample_observation()
    modes = ["fp32"] + [m for m in modes if m != "fp32"]
    results: list[ModeResult] = []
    reference_actions = reference_model = noise_np = None
    for mode in modes:
        result = ModeResult(mode=mode, device=device)
        try:
            runtime = PolicyRuntime(RuntimeConfig(checkpoint=checkpoint, precision=mode, device=device,
                                                  **(runtime_overrides or {})))
        except Exception as exc:  # noqa: BLE001 - reported per mode, the others still run
            result.error = f"{type(exc).__name__}: {exc}"
            results.append(result)
            continue
        noise = runtime.make_noise(noise_seed)
        latencies = []
        prediction = None
        for i in range(warmup + repeats):
            prediction = runtime.predict(image, state, task, noise=noise.clone())
            if i >= warmup:
                latencies.append(prediction.latency_s)
        result.latencies_s = tuple(latencies)
        result.median_latency_s = statistics.median(latencies)
        model = prediction.model_actions.cpu().numpy()[0]
        if mode == "fp32":
            reference_actions, reference_model = prediction.actions, model
            noise_np = noise.cpu().numpy()[0][:, : model.shape[1]]
        if reference_actions is not None:
            diff = prediction.actions - reference_actions
            result.max_abs_dev_rad = float(np.abs(diff).max())
            result.mean_abs_dev_rad = float(np.abs(diff).mean())
            displacement = np.linalg.norm(reference_model - noise_np)
            result.rel_dev = float(np.linalg.norm(model - reference_model) / max(displacement, 1e-12))
        results.append(result)
        del runtime, prediction
        gc.collect()
    fp32 = results[0].median_latency_s
    for result in results:
        result.ratio_to_fp32 = result.median_latency_s / fp32 if fp32 == fp32 and fp32 > 0 else float("nan")
    return results
