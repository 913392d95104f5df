"""Precision recorded with a checkpoint (``roarm-vla-train export``) and the ``mixed`` mode.

ROS-free. ``roarm-vla-train export --precision MODE`` writes ``{"precision": {"mode": MODE, ...}}`` into the
checkpoint's ``roarm_vla_meta.json``; the policy node's ``precision: auto`` applies that mode at load (fp32 when
nothing is recorded). The uniform modes are ``precision.apply_precision``'s; this module adds ``mixed``, the
per-part recipe of the seed notes ("keep the action head in higher precision, the early layers lower"):

- the vision encoder and connector (early layers, most of the compute at 512 px): int8 on the CPU (dynamic
  quantization), int4 weight-only on a GPU;
- the VLM's text-layer MLPs: int8 (dynamic on the CPU, weight-only on a GPU);
- the action expert and the action/state projections (the action head): float32, untouched.

A recorded ``plan`` ({part: fp32|int8|int4}, parts ``vision_model``, ``connector``, ``text_mlp``, ``expert_mlp``)
overrides the default plan, so an export can keep a sensitive part in float32.
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from .precision import (
    FP32_PROJECTIONS,
    PRECISION_MODES,
    PrecisionReport,
    WeightOnlyQuantLinear,
    _replace_linears,
    apply_precision,
    check_mode,
    quantizable_modules,
)

RECORDED_MODES = PRECISION_MODES + ("mixed",)
LOAD_MODES = RECORDED_MODES + ("auto",)
PARTS = ("vision_model", "connector", "text_mlp", "expert_mlp")
PART_MODES = ("fp32", "int8", "int4")


def default_mixed_plan(device: str) -> dict[str, str]:
    on_gpu = str(device).startswith("cuda")
    early = "int4" if on_gpu else "int8"
    return {"vision_model": early, "connector": early, "text_mlp": "int8", "expert_mlp": "fp32"}


def part_of(module_name: str) -> str:
    """The plan part of a name from ``precision.quantizable_modules``."""
    if module_name.startswith("text_model."):
        return "text_mlp"
    if module_name.startswith("lm_expert."):
        return "expert_mlp"
    return module_name


def recorded_precision(meta: Mapping) -> tuple[str, dict]:
    """(mode, record) from a checkpoint's roarm_vla_meta.json; ("fp32", {}) when nothing is recorded."""
    record = meta.get("precision") if meta else None
    if record is None:
        return "fp32", {}
    if isinstance(record, str):
        record = {"mode": record}
    mode = str(record.get("mode", "fp32")).lower()
    if mode not in RECORDED_MODES:
        raise ValueError(f"roarm_vla_meta.json records precision {mode!r}; known: {list(RECORDED_MODES)}")
    return mode, dict(record)


def check_load_mode(mode: str, device: str) -> str:
    """Validate a load-time precision (the uniform modes, ``mixed`` or ``auto``); raises ValueError saying why."""
    mode = str(mode).strip().lower()
    if mode in ("auto", "mixed"):
        return mode
    return check_mode(mode, device)


def apply_mixed(policy: nn.Module, device: str = "cpu", plan: Mapping[str, str] | None = None) -> PrecisionReport:
    """Quantize ``policy`` (a SmolVLA policy on ``device``) in place, part by part (see the module docstring)."""
    import warnings

    import torch

    on_gpu = str(device).startswith("cuda")
    full_plan = default_mixed_plan(device)
    full_plan.update(plan or {})
    unknown = {k: v for k, v in full_plan.items() if k not in PARTS or v not in PART_MODES}
    if unknown:
        raise ValueError(f"mixed precision plan has unknown parts or modes {unknown}; parts {list(PARTS)}, "
                         f"modes {list(PART_MODES)}")
    policy.eval()
    converted: list[str] = []
    for name, module in quantizable_modules(policy):
        mode = full_plan[part_of(name)]
        if mode == "fp32":
            continue
        if mode == "int8" and not on_gpu:
            with warnings.catch_warnings():  # torch flags torch.ao as deprecated (torchao is not installed)
                warnings.simplefilter("ignore", DeprecationWarning)
                from torch.ao.quantization import quantize_dynamic

                quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
        else:
            bits = 8 if mode == "int8" else 4
            compute = torch.bfloat16 if on_gpu else None
            _replace_linears(module, lambda lin: WeightOnlyQuantLinear(lin, bits, compute_dtype=compute).to(device))
        converted.append(f"{name}:{mode}")
    for name in FP32_PROJECTIONS:
        getattr(policy.model, name).to(torch.float32)
    return PrecisionReport(mode="mixed", device=str(device), converted=converted, kept_fp32=list(FP32_PROJECTIONS))


def apply_load_precision(policy: nn.Module, mode: str, device: str, meta: Mapping | None = None) -> PrecisionReport:
    """What the runtime applies at load: ``auto`` -> the recorded mode (and plan), else ``mode`` itself."""
    mode = check_load_mode(mode, device)
    record: dict = {}
    if mode == "auto":
        mode, record = recorded_precision(meta or {})
        if mode != "mixed":
            check_mode(mode, device)
    elif mode == "mixed":
        _, record = recorded_precision(meta or {})
    if mode == "mixed":
        return apply_mixed(policy, device, record.get("plan"))
    return apply_precision(policy, mode, device)
