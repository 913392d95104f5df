"""Build SmolVLA checkpoints offline: a tiny one for tests and demos, a full-size one for benchmarks.

ROS-free. SmolVLA always reads its VLM's config, processor and tokenizer from ``vlm_model_name`` (a hub id by
default, which fails offline). These helpers write a local VLM folder with transformers' own SmolVLM classes and a
byte-level BPE tokenizer from ``tokenizers`` (no hub access), then build a SmolVLA policy with random weights on top
of it and save it exactly like ``lerobot-train`` saves ``checkpoints/<step>/pretrained_model``: the policy's
``config.json`` + ``model.safetensors`` and LeRobot's pre/post-processor pipelines (normalization stats included).
The runtime then loads these folders through the same code path as a real fine-tuned checkpoint.

Public API (also used by training and the demo):
- ``build_tiny_vlm(folder) -> Path``
- ``build_full_size_vlm(folder) -> Path``
- ``build_tiny_checkpoint(out_dir, state_dim=6, camera_key=..., stats=None, chunk_size=10, ...) -> Path``
- ``build_full_size_checkpoint(out_dir, ...) -> Path``
- ``default_stats(state_dim)``: mean/std/min/max stats around the arm's home pose, in radians.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

# Written next to the policy files: what the runtime needs to know that LeRobot's config does not carry.
from vla_policy_node.policy_runtime import ROARM_META_FILENAME

DEFAULT_CAMERA_KEY = "observation.images.top"

# Special tokens SmolVLA / SmolVLMProcessor read by attribute from the tokenizer (`extra_special_tokens`).
_EXTRA_SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
}
_PAD_TOKEN = "<|endoftext|>"
_BOS_TOKEN = "<|im_start|>"

# Sizes. Tiny: trains in seconds on a CPU (environment notes). Full: SmolVLM2-500M-Video-Instruct's numbers.
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=512, rope_theta=100000.0)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   image_size=64, patch_size=8)
TINY_SCALE_FACTOR = 2
FULL_TEXT = dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                 num_key_value_heads=5, head_dim=64, vocab_size=49280, rope_theta=100000.0)
FULL_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   image_size=512, patch_size=16)
FULL_SCALE_FACTOR = 4


def _train_bpe_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer (``tokenizers``) wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [_PAD_TOKEN, _BOS_TOKEN, *_EXTRA_SPECIAL_TOKENS.values()]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        "Pick up the white box and place it in the tray.",
        "pick up the red cube", "move the arm to the left", "open the gripper", "close the gripper",
        "grasp the object on the table", "put the block in the bowl", "push the button", "stack the cubes",
        "User: Assistant: <row_1_col_1> the a an of to in on and with from",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 400),  # the embedding table may be larger than the tokenizer's vocabulary
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token=_PAD_TOKEN,
        bos_token=_BOS_TOKEN,
        eos_token="<end_of_utterance>",
        extra_special_tokens=dict(_EXTRA_SPECIAL_TOKENS),
        model_max_length=8192,
    )
    return tokenizer


def build_vlm_folder(folder: str | Path, text: Mapping[str, Any], vision: Mapping[str, Any],
                     scale_factor: int) -> Path:
    """Write config.json, tokenizer files, preprocessor_config.json of a SmolVLM with the given sizes."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_bpe_tokenizer(int(text["vocab_size"]))
    image_token_id = tokenizer.convert_tokens_to_ids(_EXTRA_SPECIAL_TOKENS["image_token"])
    text_config = dict(text)
    text_config.update(model_type="llama", max_position_embeddings=8192, pad_token_id=tokenizer.pad_token_id,
                       tie_word_embeddings=False)
    vision_config = dict(vision)
    vision_config.update(model_type="smolvlm_vision")
    config = SmolVLMConfig(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=scale_factor,
        image_token_id=image_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.save_pretrained(folder)
    size = {"longest_edge": int(vision["image_size"])}
    image_processor = SmolVLMImageProcessor(
        do_image_splitting=False, size=size, max_image_size=size, do_resize=True
    )
    video_processor = SmolVLMVideoProcessor(size=size, max_image_size=size)
    image_seq_len = (int(vision["image_size"]) // int(vision["patch_size"])) ** 2 // scale_factor**2
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=image_seq_len,
    )
    processor.save_pretrained(folder)
    return folder


def build_tiny_vlm(folder: str | Path) -> Path:
    """A tiny SmolVLM folder (text hidden 64 x 4 layers, vision hidden 32 x 2 layers, 64 px images)."""
    return build_vlm_folder(folder, TINY_TEXT, TINY_VISION, TINY_SCALE_FACTOR)


def build_full_size_vlm(folder: str | Path) -> Path:
    """A SmolVLM2-500M-sized VLM folder (config + processor + tokenizer only, no weights)."""
    return build_vlm_folder(folder, FULL_TEXT, FULL_VISION, FULL_SCALE_FACTOR)


def default_stats(state_dim: int = 6, spread: float = 0.5) -> dict[str, dict[str, np.ndarray]]:
    """Normalization stats around the arm's home pose (radians): what a dataset's meta/stats.json would hold."""
    from roarm_description.joints import HOME_POSITIONS

    home = np.zeros(state_dim)
    home[: min(state_dim, len(HOME_POSITIONS))] = HOME_POSITIONS[:state_dim]
    mean = home.astype(np.float32)
    std = np.full(state_dim, spread, dtype=np.float32)
    one = {"mean": mean, "std": std, "min": mean - 3 * std, "max": mean + 3 * std}
    return {"observation.state": dict(one), "action": dict(one)}


def _as_tensor_stats(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    import torch

    return {
        key: {name: torch.as_tensor(np.asarray(value, dtype=np.float32)) for name, value in entry.items()}
        for key, entry in stats.items()
    }


def build_checkpoint(
    out_dir: str | Path,
    vlm_folder: str | Path,
    *,
    state_dim: int = 6,
    action_dim: int | None = None,
    camera_key: str = DEFAULT_CAMERA_KEY,
    image_shape: tuple[int, int, int] = (3, 64, 64),
    stats: Mapping[str, Mapping[str, Any]] | None = None,
    chunk_size: int = 10,
    resize_imgs_with_padding: tuple[int, int] = (64, 64),
    num_vlm_layers: int = 4,
    num_steps: int = 10,
    fps: float = 30.0,
    joint_units: str = "radians",
    seed: int = 0,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Build a SmolVLA policy with random weights on ``vlm_folder`` and save it as a ``pretrained_model`` folder.

    ``stats``: {"observation.state": {"mean", "std", ...}, "action": {...}} (arrays of length state_dim /
    action_dim); defaults to :func:`default_stats`. ``fps`` and ``joint_units`` go to ``roarm_vla_meta.json``
    (the runtime reads them to time the chunk's steps and to convert units).
    """
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    if joint_units not in ("radians", "degrees"):
        raise ValueError(f"joint_units must be 'radians' or 'degrees', got {joint_units!r}")
    action_dim = state_dim if action_dim is None else action_dim
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if stats is None:
        stats = default_stats(state_dim)
        if action_dim != state_dim:
            stats["action"] = default_stats(action_dim)["action"]
    config = SmolVLAConfig(
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
            camera_key: PolicyFeature(type=FeatureType.VISUAL, shape=tuple(image_shape)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        vlm_model_name=str(Path(vlm_folder).resolve()),
        load_vlm_weights=False,
        resize_imgs_with_padding=tuple(resize_imgs_with_padding),
        num_vlm_layers=num_vlm_layers,
        num_steps=num_steps,
        device="cpu",
        push_to_hub=False,
        **dict(extra_config or {}),
    )
    torch.manual_seed(seed)
    policy = SmolVLAPolicy(config)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=_as_tensor_stats(stats))
    policy.save_pretrained(out_dir)
    preprocessor.save_pretrained(out_dir)
    postprocessor.save_pretrained(out_dir)
    from roarm_description.joints import JOINT_NAMES

    # the keys a training run writes (roarm_training.train.DatasetSpec.meta), so the runtime reads one format
    meta = {"joint_names": list(JOINT_NAMES)[:state_dim], "joint_units": joint_units,
            "image_key": camera_key, "image_size": list(image_shape[1:]), "fps": float(fps)}
    (out_dir / ROARM_META_FILENAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def build_tiny_checkpoint(
    out_dir: str | Path,
    state_dim: int = 6,
    camera_key: str = DEFAULT_CAMERA_KEY,
    stats: Mapping[str, Mapping[str, Any]] | None = None,
    chunk_size: int = 10,
    *,
    vlm_folder: str | Path | None = None,
    fps: float = 30.0,
    joint_units: str = "radians",
    seed: int = 0,
) -> Path:
    """A tiny random SmolVLA (about 0.4 M parameters, 64x64 images) saved as a ``pretrained_model`` folder.

    The VLM folder goes to ``<out_dir>/vlm`` unless ``vlm_folder`` is given (built there when it is missing).
    Returns ``out_dir``: load it with :class:`vla_policy_node.policy_runtime.PolicyRuntime` or LeRobot's
    ``SmolVLAPolicy.from_pretrained`` + ``make_pre_post_processors(cfg, pretrained_path=out_dir)``.
    """
    out_dir = Path(out_dir)
    vlm = Path(vlm_folder) if vlm_folder is not None else out_dir / "vlm"
    if not (vlm / "config.json").exists():
        build_tiny_vlm(vlm)
    return build_checkpoint(
        out_dir, vlm, state_dim=state_dim, camera_key=camera_key, image_shape=(3, 64, 64), stats=stats,
        chunk_size=chunk_size, resize_imgs_with_padding=(64, 64), num_vlm_layers=TINY_TEXT["num_hidden_layers"],
        fps=fps, joint_units=joint_units, seed=seed,
    )


def build_full_size_checkpoint(
    out_dir: str | Path,
    state_dim: int = 6,
    camera_key: str = DEFAULT_CAMERA_KEY,
    stats: Mapping[str, Mapping[str, Any]] | None = None,
    chunk_size: int = 50,
    *,
    vlm_folder: str | Path | None = None,
    image_size: int = 512,
    fps: float = 30.0,
    seed: int = 0,
) -> Path:
    """A SmolVLA with smolvla_base's architecture (about 450 M parameters, random weights), saved offline.

    Slow (tens of seconds, about 2 GB on disk): for benchmarks. ``image_size`` sets the policy's
    ``resize_imgs_with_padding`` (512 = as smolvla_base; 256 = a cheaper variant).
    """
    out_dir = Path(out_dir)
    vlm = Path(vlm_folder) if vlm_folder is not None else out_dir / "vlm"
    if not (vlm / "config.json").exists():
        build_full_size_vlm(vlm)
    return build_checkpoint(
        out_dir, vlm, state_dim=state_dim, camera_key=camera_key, image_shape=(3, 480, 640), stats=stats,
        chunk_size=chunk_size, resize_imgs_with_padding=(image_size, image_size), num_vlm_layers=16,
        fps=fps, seed=seed,
    )
