#!/usr/bin/env python3
"""Where one SmolVLA chunk's time goes, stage by stage, per precision mode (full-size policy, random weights).

Builds (once, cached under --workdir, same cache as bench/policy_latency.py) the full-size SmolVLA at the image
size asked for, loads it once per mode through the node's PolicyRuntime, and times each stage of predict() on the
same 640x480 observation and start noise (vla_policy_node.stage_profile: preprocess, vision encoder + connector,
prefix = image/language/state tokens through the VLM text layers filling the KV cache, the flow-matching steps of
the action expert, postprocess, other). The modes' runs are interleaved (round-robin, all models loaded at once)
so that load changes hit every mode alike, except with an OpenVINO mode (then one mode at a time, see the code);
medians per stage, and each mode's total as a ratio to the first mode.

Also prints how many prefix passes and flow steps one chunk ran: one prefix pass for num_steps flow steps means
LeRobot's KV cache is reused across the steps (the prefix is not recomputed).

A mode written ``<mode>+compile`` (e.g. ``--modes bf16,bf16+compile``) is that mode with ``torch.compile`` (inductor,
static shapes) on the flow-matching step (``model.denoise_step``: the action expert over the cached prefix) and the
vision encoder + connector (``vlm_with_expert.embed_image``); ``--compile-stages expert`` or ``vision`` narrows it.
The warm-up chunk then includes the compilation: it is reported as ``first_chunk_s`` (load-time cost).

Usage: cd /work/main && source scripts/env.sh && python bench/profile_chunk.py [--image-size 512]
       [--modes fp32,bf16] [--repeats 3] [--threads 2] [--compile-stages expert,vision]
Ends with ONE JSON line: {"bench": "profile_chunk", "image_px": ..., "modes": {mode: {stage: s, ...}}, ...}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import resource
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from policy_latency import full_size_checkpoint  # noqa: E402
from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig  # noqa: E402
from vla_policy_node.precision_compare import sample_observation  # noqa: E402
from vla_policy_node.stage_profile import STAGES, StageProfiler, median_profile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", "--image-px", dest="image_size", type=int, default=512,
                        help="policy resize_imgs_with_padding (512 = base)")
    parser.add_argument("--modes", default="fp32,bf16", help="comma-separated precision modes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (after one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--workdir", default="/tmp/roarm_vla_bench")
    parser.add_argument("--compile-stages", default="expert,vision",
                        help="what a '<mode>+compile' mode compiles: expert (flow step), vision (encoder+connector)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    checkpoint = full_size_checkpoint(pathlib.Path(args.workdir), args.image_size, args.chunk_size)
    image, state = sample_observation(0)
    task = "Pick up the white box"
    load_start = os.getloadavg()[0]

    # Interleaved (round-robin over models loaded together) unless an OpenVINO mode is asked for: those set torch
    # to one thread process-wide (openvino_export), so then one mode is loaded, profiled and freed at a time.
    sequential = any(m.startswith("openvino") for m in modes)
    threads = torch.get_num_threads()
    runtimes, load_s, first_chunk_s = {}, {}, {}
    profiles: dict[str, list] = {m: [] for m in modes}
    noise = None
    compile_stages = {s.strip() for s in args.compile_stages.split(",") if s.strip()}

    def load(mode: str) -> None:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        precision, _, suffix = mode.partition("+")
        runtime = PolicyRuntime(RuntimeConfig(checkpoint=str(checkpoint), precision=precision))
        if suffix == "compile":
            # Instance attributes shadow the methods (as the stage profiler's wrappers do): the profiler still
            # times each stage, now running the compiled code. Static shapes: one chunk's shapes never change.
            model = runtime.policy.model
            if "expert" in compile_stages:
                model.denoise_step = torch.compile(model.denoise_step, dynamic=False)
            if "vision" in compile_stages:
                vwe = model.vlm_with_expert
                vwe.embed_image = torch.compile(vwe.embed_image, dynamic=False)
        elif suffix:
            raise SystemExit(f"unknown mode suffix {suffix!r} in {mode!r} (only '+compile')")
        runtimes[mode] = runtime
        load_s[mode] = time.perf_counter() - start
        print(f"loaded {mode} in {load_s[mode]:.1f} s", flush=True)

    def profile_round(mode: str, keep: bool) -> None:
        with StageProfiler(runtimes[mode]) as profiler:
            profile = profiler.run(image, state, task, noise=noise.clone())
        if keep:
            profiles[mode].append(profile)
        else:  # the warm-up: first-call costs (allocations; the compilation of a +compile mode)
            first_chunk_s[mode] = profile.total_s
            print(f"{mode}: first chunk {profile.total_s:.1f} s", flush=True)

    if sequential:
        for mode in modes:
            load(mode)
            noise = noise if noise is not None else runtimes[mode].make_noise(0)
            for i in range(args.repeats + 1):  # round 0 = warm-up
                profile_round(mode, keep=i > 0)
            del runtimes[mode]
            gc.collect()
            print(f"{mode} done", flush=True)
    else:
        for mode in modes:
            load(mode)
        noise = runtimes[modes[0]].make_noise(0)
        for i in range(args.repeats + 1):  # round 0 = warm-up
            for mode in modes:
                profile_round(mode, keep=i > 0)
            print(f"round {i}/{args.repeats} done", flush=True)

    table = {m: median_profile(profiles[m]) for m in modes}
    reference = table[modes[0]]["total"]
    steps = profiles[modes[0]][0].calls["flow_steps"]
    prefix_passes = profiles[modes[0]][0].prefix_passes_with_cache_fill
    print(f"\nfull-size SmolVLA, {args.image_size} px, chunk {args.chunk_size}, {args.threads} threads, median of "
          f"{args.repeats} ({'sequential' if sequential else 'interleaved'}), load avg {load_start:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"one chunk = {prefix_passes} prefix pass (KV cache filled) + {steps} flow steps over the cached prefix")
    header = "| stage | " + " | ".join(f"{m} s | {m} %" for m in modes) + " |"
    print(header)
    print("|---" * (1 + 2 * len(modes)) + "|")
    for stage in (*STAGES, "total"):
        cells = []
        for m in modes:
            seconds, total = table[m][stage], table[m]["total"]
            cells.append(f"{seconds:.3f} | {100 * seconds / total:.0f}")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| x " + modes[0] + " | " + " | ".join(f"{table[m]['total'] / reference:.2f} | " for m in modes) + " |")
    summary = {
        "bench": "profile_chunk", "image_px": args.image_size, "chunk_size": args.chunk_size,
        "threads": args.threads, "repeats": args.repeats, "sequential": sequential, "flow_steps": steps, "prefix_passes": prefix_passes,
        "loadavg_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "load_s": {m: round(v, 2) for m, v in load_s.items()},
        "first_chunk_s": {m: round(v, 2) for m, v in first_chunk_s.items()},
        "peak_rss_gb_all_modes": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "modes": {m: {k: round(v, 4) for k, v in table[m].items()} for m in modes},
        "ratio_to_first": {m: round(table[m]["total"] / reference, 3) for m in modes},
    }
    del runtimes
    gc.collect()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
