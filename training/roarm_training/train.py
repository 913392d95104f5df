"""`roarm-vla-train fit`: fine-tune a LeRobot policy on a RoArm-M3 dataset with LeRobot's own trainer.

The training loop is ``lerobot.scripts.lerobot_train.train`` with a ``TrainPipelineConfig`` built here; nothing in
this module computes a loss or steps an optimizer. What this module adds, all before the first step:

- defaults for this arm: start from a pretrained SmolVLA (``lerobot/smolvla_base``, or a local folder), LeRobot's
  recipe (batch 64, AdamW + cosine decay with warm-up from the policy's preset, auto-scaled to the run's length),
  normalization from the dataset's stats (LeRobot's processors, fed ``dataset.meta.stats``);
- the 0.4.4 SmolVLA loss fixes (:mod:`roarm_training.lerobot_fixes`);
- guard rails (:func:`check_setup`): stats missing, feature names / shapes / joint units that do not match the
  policy, a random action expert without ``--allow-random-expert``, a from-scratch SmolVLA whose random VLM would
  stay frozen (unfrozen automatically, and said), batch size below 8 (warning);
- an episode split (never by frame) saved as ``episode_split.json`` in the output folder, so ``eval`` uses the
  held-out episodes by default;
- LoRA through LeRobot's PEFT support (``--lora-rank``), resumable, mergeable (:func:`merge_lora`);
- ``roarm_vla_meta.json`` (joint names, units, image key and size, fps) written into every saved
  ``pretrained_model``, so the policy node builds the observation the policy was trained on;
- ``train_log.jsonl`` (step, loss, lr, grad norm per step; the eval report's loss curve), optionally TensorBoard.

Two hooks inside LeRobot's trainer module make the last two possible: ``update_policy`` and ``save_checkpoint`` are
wrapped (call the original, then log / write the metadata) for the duration of one ``fit`` only.

Multi-GPU / multi-node: ``accelerate launch [--multi_gpu --num_processes N ...] $(which roarm-vla-train) fit ...``;
LeRobot's trainer builds its ``Accelerator`` from the launcher's environment (see training/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from roarm_training.preflight import MIN_BATCH_SIZE, Finding, check_dataset, check_plan

LOG = logging.getLogger(__name__)

DEFAULT_POLICY = "lerobot/smolvla_base"
DEFAULT_BATCH_SIZE = 64  # LeRobot's SmolVLA fine-tuning recipe
DEFAULT_STEPS = 20_000  # idem
# The seed notes' LoRA recipe (rank 32, alpha 64, attention q/v and MLP gate/up projections, lr 1e-4).
LORA_RANK, LORA_ALPHA, LORA_LR = 32, 64, 1e-4
LORA_TARGETS = ("q_proj", "v_proj", "gate_proj", "up_proj")
SPLIT_FILENAME = "episode_split.json"
TRAIN_LOG_FILENAME = "train_log.jsonl"
DATASET_META_FILENAME = "roarm_vla.json"  # the converter's, in <dataset>/meta/
STATE_KEY, ACTION_KEY = "observation.state", "action"


class TrainSetupError(RuntimeError):
    """The run cannot start as asked (the message says why and what to change)."""


@dataclass
class FitOptions:
    dataset: Path
    output: Path
    policy_path: str | None = DEFAULT_POLICY  # hub id or folder of a pretrained policy; None with policy_type
    policy_type: str | None = None  # a fresh policy of this LeRobot type (smolvla, act, diffusion, ...)
    vlm: str | None = None  # fresh SmolVLA: the VLM (hub id or folder); None = SmolVLAConfig's default
    vlm_weights: bool | None = None  # fresh SmolVLA: load the VLM's pretrained weights (None = if it has any)
    allow_random_expert: bool = False
    steps: int = DEFAULT_STEPS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float | None = None  # None = the policy's preset (LoRA: LORA_LR)
    warmup_steps: int | None = None
    chunk_size: int | None = None
    n_action_steps: int | None = None
    lora_rank: int = 0  # 0 = full fine-tuning
    lora_alpha: int = LORA_ALPHA
    lora_targets: Sequence[str] = LORA_TARGETS
    eval_episodes: Sequence[int] | None = None
    holdout_fraction: float = 0.1
    seed: int = 1000
    num_workers: int = 2
    save_freq: int | None = None  # None = steps // 4 (and always the last step)
    log_freq: int = 100
    device: str | None = None  # None = cuda when available, else cpu
    wandb: str = "off"  # off | online | offline
    tensorboard: bool = False
    resume: bool = False
    rename_map: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # extra policy config fields (--set KEY=VALUE)


@dataclass
class DatasetSpec:
    """What the dataset says about its robot side: the observation the policy will be trained on."""
    root: Path
    joint_names: list[str]
    joint_units: str
    image_key: str
    image_size: list[int]  # [height, width]
    fps: float
    features: dict
    episodes: list[int]
    source: str  # meta/roarm_vla.json or meta/info.json
    image_crop: list[int] | None = None  # [x, y, width, height] of the camera image, before the resize

    def meta(self) -> dict:
        """The content of roarm_vla_meta.json (policy_runtime.ROARM_META_FILENAME)."""
        meta = {"joint_names": list(self.joint_names), "joint_units": self.joint_units, "image_key": self.image_key,
                "image_size": list(self.image_size), "fps": float(self.fps)}
        if self.image_crop:  # the node crops live camera images as the converter cropped the training frames
            meta["image_crop"] = list(self.image_crop)
        return meta


@dataclass
class Plan:
    """A checked run: LeRobot's config plus what the checks found and decided."""
    options: FitOptions
    spec: DatasetSpec
    train_config: Any  # lerobot TrainPipelineConfig
    train_episodes: list[int]
    eval_episodes: list[int]
    findings: list[Finding]
    notes: list[str]


