#!/usr/bin/env python3
"""SmolVLA inference latency and action deviation per precision mode (full-size policy, random weights, offline).

Builds (once, cached under --workdir) a SmolVLA with smolvla_base's architecture (SmolVLM2-500M-sized VLM, 16 VLM
layers, action expert, chunk 50, 10 flow steps, one camera resized to 512 px) with random weights, saved like a
training run's pretrained_model, then for each precision mode loads it through the node's PolicyRuntime (LeRobot's
loading path and processors) and times predict() on the same 640x480 observation and the same start noise:
median latency per chunk, ratio to fp32, and action deviation from fp32 (max |da| in rad, and relative to the
flow-matching displacement). On a CUDA machine the same runs on the GPU too (fp16, int8/int4 weight-only there).

Goal on the 2-core CPU: a mode at or under 1.0 s per 50-action chunk (a chunk lasts 1.67 s at 30 Hz).

Usage: cd /work/main && source scripts/env.sh && python bench/policy_latency.py [--quick] [--modes fp32,bf16,int8]
       [--device cpu|cuda|all] [--repeats 3] [--threads 2] [--image-size 512]
--quick: one timed run after one warm-up, CPU modes fp32/bf16/int8 only. Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
for package in ("src/vla_policy_node", "src/roarm_driver"):
    sys.path.insert(0, str(ROOT / package))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from vla_policy_node.precision import PRECISION_MODES, modes_for_device  # noqa: E402
from vla_policy_node.precision_compare import compare_precisions, sample_observation  # noqa: E402
from roarm_training.small_smolvla import build_full_size_checkpoint  # noqa: E402


def full_size_checkpoint(workdir: pathlib.Path, image_size: int, chunk_size: int) -> pathlib.Path:
    path = workdir / f"smolvla_full_{image_size}px_chunk{chunk_size}"
    if not (path / "model.safetensors").is_file():
        print(f"building the full-size checkpoint in {path} (random weights, offline) ...", flush=True)
        start = time.perf_counter()
        build_full_size_checkpoint(path, chunk_size=chunk_size, image_size=image_size, vlm_folder=workdir / "vlm_full")
        print(f"  built in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 1 timed run; CPU fp32/bf16/int8")
    parser.add_argument("--modes", default="", help="comma-separated modes (default: all that fit the device)")
    parser.add_argument("--device", default="all", help="cpu, cuda or all (= cpu, plus cuda when available)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--image-size", type=int, default=512, help="policy resize_imgs_with_padding (512 = base)")
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--workdir", default="/tmp/roarm_vla_bench", help="where the checkpoint is cached")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 1, 1
        args.modes = args.modes or "fp32,bf16,int8"
        if args.device == "all":
            args.device = "cpu"
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if not devices:
        raise SystemExit(f"device {args.device!r} is not available here")
    checkpoint = full_size_checkpoint(pathlib.Path(args.workdir), args.image_size, args.chunk_size)
    image, state = sample_observation(0)
    load = os.getloadavg()
    summary: dict = {"bench": "policy_latency", "checkpoint": "full-size SmolVLA (random weights)",
                     "chunk_size": args.chunk_size, "image_size": args.image_size, "threads": args.threads,
                     "repeats": args.repeats, "loadavg_1min_at_start": round(load[0], 2), "devices": {}}
    for device in devices:
        requested = [m.strip() for m in args.modes.split(",") if m.strip()] or list(PRECISION_MODES)
        modes = modes_for_device(device, requested) if not args.modes else requested
        print(f"\n== {device}: modes {modes}, {args.warmup} warm-up + {args.repeats} timed runs each", flush=True)
        results = compare_precisions(str(checkpoint), modes, device=device, repeats=args.repeats,
                                     warmup=args.warmup, image=image, state=state)
        print(f"{'mode':6} {'median s':>9} {'x fp32':>7} {'max|da| rad':>12} {'rel dev':>8}  runs")
        table = {}
        for r in results:
            if r.error:
                print(f"{r.mode:6} unavailable: {r.error}")
                table[r.mode] = {"error": r.error}
                continue
            print(f"{r.mode:6} {r.median_latency_s:9.3f} {r.ratio_to_fp32:7.2f} {r.max_abs_dev_rad:12.4f} "
                  f"{r.rel_dev:8.4f}  {[round(x, 3) for x in r.latencies_s]}", flush=True)
            table[r.mode] = {"median_s": round(r.median_latency_s, 4), "ratio_to_fp32": round(r.ratio_to_fp32, 3),
                             "max_abs_dev_rad": round(r.max_abs_dev_rad, 5), "rel_dev": round(r.rel_dev, 5)}
        ok = {m: v for m, v in table.items() if "median_s" in v}
        best = min(ok, key=lambda m: ok[m]["median_s"]) if ok else None
        summary["devices"][device] = {
            "modes": table, "best_mode": best, "best_median_s": ok[best]["median_s"] if best else None,
            "goal_1s_per_chunk_met": bool(best and ok[best]["median_s"] <= 1.0),
        }
    summary["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
