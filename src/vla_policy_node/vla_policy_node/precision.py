"""Precision modes for a SmolVLA policy, applied per submodule (mixed precision).

ROS-free. What is converted and what is not (and why):
- Converted ("heavy" parts, about 90 % of the compute): the SigLIP vision encoder, the connector, the VLM's text
  layers and the action expert's layers.
- Kept in float32, always: ``state_proj``, ``action_in_proj``, ``action_out_proj``, ``action_time_mlp_in/out``.
  SmolVLA feeds them float32 tensors (state, noisy actions, the ``.to(float32)`` before ``action_out_proj``);
  casting the whole policy to bf16 fails there.
- Quantized modes (int8, int4) leave the attention projections ``q/k/v/o_proj`` of the text model and of the
  expert alone: ``SmolVLMWithExpertModel`` reads ``self_attn.q_proj.weight.dtype`` (and k/v/o) to cast its
  inputs, which a quantized module does not have as a tensor. They quantize the vision encoder's and connector's
  Linear layers and the MLPs of the text model and the expert.

Modes:
- ``fp32``: nothing changes.
- ``bf16``: vision + connector + text layers + expert in bfloat16 (CPU or GPU).
- ``fp16``: the same in float16 (GPU only: CPU float16 matmuls are slow or missing).
- ``int8``: CPU -> ``torch.ao.quantization.quantize_dynamic`` (int8 weights, int8 activations quantized on the
  fly) on the selected Linear layers; GPU -> weight-only int8 (per output channel) with compute in bf16.
- ``int4``: weight-only int4 (groups of 64 along the input, per-group scale), GPU (dequantized per call in
  bf16); on CPU it runs but is slow (it saves memory, not time).
- ``openvino``: CPU only, optional package: the vision encoder + connector and the flow-matching step run as
  OpenVINO float32 graphs (``openvino_export``), the prefix pass stays float32 torch. Refused with the install
  command when OpenVINO is missing.
- ``openvino_bf16``: the same graphs with OpenVINO's bf16 inference hint and the prefix pass's text layers in
  torch bfloat16: for CPUs with AMX (fast bf16 tiles); slower than ``openvino`` without AMX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

PRECISION_MODES = ("fp32", "bf16", "fp16", "int8", "int4", "openvino", "openvino_bf16")
# Modes that need an optional package (checked by check_mode, so start-up fails with a clear message).
OPTIONAL_RUNTIME_MODES = ("openvino", "openvino_bf16")
# Submodules of SmolVLA's VLAFlowMatching (policy.model) that must stay float32.
FP32_PROJECTIONS = ("state_proj", "action_in_proj", "action_out_proj", "action_time_mlp_in", "action_time_mlp_out")


def _vlm_with_expert(policy: nn.Module) -> nn.Module:
    model = getattr(policy, "model", None)
    vwe = getattr(model, "vlm_with_expert", None)
    if vwe is None:
        raise TypeError(f"{type(policy).__name__} is not a SmolVLA policy (no model.vlm_with_expert)")
    return vwe


def quantizable_modules(policy: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the parents whose Linear layers may be quantized: vision, connector, MLPs."""
    vwe = _vlm_with_expert(policy)
    vlm = vwe.get_vlm_model()
    parts: list[tuple[str, nn.Module]] = [("vision_model", vlm.vision_model), ("connector", vlm.connector)]
    for i, layer in enumerate(vlm.text_model.layers):
        parts.append((f"text_model.layers.{i}.mlp", layer.mlp))
    for i, layer in enumerate(vwe.lm_expert.layers):
        parts.append((f"lm_expert.layers.{i}.mlp", layer.mlp))
    return parts