# ================================================================================================ dataset
def read_dataset_spec(root: str | Path) -> DatasetSpec:
    """Joint names/units, image key/size, fps and episodes of a LeRobotDataset v3 folder."""
    root = Path(root).expanduser().resolve()
    info_file = root / "meta" / "info.json"
    if not info_file.is_file():
        raise TrainSetupError(f"{root} is not a LeRobotDataset: {info_file} is missing")
    info = json.loads(info_file.read_text())
    features = info.get("features", {})
    for key in (STATE_KEY, ACTION_KEY):
        if key not in features:
            raise TrainSetupError(f"dataset {root} has no {key!r} feature (it has {sorted(features)})")
    cameras = [k for k, f in features.items() if f.get("dtype") in ("image", "video")]
    meta_file = root / "meta" / DATASET_META_FILENAME
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    names = features[STATE_KEY].get("names")
    if isinstance(names, dict):  # LeRobot's {"motors": [...]} form
        names = next(iter(names.values()), None)
    joint_names = list(meta.get("joint_names") or names or [])
    if not joint_names:
        from roarm_description.joints import JOINT_NAMES

        joint_names = list(JOINT_NAMES)
    from vla_policy_node.observation import crop_from_meta

    image_key = meta.get("image_key") or (cameras[0] if cameras else "")
    if image_key and image_key not in cameras:
        raise TrainSetupError(f"meta/{DATASET_META_FILENAME} names image key {image_key!r}, the dataset's cameras "
                              f"are {cameras}")
    shape = features.get(image_key, {}).get("shape") or [0, 0, 3]
    image_size = list(meta.get("image_size") or shape[:2])
    episodes = list(range(int(info.get("total_episodes", 0))))
    return DatasetSpec(root=root, joint_names=joint_names, joint_units=str(meta.get("joint_units", "radians")),
                       image_key=image_key, image_size=[int(v) for v in image_size],
                       fps=float(meta.get("fps", info.get("fps", 30))), features=features, episodes=episodes,
                       source=str(meta_file if meta else info_file),
                       image_crop=[int(v) for v in crop_from_meta(meta) or ()] or None)


def split_episodes(episodes: Sequence[int], eval_episodes: Sequence[int] | None, holdout_fraction: float,
                   seed: int) -> tuple[list[int], list[int]]:
    """(train, eval) episode lists: whole episodes, never frames. Explicit ``eval_episodes`` win over the fraction.

    The fraction is rounded up to at least one episode when the dataset has two or more (0 = no held-out set).
    """
    episodes = sorted(int(e) for e in episodes)
    if eval_episodes:
        unknown = sorted(set(int(e) for e in eval_episodes) - set(episodes))
        if unknown:
            raise TrainSetupError(f"--eval-episodes {unknown} are not in the dataset (episodes 0..{len(episodes) - 1})")
        held = sorted(set(int(e) for e in eval_episodes))
    else:
        if not 0.0 <= holdout_fraction < 1.0:
            raise TrainSetupError(f"--holdout-fraction must be in [0, 1), got {holdout_fraction}")
        count = math.ceil(holdout_fraction * len(episodes)) if holdout_fraction > 0 and len(episodes) > 1 else 0
        held = sorted(random.Random(seed).sample(episodes, count))
    train = [e for e in episodes if e not in set(held)]
    if not train:
        raise TrainSetupError("no training episode left after the held-out split")
    return train, held


