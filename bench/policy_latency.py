#!/usr/bin/env python3
"""SmolVLA inference latency and action deviation per precision mode (full-size policy, random weights, offline).

Builds (once, cached under --workdir) a SmolVLA with smolvla_base's architecture (SmolVLM2-500M-sized VLM, 16 VLM
layers, action expert, chunk 50, 10 flow steps, one camera resized to 512 px) with random weights, saved like a
training run's pretrained_model, then for each precision mode loads it through the node's PolicyRuntime (LeRobot's
loading path and processors) and times predict() on the same 640x480 observation and the same start noise:
median latency per chunk, ratio to fp32, and action deviation from fp32 (max |da| in rad, and relative to the
flow-matching displacement). On a CUDA machine the same runs on the GPU too (fp16, int8/int4 weight-only there).

Goal on the 2-core CPU: a mode at or under 1.0 s per 50-action chunk (a chunk lasts 1.67 s at 30 Hz).

The modes are loaded together and timed round-robin (``--sequential`` to load one at a time): on a shared machine
a load change then hits every mode alike, and the ratios to fp32 are the figures to trust. With an OpenVINO mode
in the list the run is sequential (those modes set torch to one thread process-wide; precision_compare). The deviation is taken
over --samples dataset-like observations (the simulated tabletop camera at the start poses of episodes 0..n-1,
no recorded dataset here), in radians and as a fraction of the checkpoint's action standard deviation (the
ground-truth spread its normalization stats give). Load time and peak resident memory per mode come from a fresh
process per mode (--no-load-stats skips them). --flow-steps 10,5,3 adds latency and deviation vs the number of
flow-matching steps (in --steps-mode, default the best mode).

Usage: cd /work/main && source scripts/env.sh && python bench/policy_latency.py [--quick] [--modes fp32,bf16,int8]
       [--device cpu|cuda|all] [--repeats 3] [--threads 2] [--image-size 512] [--samples 8] [--flow-steps 10,5]
       [--image-px 256]: --image-size and --image-px are the same option.
--quick: one timed run after one warm-up, CPU modes fp32/bf16/int8 (+ openvino, openvino_bf16 when installed).
Ends with ONE JSON line: best_mode, best_median_s (the image size asked for), image_px, per-mode figures.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
for package in ("src/vla_policy_node", "src/roarm_driver"):
    sys.path.insert(0, str(ROOT / package))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from vla_policy_node.precision import PRECISION_MODES, modes_for_device  # noqa: E402
from vla_policy_node.precision_compare import (  # noqa: E402
    compare_precisions,
    dataset_like_observations,
    flow_steps_sweep,
)
from roarm_training.small_smolvla import build_full_size_checkpoint  # noqa: E402


def full_size_checkpoint(workdir: pathlib.Path, image_size: int, chunk_size: int) -> pathlib.Path:
    path = workdir / f"smolvla_full_{image_size}px_chunk{chunk_size}"
    if not (path / "model.safetensors").is_file():
        print(f"building the full-size checkpoint in {path} (random weights, offline) ...", flush=True)
        start = time.perf_counter()
        build_full_size_checkpoint(path, chunk_size=chunk_size, image_size=image_size, vlm_folder=workdir / "vlm_full")
        print(f"  built in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def load_stats(checkpoint: pathlib.Path, mode: str, device: str, threads: int) -> dict:
    """Load time and peak resident memory of one mode, in a fresh process (nothing else loaded there)."""
    code = (
        "import json, resource, time, torch, sys\n"
        f"torch.set_num_threads({threads})\n"
        "from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig\n"
        "from vla_policy_node.precision_compare import sample_observation\n"
        "start = time.perf_counter()\n"
        f"rt = PolicyRuntime(RuntimeConfig(checkpoint={str(checkpoint)!r}, precision={mode!r}, device={device!r}))\n"
        "load = time.perf_counter() - start\n"
        "image, state = sample_observation(0)\n"
        "rt.predict(image, state, 'Pick up the white box', noise_seed=0)\n"
        "rss = int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "print(json.dumps({'load_s': round(load, 2), 'rss_gb': round(rss / 2**30, 3),\n"
        "  'peak_rss_gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 1 timed run; CPU fp32/bf16/int8(/openvino/openvino_bf16)")
    parser.add_argument("--modes", default="", help="comma-separated modes (default: all that fit the device)")
    parser.add_argument("--device", default="all", help="cpu, cuda or all (= cpu, plus cuda when available)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--image-size", "--image-px", dest="image_size", type=int, default=512,
                        help="policy resize_imgs_with_padding (512 = base)")
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--samples", type=int, default=8, help="dataset-like observations for the deviation")
    parser.add_argument("--sequential", action="store_true", help="load and time one mode at a time")
    parser.add_argument("--no-load-stats", action="store_true", help="skip load time / memory per mode")
    parser.add_argument("--flow-steps", default="", help="e.g. 10,8,5,3: latency + deviation vs flow steps")
    parser.add_argument("--steps-mode", default="", help="precision of the flow-steps sweep (default: best mode)")
    parser.add_argument("--workdir", default="/tmp/roarm_vla_bench", help="where the checkpoint is cached")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 1, 1
        if args.device == "all":
            args.device = "cpu"
        args.modes = args.modes or ",".join(modes_for_device(args.device, ("fp32", "bf16", "int8", "openvino",
                                                                              "openvino_bf16")))
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if not devices:
        raise SystemExit(f"device {args.device!r} is not available here")
    checkpoint = full_size_checkpoint(pathlib.Path(args.workdir), args.image_size, args.chunk_size)
    samples = dataset_like_observations(max(1, args.samples))
    load = os.getloadavg()
    summary: dict = {"bench": "policy_latency", "checkpoint": "full-size SmolVLA (random weights)",
                     "image_px": args.image_size, "chunk_size": args.chunk_size, "threads": args.threads,
                     "repeats": args.repeats, "samples": len(samples), "interleaved": not args.sequential,
                     "loadavg_1min_at_start": round(load[0], 2), "devices": {}}
    for device in devices:
        requested = [m.strip() for m in args.modes.split(",") if m.strip()] or list(PRECISION_MODES)
        modes = modes_for_device(device, requested) if not args.modes else requested
        interleaved = not args.sequential and not any(m.startswith("openvino") for m in modes)
        summary["interleaved"] = interleaved
        print(f"\n== {device}: modes {modes}, {args.warmup} warm-up + {args.repeats} timed runs each, "
              f"{'interleaved' if interleaved else 'sequential'}; deviation over {len(samples)} samples",
              flush=True)
        results = compare_precisions(str(checkpoint), modes, device=device, repeats=args.repeats,
                                     warmup=args.warmup, samples=samples, interleave=not args.sequential)
        print(f"{'mode':9} {'median s':>9} {'x fp32':>7} {'max|da| rad':>12} {'mean|da| rad':>13} "
              f"{'max/std':>8} {'mean/std':>9} {'rel dev':>8} {'load s':>7}  runs")
        table = {}
        for r in results:
            if r.error:
                print(f"{r.mode:9} unavailable: {r.error}")
                table[r.mode] = {"error": r.error}
                continue
            print(f"{r.mode:9} {r.median_latency_s:9.3f} {r.ratio_to_fp32:7.2f} {r.max_abs_dev_rad:12.4f} "
                  f"{r.mean_abs_dev_rad:13.5f} {r.max_dev_frac_std:8.4f} {r.mean_dev_frac_std:9.5f} "
                  f"{r.rel_dev:8.4f} {r.load_s:7.1f}  {[round(x, 3) for x in r.latencies_s]}", flush=True)
            table[r.mode] = {"median_s": round(r.median_latency_s, 4), "ratio_to_fp32": round(r.ratio_to_fp32, 3),
                             "max_abs_dev_rad": round(r.max_abs_dev_rad, 5),
                             "mean_abs_dev_rad": round(r.mean_abs_dev_rad, 6),
                             "max_dev_frac_std": round(r.max_dev_frac_std, 5),
                             "mean_dev_frac_std": round(r.mean_dev_frac_std, 6), "rel_dev": round(r.rel_dev, 5),
                             "latencies_s": [round(x, 4) for x in r.latencies_s]}
        if not args.no_load_stats:
            print("load time and resident memory, one fresh process per mode:", flush=True)
            for mode, row in table.items():
                if "error" in row:
                    continue
                row["load"] = load_stats(checkpoint, mode, device, args.threads)
                print(f"  {mode:9} {row['load']}", flush=True)
        ok = {m: v for m, v in table.items() if "median_s" in v}
        best = min(ok, key=lambda m: ok[m]["median_s"]) if ok else None
        summary["devices"][device] = {
            "modes": table, "best_mode": best, "best_median_s": ok[best]["median_s"] if best else None,
            "goal_met": bool(best and ok[best]["median_s"] <= (1.0 if args.image_size >= 512 else 0.3)),
        }
        if args.flow_steps and best:
            steps_mode = args.steps_mode or best
            steps = [int(x) for x in args.flow_steps.split(",") if x.strip()]
            print(f"flow-matching steps vs the checkpoint's 10, {steps_mode}:", flush=True)
            rows = flow_steps_sweep(str(checkpoint), steps, precision=steps_mode, samples=samples,
                                    repeats=max(1, args.repeats))
            for row in rows:
                print("  " + " ".join(f"{k}={round(v, 5) if isinstance(v, float) else v}" for k, v in row.items()),
                      flush=True)
            summary["devices"][device]["flow_steps"] = {"mode": steps_mode, "rows": [
                {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()} for row in rows]}
    first = summary["devices"][devices[0]]
    summary["best_mode"], summary["best_median_s"] = first["best_mode"], first["best_median_s"]
    summary["best_device"] = devices[0]
    summary["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    summary["peak_rss_gb_bench_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
