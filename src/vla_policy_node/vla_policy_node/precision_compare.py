"""Latency and action deviation of each precision mode against fp32, on the same observations and noise.

ROS-free; used by ``bench/policy_latency.py`` and the tests. Each mode loads the checkpoint (conversions are in
place, so one runtime per mode), runs ``warmup`` + ``repeats`` timed inferences on the first observation with the
SAME start noise, and one inference per observation of ``samples`` for the deviation from fp32:
- ``max_abs_dev_rad`` / ``mean_abs_dev_rad``: joint-space difference of the final actions (URDF radians), over
  every sample, step and joint;
- ``max_dev_frac_std`` / ``mean_dev_frac_std``: the same difference divided by the ground-truth spread of the
  actions, i.e. the checkpoint's action standard deviation per joint (its normalization stats = the training
  dataset's spread; the full-size bench checkpoint has default stats, no dataset);
- ``rel_dev``: ||a_mode - a_fp32|| / ||a_fp32 - noise|| in the model's normalized action space, i.e. the deviation
  as a fraction of the flow-matching displacement (random weights give arbitrary actions, so a relative figure is
  the meaningful one), mean over the samples.

``interleave=True`` loads every mode first and then times them round-robin, so that a load change on a shared
machine hits every mode alike (ratios to fp32 are the figures to trust there). Not with the OpenVINO modes: they
set torch to one thread process-wide (see ``openvino_export``), which would slow the torch modes beside them,
so those runs are sequential (one mode loaded at a time, torch's thread count restored between modes).
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .observation import actions_to_urdf
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
    max_dev_frac_std: float = float("nan")
    mean_dev_frac_std: float = float("nan")
    rel_dev: float = float("nan")
    load_s: float = float("nan")
    error: str = ""  # why the mode could not run (e.g. fp16 on a CPU)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["latencies_s"] = [round(x, 5) for x in self.latencies_s]
        return out


def sample_observation(seed: int = 0, height: int = 480, width: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic random-pixel RGB image and a joint state near home (URDF radians)."""
    from roarm_description.joints import HOME_POSITIONS

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    state = HOME_POSITIONS + rng.normal(0.0, 0.1, size=HOME_POSITIONS.shape)
    return image, state