# ================================================================================================ policy
def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _policy_config(options: FitOptions, notes: list[str]):
    """The LeRobot policy config of the run (pretrained or fresh), with this run's options applied."""
    import lerobot.policies  # noqa: F401  (registers every policy type's config class)
    from lerobot.configs.policies import PreTrainedConfig

    if options.policy_type and options.policy_path:
        raise TrainSetupError("give either --policy-path (fine-tune a pretrained policy) or --policy-type (a fresh "
                              "policy), not both")
    if options.policy_path:
        try:
            cfg = PreTrainedConfig.from_pretrained(options.policy_path)
        except Exception as exc:  # offline hub, missing folder, bad json
            raise TrainSetupError(f"cannot read the policy config of {options.policy_path!r}: {exc}") from exc
        local = Path(options.policy_path).expanduser()
        # absolute: LeRobot writes it into the checkpoint (and a LoRA adapter's base_model_name_or_path)
        cfg.pretrained_path = local.resolve() if local.is_dir() else Path(options.policy_path)
    elif options.policy_type:
        try:
            cfg = PreTrainedConfig.get_choice_class(options.policy_type)()
        except Exception as exc:
            raise TrainSetupError(f"unknown LeRobot policy type {options.policy_type!r}: {exc}") from exc
    else:
        raise TrainSetupError("no policy: give --policy-path (default lerobot/smolvla_base) or --policy-type")
    fields = set(getattr(cfg, "__dataclass_fields__", {}))
    overrides = dict(options.overrides)
    if options.chunk_size is not None:
        overrides["chunk_size"] = options.chunk_size
        overrides.setdefault("n_action_steps", min(options.chunk_size, int(getattr(cfg, "n_action_steps", 1))))
    if options.n_action_steps is not None:
        overrides["n_action_steps"] = options.n_action_steps
    lr = options.lr if options.lr is not None else (LORA_LR if options.lora_rank else None)
    if lr is not None:
        overrides["optimizer_lr"] = lr
    if options.warmup_steps is not None:
        overrides["scheduler_warmup_steps"] = options.warmup_steps
    if cfg.type == "smolvla" and not options.policy_path:
        if options.vlm:
            overrides["vlm_model_name"] = options.vlm
        vlm = overrides.get("vlm_model_name", cfg.vlm_model_name)
        if options.vlm_weights is None:  # a local VLM folder without weight files is an architecture only
            local = Path(vlm).expanduser()
            overrides.setdefault("load_vlm_weights", not local.is_dir() or any(local.glob("*.safetensors")))
        else:
            overrides["load_vlm_weights"] = options.vlm_weights
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TrainSetupError(f"{cfg.type} policies have no field(s) {unknown} (--set / options)")
    for key, value in overrides.items():
        if isinstance(getattr(cfg, key, None), tuple) and isinstance(value, list):
            value = tuple(value)
        setattr(cfg, key, value)
    if cfg.type == "smolvla" and not options.policy_path and not cfg.load_vlm_weights:
        if cfg.train_expert_only or cfg.freeze_vision_encoder:
            notes.append("from scratch (no pretrained VLM weights): train_expert_only=false and "
                         "freeze_vision_encoder=false, so the random VLM trains too (SmolVLA's defaults would keep "
                         "it frozen, silently)")
        cfg.train_expert_only = False
        cfg.freeze_vision_encoder = False
    if hasattr(cfg, "n_action_steps") and hasattr(cfg, "chunk_size") and cfg.n_action_steps > cfg.chunk_size:
        raise TrainSetupError(f"--n-action-steps {cfg.n_action_steps} > --chunk-size {cfg.chunk_size}")
    cfg.device = options.device or _default_device()
    cfg.push_to_hub = False
    return cfg


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ================================================================================================ checks
def _shape(feature) -> tuple[int, ...]:
    return tuple(int(v) for v in (feature.shape if hasattr(feature, "shape") else feature["shape"]))


