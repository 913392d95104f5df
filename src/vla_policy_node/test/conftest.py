"""Session fixtures: ONE tiny offline SmolVLA checkpoint (and a NaN-weights twin) per test session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    from roarm_training.small_smolvla import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_vlm) -> Path:
    """A random tiny SmolVLA saved like lerobot-train's pretrained_model (chunk 10, 64x64, radians)."""
    from roarm_training.small_smolvla import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"), vlm_folder=tiny_vlm)


@pytest.fixture(scope="session")
def nan_checkpoint(tmp_path_factory, tiny_vlm) -> Path:
    """The tiny checkpoint with the action output projection's weights set to NaN in model.safetensors."""
    import torch
    from safetensors.torch import load_file, save_file

    from roarm_training.small_smolvla import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path_factory.mktemp("nan_ckpt"), vlm_folder=tiny_vlm)
    weights = load_file(str(path / "model.safetensors"))
    key = "model.action_out_proj.weight"
    assert key in weights, sorted(weights)[:20]
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, str(path / "model.safetensors"))
    return path