def dataset_like_observations(count: int, first_seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` observations like our datasets': the simulated tabletop camera (640x480, box + arm) rendered at
    the start pose of episodes ``first_seed ...``, and that pose as the joint state (URDF radians)."""
    from roarm_sim.renderer import Renderer
    from roarm_sim.scene import CameraModel, SceneConfig, draw_episode

    scene = SceneConfig()
    renderer = Renderer(CameraModel(), scene.table_top_z, scene.table_x, scene.table_y)
    out = []
    for seed in range(first_seed, first_seed + count):
        episode = draw_episode(seed, scene)
        out.append((renderer.render(episode.start_pose, episode.box), np.asarray(episode.start_pose, dtype=float)))
    return out


def action_std(runtime: PolicyRuntime) -> np.ndarray | None:
    """The checkpoint's action standard deviation per arm joint (URDF order, radians), from its unnormalizer."""
    for step in getattr(runtime.postprocessor, "steps", []):
        stats = getattr(step, "stats", None) or {}
        if "action" in stats and "std" in stats["action"]:
            std = np.asarray(stats["action"]["std"], dtype=float).reshape(1, -1)
            # actions_to_urdf converts SDK degrees to radians (a pure scale, so valid for a spread) and
            # reorders; joints the policy does not command come back NaN.
            return np.abs(actions_to_urdf(std, runtime.spec)[0])
    return None


def compare_precisions(
    checkpoint: str,
    modes: Iterable[str],
    *,
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    image: np.ndarray | None = None,
    state: Sequence[float] | None = None,
    samples: Sequence[tuple[np.ndarray, Sequence[float]]] | None = None,
    task: str = "Pick up the white box",
    noise_seed: int = 0,
    interleave: bool = False,
    runtime_overrides: dict | None = None,
) -> list[ModeResult]:
    """One :class:`ModeResult` per mode (fp32 always first: it is the reference).

    Timing runs use ``image``/``state`` (default: the first of ``samples``, else :func:`sample_observation`);
    the deviation uses every observation of ``samples`` (default: just the timing one).
    """
    if samples is None:
        if image is None or state is None:
            image, state = sample_observation()
        samples = [(image, state)]
    elif image is None or state is None:
        image, state = samples[0]
    modes = ["fp32"] + [m for m in dict.fromkeys(modes) if m != "fp32"]
    interleave = interleave and not any(m.startswith("openvino") for m in modes)
    results = {m: ModeResult(mode=m, device=device) for m in modes}
    runtimes: dict[str, PolicyRuntime] = {}

    def load(mode: str) -> PolicyRuntime | None:
        start = time.perf_counter()
        try:
            runtime = PolicyRuntime(RuntimeConfig(checkpoint=checkpoint, precision=mode, device=device,
                                                  **(runtime_overrides or {})))
        except Exception as exc:  # noqa: BLE001 - reported per mode, the others still run
            results[mode].error = f"{type(exc).__name__}: {exc}"
            return None
        results[mode].load_s = time.perf_counter() - start
        return runtime

    def time_once(mode: str, runtime: PolicyRuntime, noise) -> float:
        return runtime.predict(image, state, task, noise=noise.clone()).latency_s

    latencies: dict[str, list[float]] = {m: [] for m in modes}
    outputs: dict[str, list] = {}
    if interleave:
        for mode in modes:
            runtime = load(mode)
            if runtime is not None:
                runtimes[mode] = runtime
        noise = next(iter(runtimes.values())).make_noise(noise_seed) if runtimes else None
        for i in range(warmup + repeats):
            for mode, runtime in runtimes.items():
                latency = time_once(mode, runtime, noise)
                if i >= warmup:
                    latencies[mode].append(latency)
        for mode, runtime in runtimes.items():
            outputs[mode] = _sample_outputs(runtime, samples, task, noise)
        std = action_std(next(iter(runtimes.values()))) if runtimes else None
    else:
        std = None
        threads = torch.get_num_threads()
        for mode in modes:
            torch.set_num_threads(threads)  # the OpenVINO modes set torch to one thread for their own run
            runtime = load(mode)
            if runtime is None:
                continue
            noise = runtime.make_noise(noise_seed)
            for i in range(warmup + repeats):
                latency = time_once(mode, runtime, noise)
                if i >= warmup:
                    latencies[mode].append(latency)
            outputs[mode] = _sample_outputs(runtime, samples, task, noise)
            std = action_std(runtime) if std is None else std
            del runtime
            gc.collect()
        torch.set_num_threads(threads)
    runtimes.clear()
    gc.collect()

    reference = outputs.get("fp32")
    for mode in modes:
        result = results[mode]
        if mode not in outputs:
            continue
        result.latencies_s = tuple(latencies[mode])
        result.median_latency_s = statistics.median(latencies[mode])
        if reference is None:
            continue
        diffs = np.stack([out[0] - ref[0] for out, ref in zip(outputs[mode], reference)])  # [S, T, 6] rad
        result.max_abs_dev_rad = float(np.abs(diffs).max())
        result.mean_abs_dev_rad = float(np.abs(diffs).mean())
        if std is not None:
            frac = np.abs(diffs) / np.maximum(std, 1e-9)  # NaN for uncommanded joints
            result.max_dev_frac_std, result.mean_dev_frac_std = float(np.nanmax(frac)), float(np.nanmean(frac))
        rel = [np.linalg.norm(out[1] - ref[1]) / max(np.linalg.norm(ref[1] - ref[2]), 1e-12)
               for out, ref in zip(outputs[mode], reference)]
        result.rel_dev = float(np.mean(rel))
    fp32 = results["fp32"].median_latency_s
    for result in results.values():
        result.ratio_to_fp32 = result.median_latency_s / fp32 if fp32 == fp32 and fp32 > 0 else float("nan")
    return [results[m] for m in modes]


def _sample_outputs(runtime: PolicyRuntime, samples, task: str, noise) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(actions [T, 6] rad, model actions [T, A], start noise [T, A]) per observation, same noise for all."""
    out = []
    for image, state in samples:
        prediction = runtime.predict(image, state, task, noise=noise.clone())
        model = prediction.model_actions.cpu().numpy()[0]
        out.append((prediction.actions, model, noise.cpu().numpy()[0][:, : model.shape[1]]))
    return out


def flow_steps_sweep(
    checkpoint: str,
    steps: Sequence[int],
    *,
    precision: str = "fp32",
    samples: Sequence[tuple[np.ndarray, Sequence[float]]],
    repeats: int = 2,
    task: str = "Pick up the white box",
    noise_seed: int = 0,
    reference_steps: int | None = None,
) -> list[dict]:
    """Latency and deviation vs the number of flow-matching steps (one runtime; ``config.num_steps`` changed
    between runs). The reference is the checkpoint's own step count (SmolVLA: 10) in the same precision."""
    runtime = PolicyRuntime(RuntimeConfig(checkpoint=checkpoint, precision=precision))
    config = runtime.policy.config
    reference_steps = reference_steps or int(config.num_steps)
    noise = runtime.make_noise(noise_seed)
    std = action_std(runtime)
    config.num_steps = reference_steps
    reference = _sample_outputs(runtime, samples, task, noise)
    image, state = samples[0]
    rows = []
    for n in steps:
        config.num_steps = int(n)
        runtime.predict(image, state, task, noise=noise.clone())  # warm-up
        times = [runtime.predict(image, state, task, noise=noise.clone()).latency_s for _ in range(repeats)]
        outputs = _sample_outputs(runtime, samples, task, noise)
        diffs = np.stack([out[0] - ref[0] for out, ref in zip(outputs, reference)])
        frac = np.abs(diffs) / np.maximum(std, 1e-9) if std is not None else np.full(diffs.shape, np.nan)
        rel = [np.linalg.norm(out[1] - ref[1]) / max(np.linalg.norm(ref[1] - ref[2]), 1e-12)
               for out, ref in zip(outputs, reference)]
        rows.append({"steps": int(n), "median_s": statistics.median(times),
                     "max_abs_dev_rad": float(np.abs(diffs).max()), "mean_abs_dev_rad": float(np.abs(diffs).mean()),
                     "max_dev_frac_std": float(np.nanmax(frac)), "mean_dev_frac_std": float(np.nanmean(frac)),
                     "rel_dev": float(np.mean(rel))})
    config.num_steps = reference_steps
    return rows