def check_setup(policy_cfg, spec: DatasetSpec, options: FitOptions) -> list[Finding]:
    """Guard rails between the dataset and the policy; errors stop the run before its first step."""
    from dataclasses import asdict

    from lerobot.configs.types import FeatureType
    from lerobot.datasets.utils import dataset_to_policy_features

    findings = check_dataset(spec.root)
    plan_fields = asdict(policy_cfg)
    if policy_cfg.type == "smolvla":
        pretrained = options.policy_path if options.policy_path else None
        # "random-expert" is decided below (--allow-random-expert); from scratch the VLM was unfrozen above
        findings.extend(f for f in check_plan(plan_fields, options.batch_size, options.steps, pretrained)
                        if f.code != "random-expert")
    elif options.batch_size < MIN_BATCH_SIZE:
        findings.extend(f for f in check_plan(plan_fields, options.batch_size, options.steps, "x")
                        if f.code == "batch-size")
    if not options.policy_path and not options.allow_random_expert and policy_cfg.type == "smolvla":
        findings.append(Finding("error", "random-expert",
                                "a fresh SmolVLA has a randomly initialised action expert: start from a pretrained "
                                f"SmolVLA (--policy-path, default {DEFAULT_POLICY}) or pass --allow-random-expert "
                                "to train one on purpose (seed report, section 12, cause 1)"))
    if options.lora_rank and not options.policy_path:
        findings.append(Finding("error", "lora-from-scratch",
                                "LoRA adapts a pretrained policy: give --policy-path, or drop --lora-rank"))

    # names, shapes, units: dataset vs policy
    renamed = {options.rename_map.get(k, k): v for k, v in dataset_to_policy_features(spec.features).items()}
    wanted_inputs = dict(policy_cfg.input_features or {})
    wanted_outputs = dict(policy_cfg.output_features or {})
    if options.policy_path:
        for key, feature in {**wanted_inputs, **wanted_outputs}.items():
            if feature.type is FeatureType.VISUAL:
                continue
            if key not in renamed:
                findings.append(Finding("error", "feature-missing",
                                        f"the policy needs {key!r} {list(_shape(feature))}; the dataset has "
                                        f"{sorted(renamed)} (map names with --rename-map)"))
            elif _shape(renamed[key]) != _shape(feature):
                findings.append(Finding("error", "feature-shape",
                                        f"{key}: the policy expects shape {list(_shape(feature))}, the dataset has "
                                        f"{list(_shape(renamed[key]))} (joints {spec.joint_names})"))
        wanted_images = {k: f for k, f in wanted_inputs.items() if f.type is FeatureType.VISUAL}
        given_images = {k: f for k, f in renamed.items() if f.type is FeatureType.VISUAL}
        if wanted_images and given_images and not (set(wanted_images) <= set(given_images)
                                                   or set(given_images) <= set(wanted_images)):
            first = next(iter(given_images))
            findings.append(Finding("error", "image-key",
                                    f"the dataset's camera(s) {sorted(given_images)} are not the policy's "
                                    f"{sorted(wanted_images)}: map them, e.g. --rename-map "
                                    f"'{{\"{first}\": \"{next(iter(wanted_images))}\"}}'"))
        resizes = bool(getattr(policy_cfg, "resize_imgs_with_padding", None))
        for key in set(wanted_images) & set(given_images):
            want, have = _shape(wanted_images[key]), _shape(given_images[key])
            if want != have and (want[0] != have[0] or not resizes):
                findings.append(Finding("error", "image-shape",
                                        f"{key}: the policy expects images {list(want)}, the dataset has "
                                        f"{list(have)}"))
        meta = _read_json(Path(options.policy_path) / "roarm_vla_meta.json") if Path(
            options.policy_path).is_dir() else {}
        if meta.get("joint_units") and meta["joint_units"] != spec.joint_units:
            findings.append(Finding("error", "joint-units",
                                    f"the policy was trained on joints in {meta['joint_units']}, the dataset is in "
                                    f"{spec.joint_units} ({spec.source}): convert the dataset or start from "
                                    "another policy"))
        if meta.get("joint_names") and list(meta["joint_names"]) != list(spec.joint_names):
            findings.append(Finding("error", "joint-names",
                                    f"the policy's joints are {meta['joint_names']}, the dataset's "
                                    f"{spec.joint_names}: the state/action columns would not mean the same joints"))
    if spec.joint_units not in ("radians", "degrees"):
        findings.append(Finding("error", "joint-units", f"unknown joint units {spec.joint_units!r} in {spec.source}"))
    if len(spec.joint_names) != _shape(spec.features[STATE_KEY])[0]:
        findings.append(Finding("error", "feature-names",
                                f"{spec.source} names {len(spec.joint_names)} joints, observation.state has "
                                f"{_shape(spec.features[STATE_KEY])[0]} values"))
    return findings