def half_precision_modules(policy: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) cast as a whole in bf16/fp16: the VLM (vision, connector, text) and the expert."""
    vwe = _vlm_with_expert(policy)
    return [("vlm", vwe.vlm), ("lm_expert", vwe.lm_expert)]


class WeightOnlyQuantLinear(nn.Module):
    """A Linear whose weight is stored as int8 (per output row) or int4 (per group of ``group_size`` inputs).

    The weight is dequantized into the input's dtype at every call: it saves memory (and bandwidth on GPU), the
    matmul itself runs in the activation dtype.
    """

    def __init__(self, linear: nn.Linear, bits: int, group_size: int = 64, compute_dtype: torch.dtype | None = None):
        super().__init__()
        if bits not in (8, 4):
            raise ValueError(f"bits must be 8 or 4, got {bits}")
        self.in_features, self.out_features, self.bits = linear.in_features, linear.out_features, bits
        self.compute_dtype = compute_dtype
        weight = linear.weight.detach().float()
        if bits == 8:
            scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
            self.register_buffer("qweight", torch.round(weight / scale).clamp(-127, 127).to(torch.int8))
            self.register_buffer("scale", scale)
            self.group_size = self.in_features
        else:
            group = group_size if self.in_features % group_size == 0 else self.in_features
            self.group_size = group
            grouped = weight.reshape(self.out_features, self.in_features // group, group)
            scale = grouped.abs().amax(dim=2, keepdim=True).clamp(min=1e-8) / 7.0
            q = (torch.round(grouped / scale).clamp(-8, 7) + 8).to(torch.uint8).reshape(self.out_features, -1)
            if q.shape[1] % 2:
                raise ValueError("int4 packing needs an even number of input features")
            self.register_buffer("qweight", (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous())
            self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        if self.bits == 8:
            return (self.qweight.to(dtype) * self.scale.to(dtype))
        low = (self.qweight & 0x0F).to(torch.int16) - 8
        high = (self.qweight >> 4).to(torch.int16) - 8
        q = torch.stack((low, high), dim=2).reshape(self.out_features, -1)
        grouped = q.reshape(self.out_features, self.in_features // self.group_size, self.group_size).to(dtype)
        return (grouped * self.scale.to(dtype)).reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.compute_dtype or x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        return F.linear(x.to(dtype), self.dequantized_weight(dtype), bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, group={self.group_size}"


def _replace_linears(parent: nn.Module, factory) -> int:
    count = 0
    for name, child in list(parent.named_children()):
        if isinstance(child, nn.Linear):
            setattr(parent, name, factory(child))
            count += 1
        else:
            count += _replace_linears(child, factory)
    return count


@dataclass
class PrecisionReport:
    mode: str
    device: str
    converted: list[str]  # which submodules were converted
    kept_fp32: list[str]


def check_mode(mode: str, device: str) -> str:
    """Validate a mode for a device; returns the normalised mode or raises ValueError saying why not."""
    mode = str(mode).strip().lower()
    if mode not in PRECISION_MODES:
        raise ValueError(f"unknown precision {mode!r}; choose one of {list(PRECISION_MODES)}")
    on_gpu = str(device).startswith("cuda")
    if mode == "fp16" and not on_gpu:
        raise ValueError("precision fp16 needs a CUDA device (CPU float16 matmuls are slow or unsupported); "
                         "use bf16 or int8 on the CPU")
    if mode in OPTIONAL_RUNTIME_MODES:
        if on_gpu:
            raise ValueError("precision openvino runs the vision encoder on the CPU; on a GPU use bf16 or fp16")
        from .openvino_export import MissingRuntimeError, require_openvino

        try:
            require_openvino()
        except MissingRuntimeError as exc:
            raise ValueError(str(exc)) from exc
    return mode


def apply_precision(policy: nn.Module, mode: str, device: str = "cpu") -> PrecisionReport:
    """Convert ``policy`` (a SmolVLAPolicy already on ``device``) in place to ``mode``; see the module docstring."""
    mode = check_mode(mode, device)
    on_gpu = str(device).startswith("cuda")
    policy.eval()
    converted: list[str] = []
    if mode in ("bf16", "fp16"):
        dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        for name, module in half_precision_modules(policy):
            module.to(dtype)
            converted.append(name)
    elif mode == "int8" and not on_gpu:
        import warnings

        with warnings.catch_warnings():  # torch 2.10 flags torch.ao as deprecated (torchao is not installed)
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.ao.quantization import quantize_dynamic

            for name, module in quantizable_modules(policy):
                quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
                converted.append(name)
    elif mode in OPTIONAL_RUNTIME_MODES:
        from .openvino_export import install_openvino

        bf16 = mode == "openvino_bf16"
        install_openvino(policy, precision_hint="bf16" if bf16 else "f32",
                         prefix_dtype=torch.bfloat16 if bf16 else None)
        hint = "bf16" if bf16 else "f32"
        converted += [f"vision_model+connector (OpenVINO {hint})", f"flow-matching step (OpenVINO {hint})"]
        if bf16:
            converted.append("text_model (bf16, prefix pass)")
    elif mode in ("int8", "int4"):
        bits = 8 if mode == "int8" else 4
        compute = torch.bfloat16 if on_gpu else None
        for name, module in quantizable_modules(policy):
            _replace_linears(module, lambda lin: WeightOnlyQuantLinear(lin, bits, compute_dtype=compute).to(device))
            converted.append(name)
    model = policy.model
    for name in FP32_PROJECTIONS:
        getattr(model, name).to(torch.float32)
    return PrecisionReport(mode=mode, device=str(device), converted=converted, kept_fp32=list(FP32_PROJECTIONS))


def parameter_bytes(module: nn.Module) -> int:
    """Bytes held by parameters and buffers (quantized packed weights included)."""
    total = sum(p.numel() * p.element_size() for p in module.parameters())
    total += sum(b.numel() * b.element_size() for b in module.buffers())
    for sub in module.modules():  # dynamic-quantized Linear keeps its packed weight outside parameters()
        packed = getattr(sub, "_packed_params", None)
        if packed is not None:
            try:
                weight, _ = packed._weight_bias()
                total += weight.numel() * weight.element_size()
            except Exception:  # noqa: BLE001 - a size estimate only
                pass
    return total


def modes_for_device(device: str, modes: Iterable[str] = PRECISION_MODES) -> list[str]:
    """The modes that make sense on ``device`` (fp16 needs a GPU; int4 weight-only is meant for a GPU; openvino
    is a CPU mode, listed when the package is installed)."""
    on_gpu = str(device).startswith("cuda")
    out = [m for m in modes if (on_gpu or m not in ("fp16", "int4")) and not (on_gpu and m in OPTIONAL_RUNTIME_MODES)]
    if any(m in OPTIONAL_RUNTIME_MODES for m in out):
        from .openvino_export import openvino_available

        if not openvino_available():
            out = [m for m in out if m not in OPTIONAL_RUNTIME_MODES]
    return out
