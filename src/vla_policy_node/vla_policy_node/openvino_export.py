"""SmolVLA's slow stages exported to OpenVINO: the ``openvino`` precision mode (CPU, optional package).

ROS-free. The stage profile (``bench/profile_chunk.py``) splits a full-size chunk at 512 px into the SigLIP vision
encoder (about half: 1024 patches through 12 layers of width 768), the prefix pass (image + language + state
tokens through the VLM's text layers, filling the KV cache, once per chunk) and the flow-matching steps (the
action expert over the cached prefix, ``num_steps`` times). Two of them become OpenVINO graphs:

- ``vision``: ``vision_model`` + ``connector`` for one image of the policy's resize size -> image tokens; it
  replaces ``vlm_with_expert.embed_image`` on the instance;
- ``expert`` (one flow-matching step): ``model.denoise_step`` with the KV cache as inputs. The prefix length
  varies with the task text, so the cache is padded to the longest prefix the policy can build (image tokens +
  ``tokenizer_max_length`` + state token) with zero keys/values and a False pad mask: padded keys get the
  attention's large negative logit, softmax weight exactly 0, positions come from the mask's sum, so the result
  equals the unpadded step (checked by the tests) and ONE compiled graph serves every task.

The prefix pass stays in torch (a short sequence, about 5-10 % of the chunk), on ONE torch thread: OpenVINO's
worker threads and torch's OpenMP threads both busy-wait after their work, and on a small CPU the two pools then
take turns on the cores (see :func:`install_openvino`'s ``torch_threads``).

Two modes, by the plugin's inference precision hint (set explicitly, never the plugin's CPU-dependent default):
- ``openvino``: ``f32``, the same computation as torch fp32 (only summation order differs); the prefix pass in
  torch float32.
- ``openvino_bf16``: ``bf16`` (the plugin keeps its own sensitive ops in f32), and the prefix pass's text layers
  in torch bfloat16 (their KV cache is cast back to float32 for the expert graph's inputs). Made for CPUs with
  AMX (``amx_bf16`` in /proc/cpuinfo, Sapphire Rapids and later): on a Xeon with avx512_bf16 but no AMX the bf16
  hint made the vision graph 4.6x SLOWER than f32 (measured by the earlier try), so :func:`cpu_has_amx_bf16`
  is logged at load.

Graphs are converted with ``ov.convert_model`` (tracing the torch modules), cached on disk keyed by a hash of the
weights and the input shapes (a re-trained checkpoint never reuses a stale graph; ``ROARM_VLA_OPENVINO_CACHE``,
default ``~/.cache/roarm_vla/openvino``), compiled for the CPU with the torch thread count. The torch weights of
the vision encoder and connector are then freed (moved to the ``meta`` device); the expert's stay (the prefix
pass does not use them, but a step longer than the padded graph falls back to torch).

OpenVINO is optional: :func:`require_openvino` raises :class:`MissingRuntimeError` with the install command when
the package is missing; the precision mode's validation turns it into a clear start-up error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

LOG = logging.getLogger(__name__)
CACHE_ENV = "ROARM_VLA_OPENVINO_CACHE"  # where converted graphs are kept; default ~/.cache/roarm_vla/openvino


class MissingRuntimeError(ImportError):
    """An optional inference runtime (OpenVINO) is not installed."""


def require_openvino():
    """The ``openvino`` module, or MissingRuntimeError saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingRuntimeError(
            "precision 'openvino' needs the OpenVINO runtime, which is not installed: "
            "pip install openvino (PyPI, CPU only); or choose precision fp32/bf16/int8") from exc
    return openvino


def openvino_available() -> bool:
    try:
        require_openvino()
    except MissingRuntimeError:
        return False
    return True


PRECISION_HINTS = ("f32", "bf16")


