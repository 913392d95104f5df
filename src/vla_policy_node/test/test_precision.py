"""Weight-only quantized Linear (the GPU int8/int4 path, checked here on the CPU) and mode validation."""

import pytest
import torch
from torch import nn

from vla_policy_node.precision import WeightOnlyQuantLinear, check_mode, modes_for_device


@pytest.mark.parametrize("bits, tolerance", [(8, 0.01), (4, 0.15)])
def test_weight_only_linear_matches_float_linear(bits, tolerance):
    torch.manual_seed(0)
    linear = nn.Linear(128, 64)
    quantized = WeightOnlyQuantLinear(linear, bits=bits, group_size=64)
    x = torch.randn(3, 7, 128)
    reference = linear(x)
    out = quantized(x)
    assert out.shape == reference.shape and out.dtype == x.dtype
    relative = (out - reference).norm() / reference.norm()
    assert 0 < relative < tolerance  # quantized (not identical), yet close
    # Storage: int8 = 1 byte per weight; int4 = two weights per byte.
    assert quantized.qweight.numel() == 128 * 64 // (1 if bits == 8 else 2)
    # Dequantized weights stay within half a quantization step of the originals.
    step = quantized.scale.max().item()
    assert (quantized.dequantized_weight(torch.float32) - linear.weight).abs().max().item() <= step / 2 + 1e-6


def test_bf16_compute_dtype_keeps_the_callers_dtype():
    linear = nn.Linear(64, 32)
    quantized = WeightOnlyQuantLinear(linear, bits=8, compute_dtype=torch.bfloat16)
    x = torch.randn(2, 64)
    assert quantized(x).dtype == torch.float32
    assert torch.allclose(quantized(x), linear(x), atol=0.05, rtol=0.05)


def test_mode_validation():
    assert check_mode(" BF16 ", "cpu") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        check_mode("int2", "cpu")
    with pytest.raises(ValueError, match="CUDA"):
        check_mode("fp16", "cpu")
    assert check_mode("fp16", "cuda") == "fp16"
    from vla_policy_node.openvino_export import openvino_available

    optional = ["openvino", "openvino_bf16"] if openvino_available() else []
    assert modes_for_device("cpu") == ["fp32", "bf16", "int8"] + optional
    assert modes_for_device("cuda:0") == ["fp32", "bf16", "fp16", "int8", "int4"]
