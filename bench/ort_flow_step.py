#!/usr/bin/env python3
"""ONNX Runtime for SmolVLA's slowest stage: one flow-matching step of the full-size policy (issue 13's lever list).

The step's inputs are captured from a real chunk (the bench's full-size checkpoint at --image-px, one 640x480
observation, the task's prefix KV cache); the step is exported with the OpenVINO mode's ``DenoiseStep`` wrapper
(``torch.onnx.export``, TorchScript exporter, opset 17; SmolVLA cumsums bool pad masks, which ONNX's CumSum does not
take, so they are cast to int64 as torch does) and run by ORT's CPU provider in fp32 and after ORT's dynamic int8
quantization (``quantize_dynamic``, int8 weights, MatMulInteger). Timed against the same step in torch fp32 and
bf16, all on --threads threads (median of --repeats after one warm-up); deviation = max |v - v_fp32| of the step's
velocity. A step is about 1/10 of a chunk's flow-matching stage (see bench/profile_chunk.py).

Optional packages, not in requirements.txt: ``pip install onnxruntime onnx`` (the bench says so and exits 0 when
they are missing).

Usage: cd /work/main && source scripts/env.sh && python bench/ort_flow_step.py [--image-px 512] [--threads 1]
Ends with ONE JSON line: torch_fp32_s, torch_bf16_s, ort_fp32_s, ort_int8_s (seconds per step) and deviations.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def timed(fn, repeats: int):
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def capture_step(checkpoint, precision: str, image, state):
    """A loaded runtime and the arguments of its first denoise_step call in one real chunk."""
    from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig

    runtime = PolicyRuntime(RuntimeConfig(checkpoint=str(checkpoint), precision=precision))
    model = runtime.policy.model
    captured = {}
    original = model.denoise_step

    def record(prefix_pad_masks, past_key_values, x_t, timestep):
        captured.setdefault("args", (prefix_pad_masks, past_key_values, x_t, timestep))
        return original(prefix_pad_masks=prefix_pad_masks, past_key_values=past_key_values, x_t=x_t,
                        timestep=timestep)

    object.__setattr__(model, "denoise_step", record)
    runtime.predict(image, state, "Pick up the white box", noise_seed=0)
    del vars(model)["denoise_step"]
    return runtime, captured["args"]


def register_bool_cumsum() -> None:
    from torch.onnx import register_custom_op_symbolic, symbolic_helper

    def cumsum(g, value, dim, dtype):
        if value.type().scalarType() == "Bool":
            value = g.op("Cast", value, to_i=7)  # int64, what torch's cumsum of a bool tensor returns
        axis = g.op("Constant", value_t=torch.tensor(symbolic_helper._maybe_get_const(dim, "i"), dtype=torch.int64))
        return g.op("CumSum", value, axis)

    register_custom_op_symbolic("aten::cumsum", cumsum, 17)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", "--image-px", dest="image_size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/roarm_vla_bench")
    parser.add_argument("--checkpoint", default="", help="another SmolVLA checkpoint instead of the full-size one")
    args = parser.parse_args()
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        print(f"ONNX Runtime not installed ({exc}): pip install onnxruntime onnx")
        print(json.dumps({"bench": "ort_flow_step", "skipped": "onnxruntime or onnx missing"}))
        return
    from policy_latency import full_size_checkpoint
    from vla_policy_node.openvino_export import DenoiseStep
    from vla_policy_node.precision_compare import sample_observation

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    checkpoint = args.checkpoint or full_size_checkpoint(pathlib.Path(args.workdir), args.image_size, 50)
    image, state = sample_observation(0)
    runtime, (mask, kv, x_t, timestep) = capture_step(checkpoint, "fp32", image, state)
    model = runtime.policy.model
    layers = model.vlm_with_expert.num_vlm_layers
    flat = [kv[i][name].float() for i in range(layers) for name in ("key_states", "value_states")]
    step = DenoiseStep(model, layers).eval()
    inputs = (x_t.float(), timestep.float(), mask, *flat)
    with torch.inference_mode():
        torch_fp32_s, reference = timed(lambda: step(*inputs), args.repeats)
    reference = reference.float().numpy()
    print(f"prefix length {mask.shape[1]}; torch fp32 step {torch_fp32_s:.3f} s", flush=True)

    work = pathlib.Path(tempfile.mkdtemp(prefix="ort_flow_step_"))
    names = ["x_t", "timestep", "prefix_pad_masks"] + [f"kv{i}" for i in range(len(flat))]
    register_bool_cumsum()
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(step, inputs, str(work / "step.onnx"), dynamo=False, opset_version=17, input_names=names,
                          output_names=["velocity"])
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    quantize_dynamic(str(work / "step.onnx"), str(work / "step_int8.onnx"), weight_type=QuantType.QInt8)
    quantize_s = time.perf_counter() - start
    feed = {name: value.numpy() for name, value in zip(names, inputs)}
    figures = {}
    for label, path in (("ort_fp32", work / "step.onnx"), ("ort_int8", work / "step_int8.onnx")):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        start = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session_s = time.perf_counter() - start
        seconds, velocity = timed(lambda: session.run(None, feed)[0], args.repeats)
        figures[label] = (seconds, float(np.abs(velocity - reference).max()), session_s)
        print(f"{label}: {seconds:.3f} s per step, max |dv| {figures[label][1]:.2e}, session {session_s:.1f} s",
              flush=True)
    del runtime, model, step
    runtime, (mask_b, kv_b, x_b, t_b) = capture_step(checkpoint, "bf16", image, state)
    with torch.inference_mode():
        bf16_s, velocity_b = timed(lambda: runtime.policy.model.denoise_step(
            prefix_pad_masks=mask_b, past_key_values=kv_b, x_t=x_b, timestep=t_b), args.repeats)
    bf16_dev = float(np.abs(velocity_b.float().numpy() - reference).max())
    print(f"torch bf16: {bf16_s:.3f} s per step, max |dv| {bf16_dev:.2e}; export {export_s:.0f} s, int8 quantization "
          f"{quantize_s:.0f} s; |v| max {np.abs(reference).max():.2f}; load avg {load_start:.2f} -> "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    print(json.dumps({
        "bench": "ort_flow_step", "image_px": args.image_size, "threads": args.threads, "prefix_len": int(mask.shape[1]),
        "torch_fp32_s": round(torch_fp32_s, 4), "torch_bf16_s": round(bf16_s, 4),
        "ort_fp32_s": round(figures["ort_fp32"][0], 4), "ort_int8_s": round(figures["ort_int8"][0], 4),
        "max_dev": {"torch_bf16": bf16_dev, "ort_fp32": figures["ort_fp32"][1], "ort_int8": figures["ort_int8"][1]},
        "export_s": round(export_s, 1), "quantize_s": round(quantize_s, 1),
        "loadavg_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)]}))


if __name__ == "__main__":
    main()