def cpu_has_amx_bf16() -> bool:
    """True when the CPU advertises AMX bf16 tiles (where OpenVINO's and oneDNN's bf16 kernels are fast)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "roarm_vla" / "openvino"))


def _weights_key(module: nn.Module, shapes: Sequence[tuple[int, ...]], tag: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tag}{list(shapes)}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


class OpenVinoGraph:
    """One torch module as a compiled OpenVINO graph for fixed input shapes (converted or read from the cache)."""

    def __init__(self, module: nn.Module, example: Sequence[torch.Tensor], *, name: str, threads: int,
                 cache: bool = True, precision_hint: str = "f32"):
        if precision_hint not in PRECISION_HINTS:
            raise ValueError(f"OpenVINO precision hint must be one of {PRECISION_HINTS}, got {precision_hint!r}")
        ov = require_openvino()
        start = time.perf_counter()
        self.name = name
        self.shapes = [tuple(t.shape) for t in example]
        key = _weights_key(module, self.shapes, name)
        path = _cache_dir() / f"{name}_{key}.xml"
        core = ov.Core()
        self.from_cache = cache and path.is_file()
        if self.from_cache:
            model = core.read_model(str(path))
        else:
            with torch.no_grad():
                model = ov.convert_model(module, example_input=tuple(example))
            if cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.xml")
                ov.save_model(model, str(tmp), compress_to_fp16=False)
                tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
                tmp.replace(path)
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": precision_hint,  # explicit: the plugin's default depends on the CPU
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": max(1, int(threads)),
        })
        self.request = compiled.create_infer_request()
        self.ready_s = time.perf_counter() - start
        self.precision_hint = precision_hint
        LOG.info("OpenVINO %s graph %s (%s) ready in %.1f s (%s)", name, self.shapes, precision_hint, self.ready_s,
                 "from cache" if self.from_cache else "converted")

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        shapes = [tuple(t.shape) for t in inputs]
        if shapes != self.shapes:
            raise RuntimeError(f"OpenVINO {self.name} graph was compiled for inputs {self.shapes}, got {shapes}")
        feed = {i: np.ascontiguousarray(t.detach().cpu().numpy()) for i, t in enumerate(inputs)}
        result = self.request.infer(feed)
        return torch.from_numpy(np.array(result[0], copy=True))


class VisionEmbedder(nn.Module):
    """pixel_values [1, 3, H, W] in [-1, 1] -> image tokens [1, N, text_hidden]: what embed_image computes."""

    def __init__(self, vision_model: nn.Module, connector: nn.Module):
        super().__init__()
        self.vision_model, self.connector = vision_model, connector

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.vision_model(pixel_values=pixel_values, patch_attention_mask=None).last_hidden_state
        return self.connector(hidden)


class DenoiseStep(nn.Module):
    """One flow-matching step with the KV cache flattened into inputs (keys, values of layer 0, 1, ...)."""

    def __init__(self, flow_model: nn.Module, num_layers: int):
        super().__init__()
        self.flow_model, self.num_layers = flow_model, num_layers

    def forward(self, x_t, timestep, prefix_pad_masks, *kv):
        cache = {i: {"key_states": kv[2 * i], "value_states": kv[2 * i + 1]} for i in range(self.num_layers)}
        step = type(self.flow_model).denoise_step  # the class's, never an instance override
        return step(self.flow_model, prefix_pad_masks=prefix_pad_masks, past_key_values=cache, x_t=x_t,
                    timestep=timestep)


def max_prefix_length(policy: nn.Module, image_tokens: int) -> int:
    """The longest prefix SmolVLA can build: per camera its image tokens (+2 special tokens when used), the
    tokenizer's max length, the state token; at least ``prefix_length`` when the config pads to it."""
    cfg = policy.config
    cameras = len(cfg.image_features) + int(getattr(cfg, "empty_cameras", 0))
    per_camera = image_tokens + (2 if getattr(cfg, "add_image_special_tokens", False) else 0)
    return max(cameras * per_camera + int(cfg.tokenizer_max_length) + 1, int(getattr(cfg, "prefix_length", -1)))


class OpenVinoPolicyParts:
    """The OpenVINO graphs installed into one SmolVLA policy, with their load figures."""

    def __init__(self) -> None:
        self.vision: OpenVinoGraph | None = None
        self.expert: OpenVinoGraph | None = None
        self.max_prefix = 0
        self.torch_fallback_steps = 0

    @property
    def ready_s(self) -> float:
        return sum(g.ready_s for g in (self.vision, self.expert) if g is not None)