# ================================================================================================ plan
def prepare(options: FitOptions) -> Plan:
    """Read the dataset, build the policy and trainer configs, run every check. Raises TrainSetupError on errors."""
    from lerobot.configs.default import DatasetConfig, PeftConfig, WandBConfig
    from lerobot.configs.train import TrainPipelineConfig

    notes: list[str] = []
    spec = read_dataset_spec(options.dataset)
    output = Path(options.output).expanduser().resolve()
    if output.exists():
        raise TrainSetupError(f"output folder {output} exists: choose a new one, or --resume the run in it")
    policy_cfg = _policy_config(options, notes)
    findings = check_setup(policy_cfg, spec, options)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise TrainSetupError("the run would train the wrong thing; nothing was started:\n  "
                              + "\n  ".join(str(f) for f in errors))
    train_episodes, eval_episodes = split_episodes(spec.episodes, options.eval_episodes, options.holdout_fraction,
                                                   options.seed)
    peft = None
    if options.lora_rank:
        # LeRobot's PeftConfig has no alpha: _trainer_hooks passes options.lora_alpha to the LoraConfig
        peft = PeftConfig(target_modules=list(options.lora_targets), r=int(options.lora_rank), method_type="LORA")
    wandb = WandBConfig(enable=options.wandb != "off", mode=None if options.wandb == "off" else options.wandb,
                        project="roarm-vla", disable_artifact=True)
    save_freq = options.save_freq or max(1, options.steps // 4)
    train_config = TrainPipelineConfig(
        dataset=DatasetConfig(repo_id=f"local/{spec.root.name}", root=str(spec.root), episodes=train_episodes),
        policy=policy_cfg, output_dir=output, job_name=f"roarm_{policy_cfg.type}", seed=options.seed,
        num_workers=options.num_workers, batch_size=options.batch_size, steps=options.steps, eval_freq=0,
        log_freq=options.log_freq, save_freq=save_freq, wandb=wandb, peft=peft,
        rename_map=dict(options.rename_map))
    return Plan(options, spec, train_config, train_episodes, eval_episodes, findings, notes)


# ================================================================================================ hooks
class _TrainLog:
    """Per-step figures from LeRobot's update_policy to train_log.jsonl (and TensorBoard when asked)."""

    def __init__(self, output: Path, tensorboard: bool) -> None:
        self.path = output / TRAIN_LOG_FILENAME
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise TrainSetupError("--tensorboard needs the tensorboard package: pip install tensorboard") from exc
            self.writer = SummaryWriter(log_dir=str(output / "tensorboard"))

    def record(self, metrics, output_dict: dict | None) -> None:
        step = int(metrics.steps) + 1  # LeRobot counts the step after update_policy returns
        row = {"step": step, "loss": float(metrics.loss.val), "lr": float(metrics.lr.val),
               "grad_norm": float(metrics.grad_norm.val), "update_s": float(metrics.update_s.val)}
        for key, value in (output_dict or {}).items():
            if isinstance(value, (int, float)) and key != "loss":
                row[key] = float(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "step":
                    self.writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def _trainer_hooks(plan: Plan) -> Iterator[None]:
    """For one run: wrap LeRobot's update_policy (logging), save_checkpoint (roarm metadata) and its PEFT set-up."""
    from lerobot.scripts import lerobot_train

    output = Path(plan.train_config.output_dir)
    log = _TrainLog(output, plan.options.tensorboard)
    original_update, original_save = lerobot_train.update_policy, lerobot_train.save_checkpoint
    meta = {**plan.spec.meta(), "train_episodes": plan.train_episodes, "eval_episodes": plan.eval_episodes}

    def update_policy(train_metrics, *args, **kwargs):
        train_metrics, output_dict = original_update(train_metrics, *args, **kwargs)
        log.record(train_metrics, output_dict)
        return train_metrics, output_dict

    def save_checkpoint(checkpoint_dir, *args, **kwargs):
        original_save(checkpoint_dir, *args, **kwargs)
        write_run_files(output, Path(checkpoint_dir) / "pretrained_model", meta, plan)

    lerobot_train.update_policy, lerobot_train.save_checkpoint = update_policy, save_checkpoint
    try:
        with _peft_hooks(plan.options.lora_alpha if plan.train_config.peft is not None else None,
                         resume=bool(plan.train_config.resume)):
            yield
    finally:
        lerobot_train.update_policy, lerobot_train.save_checkpoint = original_update, original_save
        log.close()


@contextlib.contextmanager
def _peft_hooks(lora_alpha: int | None, resume: bool) -> Iterator[None]:
    """LeRobot 0.4.4's PEFT path, completed for one run.

    - LeRobot's PeftConfig has no LoRA alpha: it is added to the LoraConfig LeRobot builds.
    - On resume LeRobot loads the saved adapter (make_policy -> PeftModel.from_pretrained, FROZEN: is_trainable
      defaults to False) and then wraps that policy with a second, fresh adapter (train(): cfg.peft is set), so the
      run would continue on a new zero-initialised LoRA. Here the saved adapter is loaded trainable and is the one
      trained on.
    """
    if lora_alpha is None:
        yield
        return
    from lerobot.policies.pretrained import PreTrainedPolicy
    from peft import PeftModel

    original_build, original_wrap = PreTrainedPolicy._build_peft_config, PreTrainedPolicy.wrap_with_peft
    original_from_pretrained = PeftModel.__dict__["from_pretrained"]
    loaded: list = []

    def build_peft_config(self, cli_overrides):
        return original_build(self, {**cli_overrides, "lora_alpha": int(lora_alpha)})

    def wrap_with_peft(self, peft_config=None, peft_cli_overrides=None):
        if loaded:  # the saved adapter, loaded by make_policy: train it, do not stack a new one on it
            return loaded[-1]
        return original_wrap(self, peft_config, peft_cli_overrides)

    def from_pretrained(cls, model, model_id, *args, **kwargs):
        kwargs["is_trainable"] = True
        peft_model = original_from_pretrained.__func__(cls, model, model_id, *args, **kwargs)
        loaded.append(peft_model)
        return peft_model

    PreTrainedPolicy._build_peft_config = build_peft_config
    if resume:
        PreTrainedPolicy.wrap_with_peft = wrap_with_peft
        PeftModel.from_pretrained = classmethod(from_pretrained)
    try:
        yield
    finally:
        PreTrainedPolicy._build_peft_config, PreTrainedPolicy.wrap_with_peft = original_build, original_wrap
        PeftModel.from_pretrained = original_from_pretrained


def write_run_files(output: Path, pretrained_model: Path | None, meta: dict, plan: Plan | None = None) -> None:
    """roarm_vla_meta.json into a saved pretrained_model; episode_split.json into the run's folder."""
    from vla_policy_node.policy_runtime import ROARM_META_FILENAME

    if pretrained_model is not None and pretrained_model.is_dir():
        (pretrained_model / ROARM_META_FILENAME).write_text(json.dumps(meta, indent=2) + "\n")
    split_file = output / SPLIT_FILENAME
    if plan is not None and not split_file.exists():
        split = {"dataset": str(plan.spec.root), "train_episodes": plan.train_episodes,
                 "eval_episodes": plan.eval_episodes, "seed": plan.options.seed,
                 "holdout_fraction": None if plan.options.eval_episodes else plan.options.holdout_fraction}
        split_file.write_text(json.dumps(split, indent=2) + "\n")


# ================================================================================================ run
def fit(options: FitOptions) -> Path:
    """Check, then train with LeRobot's trainer. Returns the run's output folder."""
    from roarm_training import lerobot_fixes

    if options.resume:
        return _resume(options)
    plan = prepare(options)
    for finding in plan.findings:
        LOG.warning("%s", finding)
        print(finding, file=sys.stderr)
    for note in plan.notes:
        print(f"note: {note}")
    status = lerobot_fixes.apply()
    print(f"LeRobot {status.lerobot_version}: {'SmolVLA loss fixes applied' if status.applied else status.reason}")
    print(f"episodes: {len(plan.train_episodes)} for training, {len(plan.eval_episodes)} held out "
          f"{plan.eval_episodes} (saved to {SPLIT_FILENAME})")
    _run_trainer(plan, [])
    return Path(plan.train_config.output_dir)


def _run_trainer(plan: Plan, argv: list[str]) -> None:
    from lerobot.scripts import lerobot_train

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *argv]  # LeRobot's config validation reads sys.argv (--policy.path, --config_path)
    try:
        with _trainer_hooks(plan):
            lerobot_train.train(plan.train_config)
    finally:
        sys.argv = saved_argv


def _resume(options: FitOptions) -> Path:
    """Continue the run in ``options.output`` from its last checkpoint (LeRobot's resume: weights, optimizer,
    scheduler, RNG, step). ``--steps`` may extend the run; the split and the rest come from the run itself."""
    import lerobot.policies  # noqa: F401  (registers every policy type's config class)
    from lerobot.configs.train import TrainPipelineConfig

    from roarm_training import lerobot_fixes

    output = Path(options.output).expanduser().resolve()
    last = output / "checkpoints" / "last" / "pretrained_model"
    config_file = last / "train_config.json"
    if not config_file.is_file():
        raise TrainSetupError(f"--resume: {config_file} not found (no checkpoint saved in {output} yet)")
    train_config = TrainPipelineConfig.from_pretrained(str(config_file))
    train_config.resume = True
    if options.steps and options.steps != DEFAULT_STEPS:
        train_config.steps = int(options.steps)
    split = _read_json(output / SPLIT_FILENAME)
    spec = read_dataset_spec(train_config.dataset.root)
    plan = Plan(options, spec, train_config, list(split.get("train_episodes", train_config.dataset.episodes or [])),
                list(split.get("eval_episodes", [])), [], [])
    lerobot_fixes.apply()
    print(f"resuming {output} from step {_read_json(last.parent / 'training_state' / 'training_step.json').get('step')}"
          f" to {train_config.steps}")
    _run_trainer(plan, [f"--config_path={config_file}"])
    return output


# ================================================================================================ LoRA merge
def merge_lora(checkpoint: str | Path, output: str | Path) -> Path:
    """A full policy folder from a LoRA ``pretrained_model`` (base weights + merged adapter), loadable by the node."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class
    from peft import PeftModel

    checkpoint, output = Path(checkpoint).expanduser().resolve(), Path(output).expanduser().resolve()
    if not (checkpoint / "adapter_config.json").is_file():
        raise TrainSetupError(f"{checkpoint} holds no LoRA adapter (adapter_config.json)")
    if output.exists():
        raise TrainSetupError(f"output folder {output} exists")
    cfg = PreTrainedConfig.from_pretrained(str(checkpoint))
    base = _read_json(checkpoint / "adapter_config.json").get("base_model_name_or_path")
    if not base:
        raise TrainSetupError(f"{checkpoint}/adapter_config.json names no base policy")
    cfg.use_peft = False
    cfg.pretrained_path = None
    policy = get_policy_class(cfg.type).from_pretrained(base, config=cfg)
    merged = PeftModel.from_pretrained(policy, str(checkpoint)).merge_and_unload()
    output.mkdir(parents=True)
    for item in checkpoint.iterdir():  # processors, train config, roarm meta; not the adapter
        if item.is_file() and not item.name.startswith("adapter_") and item.name != "README.md":
            shutil.copy2(item, output / item.name)
    merged.config.use_peft = False
    merged.save_pretrained(output)
    return output


# ================================================================================================ CLI
def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _episode_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"episodes are integers, got {text!r}") from exc


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    fit_parser = subparsers.add_parser(
        "fit", help="fine-tune a policy with LeRobot's trainer (checks, split, LoRA, resume)",
        description="Fine-tune a LeRobot policy on a RoArm-M3 LeRobotDataset with LeRobot's own trainer. Every "
                    "check runs before the first step; see training/README.md.")
    a = fit_parser.add_argument
    a("--dataset", type=Path, required=True, help="LeRobotDataset v3 folder (roarm-vla-data convert's output)")
    a("--output", type=Path, required=True, help="new run folder (checkpoints/, episode_split.json, train_log.jsonl)")
    a("--policy-path", default=None,
      help=f"pretrained policy to fine-tune: hub id or pretrained_model folder (default {DEFAULT_POLICY})")
    a("--policy-type", default=None, help="train a FRESH policy of this LeRobot type instead (act, smolvla, ...)")
    a("--vlm", default=None, help="fresh SmolVLA: its VLM (hub id or local folder)")
    a("--vlm-weights", action=argparse.BooleanOptionalAction, default=None,
      help="fresh SmolVLA: load the VLM's pretrained weights (default: yes unless it is a folder without weights)")
    a("--allow-random-expert", action="store_true",
      help="allow a fresh SmolVLA (randomly initialised action expert)")
    a("--steps", type=int, default=DEFAULT_STEPS, help=f"optimizer steps (default {DEFAULT_STEPS})")
    a("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"default {DEFAULT_BATCH_SIZE}; below 8 warns")
    a("--lr", type=float, default=None, help="peak learning rate (default: the policy's preset; LoRA 1e-4)")
    a("--warmup-steps", type=int, default=None, help="LR warm-up steps (default: the policy's preset, auto-scaled)")
    a("--chunk-size", type=int, default=None, help="actions predicted per inference (default: the policy's)")
    a("--n-action-steps", type=int, default=None, help="actions executed per inference (default: the policy's)")
    a("--lora-rank", type=int, default=0, help=f"train a LoRA adapter of this rank (the recipe: {LORA_RANK}); 0 = off")
    a("--lora-alpha", type=int, default=LORA_ALPHA, help=f"LoRA alpha (default {LORA_ALPHA})")
    a("--lora-targets", default=",".join(LORA_TARGETS), help="LoRA target module names, comma-separated "
      f"(default {','.join(LORA_TARGETS)})")
    a("--eval-episodes", type=_episode_list, default=None, help="held-out episodes, e.g. '3,7,12'")
    a("--holdout-fraction", type=float, default=0.1, help="held-out share of episodes when --eval-episodes is not "
      "given (default 0.1, at least one episode)")
    a("--seed", type=int, default=1000)
    a("--num-workers", type=int, default=2, help="data-loader workers (default 2)")
    a("--save-freq", type=int, default=None, help="checkpoint every N steps (default steps/4; the last always)")
    a("--log-freq", type=int, default=100)
    a("--device", default=None, help="cuda | cpu | mps (default: cuda when available)")
    a("--wandb", choices=("off", "online", "offline"), default="off", help="Weights & Biases logging (default off)")
    a("--tensorboard", action="store_true", help="also write TensorBoard scalars to OUTPUT/tensorboard")
    a("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    a("--rename-map", type=json.loads, default={}, help="dataset -> policy feature names, JSON "
      "(e.g. '{\"observation.images.top\": \"observation.images.camera1\"}' for lerobot/smolvla_base)")
    a("--set", dest="overrides", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
      help="any other policy config field (JSON value), e.g. --set dim_model=64")
    fit_parser.set_defaults(func=run)

    merge = subparsers.add_parser("merge-lora", help="merge a LoRA checkpoint into a full policy folder",
                                  description=merge_lora.__doc__)
    merge.add_argument("--checkpoint", type=Path, required=True, help="a LoRA run's pretrained_model folder")
    merge.add_argument("--output", type=Path, required=True, help="new folder for the merged policy")
    merge.set_defaults(func=run_merge)
    return fit_parser


def options_from_args(args: argparse.Namespace) -> FitOptions:
    policy_path = args.policy_path
    if policy_path is None and args.policy_type is None:
        policy_path = DEFAULT_POLICY
    return FitOptions(
        dataset=args.dataset, output=args.output, policy_path=policy_path, policy_type=args.policy_type,
        vlm=args.vlm, vlm_weights=args.vlm_weights, allow_random_expert=args.allow_random_expert, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps, chunk_size=args.chunk_size,
        n_action_steps=args.n_action_steps, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
        lora_targets=tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()),
        eval_episodes=args.eval_episodes, holdout_fraction=args.holdout_fraction, seed=args.seed,
        num_workers=args.num_workers, save_freq=args.save_freq, log_freq=args.log_freq, device=args.device,
        wandb=args.wandb, tensorboard=args.tensorboard, resume=args.resume, rename_map=dict(args.rename_map),
        overrides=dict(args.overrides))


def run(args: argparse.Namespace) -> int:
    try:
        output = fit(options_from_args(args))
    except TrainSetupError as exc:
        print(f"roarm-vla-train fit: {exc}", file=sys.stderr)
        return 2
    print(f"done: {output} (last checkpoint: {output / 'checkpoints' / 'last' / 'pretrained_model'})")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    try:
        output = merge_lora(args.checkpoint, args.output)
    except TrainSetupError as exc:
        print(f"roarm-vla-train merge-lora: {exc}", file=sys.stderr)
        return 2
    print(f"merged policy: {output}")
    return 0