def install_openvino(policy: nn.Module, *, threads: int | None = None, cache: bool = True,
                     parts: Sequence[str] = ("vision", "expert"), precision_hint: str = "f32",
                     prefix_dtype: torch.dtype | None = None, torch_threads: int | None = 1) -> OpenVinoPolicyParts:
    """Run ``policy``'s vision stage and flow-matching step in OpenVINO (see the module docstring).

    ``precision_hint``: the graphs' inference precision (f32 or bf16). ``prefix_dtype``: cast the VLM's text
    model (the prefix pass, still torch) to this dtype after the graphs are traced in float32.
    ``torch_threads``: torch's intra-op threads afterwards (process-wide; None = leave them), 1 by default: the
    graphs get torch's thread count, and two thread pools on the same cores fight (measured on 2 cores: the
    torch prefix pass 0.94-3.2 s with torch at 2 threads beside OpenVINO's, 0.14-0.16 s at 1 thread).

    The image shape comes from the policy's ``resize_imgs_with_padding`` (width, height); a policy without it
    feeds images at the camera's size, unknown here, so it is refused.
    """
    model = getattr(policy, "model", None)
    vwe = getattr(model, "vlm_with_expert", None)
    if vwe is None:
        raise TypeError(f"{type(policy).__name__} is not a SmolVLA policy (no model.vlm_with_expert)")
    unknown = set(parts) - {"vision", "expert"}
    if unknown:
        raise ValueError(f"unknown OpenVINO parts {sorted(unknown)}; choose from vision, expert")
    resize = getattr(policy.config, "resize_imgs_with_padding", None)
    if not resize:
        raise ValueError("precision 'openvino' needs a policy with resize_imgs_with_padding (a fixed image size)")
    threads = threads or torch.get_num_threads()
    if precision_hint == "bf16" and not cpu_has_amx_bf16():
        LOG.warning("OpenVINO bf16 on a CPU without AMX bf16: expect it slower than f32 (see openvino_export)")
    width, height = int(resize[0]), int(resize[1])
    vlm = vwe.get_vlm_model()
    text_model = vlm.text_model
    out = OpenVinoPolicyParts()
    image = torch.zeros((1, 3, height, width))
    with torch.no_grad():
        image_tokens = vwe.embed_image(image).shape[1]

    if "expert" in parts:
        cfg = policy.config
        out.max_prefix = max_prefix_length(policy, image_tokens)
        text_cfg = vlm.text_model.config
        kv_heads, head_dim = int(text_cfg.num_key_value_heads), int(text_cfg.head_dim)
        layers = vwe.num_vlm_layers
        example = [torch.zeros((1, cfg.chunk_size, cfg.max_action_dim)), torch.ones(1),
                   torch.ones((1, out.max_prefix), dtype=torch.bool)]
        example += [torch.zeros((1, out.max_prefix, kv_heads, head_dim))] * (2 * layers)
        step_module = DenoiseStep(model, layers).eval()
        out.expert = OpenVinoGraph(step_module, example, name="expert", threads=threads, cache=cache,
                                   precision_hint=precision_hint)
        expert_graph, torch_step = out.expert, model.denoise_step
        padded: dict = {}  # the padded prefix (mask + KV cache) of the current chunk: padded once, used num_steps times

        def denoise_step(prefix_pad_masks, past_key_values, x_t, timestep):
            length = prefix_pad_masks.shape[1]
            if x_t.shape[0] != 1 or length > out.max_prefix:
                out.torch_fallback_steps += 1
                return torch_step(prefix_pad_masks=prefix_pad_masks, past_key_values=past_key_values, x_t=x_t,
                                  timestep=timestep)
            if padded.get("source") is not past_key_values:  # a new chunk's cache (kept alive by the caller)
                pad = out.max_prefix - length
                kv = []
                for i in range(layers):
                    for name in ("key_states", "value_states"):
                        kv.append(torch.nn.functional.pad(past_key_values[i][name].float(), (0, 0, 0, 0, 0, pad)))
                padded.update(source=past_key_values, kv=kv,
                              mask=torch.nn.functional.pad(prefix_pad_masks, (0, pad), value=False))
            return expert_graph(x_t.float(), timestep.float(), padded["mask"], *padded["kv"]).to(x_t.device)

        object.__setattr__(model, "denoise_step", denoise_step)

    if "vision" in parts:
        embedder = VisionEmbedder(vlm.vision_model, vlm.connector).eval()
        out.vision = OpenVinoGraph(embedder, [image], name="vision", threads=threads, cache=cache,
                                   precision_hint=precision_hint)
        embedder.to("meta")  # the graph holds its own copy of the weights
        vision_graph = out.vision

        def embed_image(pixels: torch.Tensor) -> torch.Tensor:
            tokens = [vision_graph(single.float()) for single in pixels.split(1, dim=0)]  # the graph has batch 1
            dtype = text_model.get_input_embeddings().weight.dtype  # the prefix is concatenated in this dtype
            return torch.cat(tokens, dim=0).to(device=pixels.device, dtype=dtype)

        object.__setattr__(vwe, "embed_image", embed_image)
    if prefix_dtype is not None:
        text_model.to(prefix_dtype)
    if torch_threads is not None:
        torch.set_num_threads(max(1, int(torch_threads)))
    object.__setattr__(policy, "openvino_parts", out)
    return out
