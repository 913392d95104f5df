"""`roarm-vla-train eval`: offline evaluation that catches the seed report's failures.

The seed report's "PASS" was measured on training samples with a policy that output one mean action for every
input. This evaluation therefore:
- runs on HELD-OUT episodes by default (the split saved by `fit`, else the complement of the episodes in the
  checkpoint's ``train_config.json``); evaluating on training episodes is refused without
  ``--allow-train-episodes`` and then flagged in the report;
- loads the checkpoint through the policy node's own loader (``vla_policy_node.policy_runtime.PolicyRuntime``), so
  it sees what the node would: same processors, units, joint order, precision;
- compares every figure with the MEAN-ACTION BASELINE (the mean of the training episodes' actions, one constant
  chunk for every input): a policy no better than it has learned nothing usable;
- COLLAPSE detector: per joint, std of the predicted first action across samples over the ground truth's std.
  A constant policy (and the baseline) scores 0; FAIL below ``collapse_threshold`` on any joint that moves.
  The same at FRAME 0 of the held-out episodes, where only the image says where the box is, plus the frame-0
  SKILL: the share of the first chunks' variance across episodes the predictions explain (1 - SSE / SST). A
  policy that answers one chunk for every first frame, or first chunks the image moves at random (the state
  shortcut of one start pose), scores <= 0; FAIL below ``frame0_skill_threshold``;
- IMAGE RELIANCE: the same state and the same start noise with another held-out episode's image (same frame
  index). Reliance = RMS change of the predicted chunk / RMS difference of the two episodes' ground-truth chunks,
  both in units of the training action std per joint; cosine = direction agreement; toward = the share of the
  ground truth's change the prediction makes (the regression coefficient of the predicted change on the true
  one). About 0 = the camera is ignored and the state alone drives the policy (the state shortcut of
  ``shared/learning_notes.md``), or the image moves the prediction, but not where the other box is; FAIL when
  reliance is below ``reliance_threshold`` or toward below ``reliance_toward_threshold``.

Every prediction uses the SAME flow-matching start noise (``noise_seed``): differences between predictions then
come from the inputs only (a policy that ignores its inputs cannot look diverse through its noise).

Errors: per joint MAE and RMSE over the valid (unpadded) steps of the predicted chunk, in the dataset's units and
in degrees; per sample the L2 norm (over joints) of the first action's error, as in the seed's table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

LOG = logging.getLogger(__name__)

STATE_KEY = "observation.state"
ACTION_KEY = "action"
SPLIT_FILENAMES = ("episode_split.json", "split.json")  # written by `roarm-vla-train fit` in its output dir
DEFAULT_COLLAPSE_THRESHOLD = 0.3
DEFAULT_RELIANCE_THRESHOLD = 0.2
DEFAULT_RELIANCE_TOWARD_THRESHOLD = 0.05
# Frame-0 skill (1 - SSE / SST across the held-out episodes' first chunks, mean over joints): 0 = no better than one
# chunk for every first frame. Measured (README, Learned pick): random-start policies 0.50-0.63, the fixed-start
# policy -1.4 (its image-moved first chunks are worse than one answer), the mean action <= 0.
DEFAULT_FRAME0_SKILL_THRESHOLD = 0.2
PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "NOT_MEASURED"


class EvaluationError(RuntimeError):
    """The evaluation cannot run as asked (unknown split, training episodes without consent, bad dataset)."""


# ================================================================================================ dataset
@dataclass
class DatasetView:
    """All frames' states/actions of a LeRobotDataset (no images) + lazy access to images and tasks."""

    root: Path
    spec: Any  # vla_policy_node.observation.ObservationSpec of the dataset (order, units, image key)
    fps: float
    states: np.ndarray  # [N, D] dataset units, ordered by absolute index
    actions: np.ndarray  # [N, D]
    episode: np.ndarray  # [N] episode index of each frame
    frame: np.ndarray  # [N] frame index within its episode
    index: np.ndarray  # [N] absolute dataset index
    action_std: np.ndarray  # [D] from meta/stats.json
    dataset: Any = None  # LeRobotDataset, for images and tasks

    @property
    def episodes(self) -> list[int]:
        return sorted(int(e) for e in np.unique(self.episode))

    def positions_of(self, episode: int) -> np.ndarray:
        return np.flatnonzero(self.episode == episode)

    def image(self, position: int) -> np.ndarray:
        """HxWx3 uint8 RGB of the frame (what the camera would give the node)."""
        item = self.dataset[int(self.index[position])]
        tensor = item[self.spec.image_key]
        array = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        if array.ndim == 3 and array.shape[0] == 3:
            array = np.transpose(array, (1, 2, 0))
        if array.dtype != np.uint8:
            array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(array)

    def task(self, position: int) -> str:
        return str(self.dataset[int(self.index[position])].get("task", ""))


def load_dataset(root: str | Path) -> DatasetView:
    """Read a LeRobotDataset v3 folder; the spec comes from meta/roarm_vla.json (the converter's) when present."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from vla_policy_node.observation import ObservationSpec, spec_from_meta

    root = Path(root).expanduser().resolve()
    if not (root / "meta" / "info.json").is_file():
        raise EvaluationError(f"{root} is not a LeRobotDataset (no meta/info.json)")
    meta_file = root / "meta" / "roarm_vla.json"
    info = json.loads((root / "meta" / "info.json").read_text())
    if meta_file.is_file():
        spec = spec_from_meta(json.loads(meta_file.read_text()))
    else:
        camera_keys = [k for k, f in info["features"].items() if f.get("dtype") in ("image", "video")]
        names = info["features"].get(STATE_KEY, {}).get("names")
        from roarm_description.joints import JOINT_NAMES

        spec = ObservationSpec(
            state_joint_names=tuple(names) if isinstance(names, list) and set(names) <= set(JOINT_NAMES)
            else tuple(JOINT_NAMES),
            image_key=camera_keys[0] if camera_keys else "observation.images.top")
        LOG.warning("%s has no meta/roarm_vla.json: assuming %s in %s", root, spec.joint_units,
                    list(spec.state_joint_names))
    dataset = LeRobotDataset(f"local/{root.name}", root=root)
    if spec.image_key not in dataset.meta.camera_keys:
        raise EvaluationError(f"dataset image key {spec.image_key!r} not among its cameras {dataset.meta.camera_keys}")
    columns = dataset.hf_dataset.select_columns(
        [STATE_KEY, ACTION_KEY, "episode_index", "frame_index", "index"]).with_format("numpy")[:]
    order = np.argsort(columns["index"])
    stats_std = np.asarray(dataset.meta.stats[ACTION_KEY]["std"], dtype=float)
    return DatasetView(
        root=root, spec=spec, fps=float(dataset.fps),
        states=np.asarray(columns[STATE_KEY], dtype=float)[order],
        actions=np.asarray(columns[ACTION_KEY], dtype=float)[order],
        episode=np.asarray(columns["episode_index"])[order], frame=np.asarray(columns["frame_index"])[order],
        index=np.asarray(columns["index"])[order], action_std=stats_std, dataset=dataset)


def to_degrees(values: np.ndarray, joint_units: str) -> np.ndarray:
    return np.degrees(values) if joint_units == "radians" else np.asarray(values, dtype=float)


# ================================================================================================ split
@dataclass
class Split:
    eval_episodes: list[int]
    train_episodes: list[int] | None  # None = unknown (a checkpoint without a training record)
    source: str  # where the split came from
    on_training_episodes: bool = False  # eval episodes overlap the training ones (allowed explicitly)
    warnings: list[str] = field(default_factory=list)


def _run_dirs(checkpoint: Path, levels: int = 4) -> list[Path]:
    """The checkpoint folder and its parents (``<output>/checkpoints/<step>/pretrained_model`` -> ``<output>``)."""
    folders = [checkpoint]
    for _ in range(levels):
        if folders[-1].parent == folders[-1]:
            break
        folders.append(folders[-1].parent)
    return folders


def read_training_record(checkpoint: str | Path) -> dict:
    """What the checkpoint says about its training: split file and/or LeRobot's train_config.json."""
    record: dict = {}
    path = Path(checkpoint)
    if not path.exists():
        return record
    for folder in _run_dirs(path.resolve()):
        for name in SPLIT_FILENAMES:
            if "split" not in record and (folder / name).is_file():
                record["split"] = json.loads((folder / name).read_text())
                record["split_file"] = str(folder / name)
        if "train_config" not in record and (folder / "train_config.json").is_file():
            record["train_config"] = json.loads((folder / "train_config.json").read_text())
            record["train_config_file"] = str(folder / "train_config.json")
    return record


def _episodes_from(split: dict, *keys: str) -> list[int] | None:
    for key in keys:
        if split.get(key) is not None:
            return sorted(int(e) for e in split[key])
    return None


def resolve_split(record: dict, all_episodes: Sequence[int], requested: Sequence[int] | None,
                  allow_train_episodes: bool, dataset_root: Path | None = None) -> Split:
    """Which episodes to evaluate on; refuses training episodes unless ``allow_train_episodes``."""
    all_episodes = sorted(int(e) for e in all_episodes)
    warnings: list[str] = []
    train: list[int] | None = None
    held_out: list[int] | None = None
    source = "unknown"
    if "split" in record:
        split = record["split"]
        train = _episodes_from(split, "train_episodes", "train")
        held_out = _episodes_from(split, "eval_episodes", "heldout_episodes", "held_out_episodes", "eval", "val")
        source = record["split_file"]
    if train is None and "train_config" in record:
        dataset_cfg = record["train_config"].get("dataset") or {}
        if dataset_cfg.get("episodes") is not None:
            train = sorted(int(e) for e in dataset_cfg["episodes"])
        else:
            train = list(all_episodes)  # LeRobot trains on every episode when none are listed
        source = record["train_config_file"]
        trained_root = dataset_cfg.get("root")
        if dataset_root is not None and trained_root and Path(trained_root).resolve() != Path(dataset_root).resolve():
            warnings.append(f"the checkpoint was trained on {trained_root}, evaluated on {dataset_root}: the split's "
                            "episode indices refer to the training dataset")
    if held_out is None and train is not None:
        held_out = [e for e in all_episodes if e not in set(train)]
    missing = [e for e in (requested or []) if e not in all_episodes]
    if missing:
        raise EvaluationError(f"episodes {missing} are not in the dataset (it has {len(all_episodes)}: "
                              f"{all_episodes[0]}..{all_episodes[-1]})")
    if requested:
        chosen = sorted(int(e) for e in requested)
    elif held_out:
        chosen = held_out
    elif train is not None:
        raise EvaluationError(
            f"the checkpoint was trained on every episode of the dataset ({source}): there is no held-out episode. "
            "Evaluate on another dataset, or pass --episodes ... --allow-train-episodes (which only shows "
            "memorisation)")
    else:
        raise EvaluationError(
            "cannot tell which episodes this checkpoint was trained on (no episode_split.json / train_config.json "
            "beside it): pass --episodes with held-out episodes")
    overlap = sorted(set(chosen) & set(train or []))
    if overlap:
        if not allow_train_episodes:
            raise EvaluationError(
                f"episodes {overlap} were used for TRAINING ({source}); a score on them shows memorisation, not "
                "generalisation (the seed report's 'PASS'). Pick held-out episodes, or pass --allow-train-episodes")
        warnings.append(f"EVALUATING ON TRAINING EPISODES {overlap}: these figures show memorisation, not "
                        "generalisation")
    if train is None:
        warnings.append("the checkpoint's training episodes are unknown: the evaluation episodes may have been "
                        "trained on")
    return Split(eval_episodes=chosen, train_episodes=train, source=source, on_training_episodes=bool(overlap),
                 warnings=warnings)


# ================================================================================================ samples
def choose_samples(view_episode: np.ndarray, view_frame: np.ndarray, episodes: Sequence[int],
                   max_samples: int) -> np.ndarray:
    """Positions to evaluate: frame 0 of every episode, then evenly spaced frames of all of them, sorted.

    Frame 0 is where only the image says where to go (the start pose does not), so it is always included.
    """
    pool = np.flatnonzero(np.isin(view_episode, list(episodes)))
    if pool.size == 0:
        raise EvaluationError(f"no frame in episodes {list(episodes)}")
    firsts = []
    for e in episodes:
        own = pool[view_episode[pool] == e]
        if own.size:
            firsts.append(own[np.argmin(view_frame[own])])
    firsts = np.asarray(firsts, dtype=int)
    budget = max(int(max_samples), len(firsts))
    rest = np.setdiff1d(pool, firsts)
    take = min(budget - len(firsts), rest.size)
    picked = rest[np.linspace(0, rest.size - 1, take).round().astype(int)] if take > 0 else np.array([], int)
    return np.unique(np.concatenate([firsts, picked])).astype(int)


def ground_truth_chunks(actions: np.ndarray, episode: np.ndarray, positions: Sequence[int],
                        horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """[S, horizon, D] actions from each position on, and the [S, horizon] mask of steps inside the episode.

    Steps past the episode's end are padded with its last action (as LeRobot pads) and masked out.
    """
    n = len(actions)
    chunks = np.zeros((len(positions), horizon, actions.shape[1]))
    mask = np.zeros((len(positions), horizon), dtype=bool)
    for s, p in enumerate(positions):
        last = p
        for t in range(horizon):
            q = p + t
            if q < n and episode[q] == episode[p]:
                last = q
                mask[s, t] = True
            chunks[s, t] = actions[last]
    return chunks, mask


# ================================================================================================ metrics
def error_metrics(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, joint_units: str) -> dict:
    """Per-joint MAE and RMSE over masked steps (dataset units and degrees) + per-sample first-step L2.

    pred, truth: [S, T, D]; mask: [S, T] (True = a real step).
    """
    err = (pred - truth)[mask]  # [K, D]
    if err.size == 0:
        raise EvaluationError("no valid step to compare")
    mae = np.abs(err).mean(axis=0)
    rmse = np.sqrt((err**2).mean(axis=0))
    first = pred[:, 0] - truth[:, 0]
    l2 = np.linalg.norm(first, axis=1)
    return {
        "mae": mae.tolist(), "rmse": rmse.tolist(),
        "mae_deg": to_degrees(mae, joint_units).tolist(), "rmse_deg": to_degrees(rmse, joint_units).tolist(),
        "mean_mae": float(mae.mean()), "mean_mae_deg": float(to_degrees(mae, joint_units).mean()),
        "first_step_l2": l2.tolist(), "mean_first_step_l2": float(l2.mean()),
    }


def diversity(pred_first: np.ndarray, truth_first: np.ndarray, threshold: float,
              min_truth_std: float = 1e-6) -> dict:
    """Collapse detector: per joint std(pred) / std(truth) across samples (first action of each chunk).

    Joints whose ground truth does not move (std below ``min_truth_std``) are not judged (ratio None).
    FAIL when any judged joint's ratio is below ``threshold`` (0 for a constant policy or the mean action).
    """
    pred_std = np.std(pred_first, axis=0)
    truth_std = np.std(truth_first, axis=0)
    ratios = [float(p / t) if t > min_truth_std else None for p, t in zip(pred_std, truth_std)]
    judged = [r for r in ratios if r is not None]
    if not judged or len(pred_first) < 2:
        return {"ratio": ratios, "min_ratio": None, "threshold": threshold, "verdict": NOT_MEASURED,
                "pred_std": pred_std.tolist(), "truth_std": truth_std.tolist()}
    low = min(judged)
    return {"ratio": ratios, "min_ratio": low, "mean_ratio": float(np.mean(judged)), "threshold": threshold,
            "verdict": PASS if low >= threshold else FAIL,
            "pred_std": pred_std.tolist(), "truth_std": truth_std.tolist()}


def frame0_skill(pred: np.ndarray, truth: np.ndarray, min_truth_std: float = 1e-6) -> list[float | None]:
    """Per joint 1 - sum((pred - truth)^2) / sum((truth - mean(truth))^2) across samples ([S, D] each): 1 = exact,
    0 = no better than the truths' own mean for every sample (the best single answer), < 0 = worse than it.
    None for joints whose truth does not move."""
    sse = ((pred - truth) ** 2).sum(axis=0)
    sst = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    return [float(1.0 - e / t) if np.sqrt(t / len(truth)) > min_truth_std else None for e, t in zip(sse, sst)]


def frame0_diversity(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, first: np.ndarray,
                     threshold: float, skill_threshold: float = DEFAULT_FRAME0_SKILL_THRESHOLD) -> dict:
    """The collapse detector at frame 0, where only the image says where to go, across the episodes' frame-0
    chunks at the last step every one of them still has (where the chunk is heading): per joint std / std, and the
    skill (:func:`frame0_skill`, mean over the joints that move).

    A policy that reads its answer from the state (trained from one start pose) predicts one chunk for every
    episode's first frame, or chunks the image moves but not towards the box: diverse along the trajectory,
    collapsed here. FAIL when a joint's std ratio is below ``threshold`` or the mean skill below
    ``skill_threshold``. pred, truth: [S, T, D]; mask: [S, T]; first: [S] bool (frame-0 samples).
    """
    if int(first.sum()) < 2:
        return {"ratio": [None] * pred.shape[-1], "min_ratio": None, "threshold": threshold,
                "skill": [None] * pred.shape[-1], "mean_skill": None, "skill_threshold": skill_threshold,
                "verdict": NOT_MEASURED, "samples": int(first.sum()), "step": None}
    valid = np.flatnonzero(mask[first].all(axis=0))
    step = int(valid[-1]) if valid.size else 0
    out = diversity(pred[first, step], truth[first, step], threshold)
    skill = frame0_skill(pred[first, step], truth[first, step])
    judged = [k for k in skill if k is not None]
    mean_skill = float(np.mean(judged)) if judged else None
    verdict = out["verdict"]
    if verdict == PASS and mean_skill is not None and mean_skill < skill_threshold:
        verdict = FAIL
    return {**out, "verdict": verdict, "skill": skill, "mean_skill": mean_skill, "skill_threshold": skill_threshold,
            "samples": int(first.sum()), "step": step}


def collapse_check(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, first: np.ndarray,
                   threshold: float, frame0_skill_threshold: float = DEFAULT_FRAME0_SKILL_THRESHOLD) -> dict:
    """Both collapse views: across all samples (first action of each chunk) and at frame 0 (:func:`frame0_diversity`).
    FAIL when either FAILs; ``min_ratio`` and ``ratio`` are the all-samples figures, ``frame0`` holds the other."""
    overall = diversity(pred[:, 0], truth[:, 0], threshold)
    at_frame0 = frame0_diversity(pred, truth, mask, first, threshold, frame0_skill_threshold)
    verdicts = (overall["verdict"], at_frame0["verdict"])
    verdict = FAIL if FAIL in verdicts else overall["verdict"]
    return {**overall, "verdict": verdict, "all_samples_verdict": overall["verdict"], "frame0": at_frame0}


def reliance(pred_own: np.ndarray, pred_swapped: np.ndarray, truth_own: np.ndarray, truth_other: np.ndarray,
             mask: np.ndarray, scale: np.ndarray, threshold: float,
             toward_threshold: float = DEFAULT_RELIANCE_TOWARD_THRESHOLD) -> dict:
    """Image reliance from pairs (sample i with its own image / with the image of episode j at the same frame).

    All arrays [P, T, D] (mask [P, T]: steps valid in BOTH episodes); ``scale`` [D]: per-joint std of the training
    actions. reliance = sqrt(mean ||dpred||^2) / sqrt(mean ||dtruth||^2) over masked steps, where
    dpred = pred_swapped - pred_own and dtruth = truth_other - truth_own, both divided by ``scale``.
    cosine = mean over pairs of the cosine between the flattened dpred and dtruth (direction agreement).
    toward = sum(dpred . dtruth) / sum(||dtruth||^2) over masked steps: how much of the true change the prediction
    makes (1 = all of it, 0 = none, or changes in unrelated directions). FAIL when reliance < threshold or
    toward < toward_threshold: a policy whose output the image moves at random does not read the box from it.
    """
    scale = np.where(np.asarray(scale, dtype=float) > 1e-9, scale, 1.0)
    dpred = (pred_swapped - pred_own) / scale
    dtruth = (truth_other - truth_own) / scale
    m = mask[..., None]
    num = float(np.sqrt(((dpred * m) ** 2).sum() / max(mask.sum(), 1)))
    den = float(np.sqrt(((dtruth * m) ** 2).sum() / max(mask.sum(), 1)))
    cosines = []
    for a, b, k in zip(dpred, dtruth, mask):
        a, b = a[k].ravel(), b[k].ravel()
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na > 1e-12 and nb > 1e-12:
            cosines.append(float(a @ b / (na * nb)))
    if den <= 1e-12:
        return {"reliance": None, "cosine": None, "toward": None, "threshold": threshold,
                "toward_threshold": toward_threshold, "verdict": NOT_MEASURED, "pairs": len(dpred),
                "note": "the paired episodes' ground truths do not differ"}
    value = num / den
    toward = float(((dpred * dtruth) * m).sum() / ((dtruth * m) ** 2).sum())
    per_pair = np.sqrt(((dpred * m) ** 2).sum(axis=(1, 2)) / np.maximum(mask.sum(axis=1), 1))
    return {"reliance": value, "cosine": float(np.mean(cosines)) if cosines else 0.0, "toward": toward,
            "threshold": threshold, "toward_threshold": toward_threshold,
            "verdict": PASS if value >= threshold and toward >= toward_threshold else FAIL, "pairs": len(dpred),
            "moved_rms": num, "truth_rms": den, "per_pair_moved": per_pair.tolist()}


def swap_partners(view_episode: np.ndarray, view_frame: np.ndarray, positions: Sequence[int],
                  episodes: Sequence[int]) -> list[tuple[int, int]]:
    """(position, partner position): the partner is the next evaluated episode's frame with the same index
    (its last frame when shorter). Empty with fewer than two episodes."""
    episodes = sorted(episodes)
    if len(episodes) < 2:
        return []
    pairs = []
    for p in positions:
        e = int(view_episode[p])
        other = episodes[(episodes.index(e) + 1) % len(episodes)]
        candidates = np.flatnonzero(view_episode == other)
        frames = view_frame[candidates]
        pick = candidates[np.argmin(np.abs(frames - view_frame[p]))]
        pairs.append((int(p), int(pick)))
    return pairs


# ================================================================================================ predictors
class PolicyPredictor:
    """A checkpoint loaded by the node's PolicyRuntime; inputs and outputs in the DATASET's units and order."""

    def __init__(self, checkpoint: str | Path, spec, *, device: str = "cpu", precision: str = "fp32",
                 num_threads: int = 0, vlm_path: str = "") -> None:
        from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig

        self.spec = spec
        meta_file = Path(checkpoint) / "roarm_vla_meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        names = tuple(meta.get("joint_names") or spec.state_joint_names)
        camera_key = meta.get("image_key") or meta.get("camera_key") or spec.image_key
        kwargs = dict(checkpoint=str(checkpoint), camera_key=camera_key, state_joint_names=names,
                      precision=precision, device=device, num_threads=num_threads, vlm_path=vlm_path)
        if "joint_units" not in meta:  # a LeRobot checkpoint without our meta: it was trained on this dataset's units
            kwargs["joint_units"] = spec.joint_units
        self.runtime = PolicyRuntime(RuntimeConfig(**kwargs))
        self.chunk_size = int(self.runtime.chunk_size)
        self.uses_noise = hasattr(self.runtime.policy.config, "max_action_dim")  # flow matching (SmolVLA)

    def __call__(self, image: np.ndarray, state: np.ndarray, task: str, noise_seed: int) -> np.ndarray:
        from vla_policy_node.observation import actions_to_urdf

        state_urdf = actions_to_urdf(np.asarray(state, dtype=float)[None], self.spec)[0]
        chunk = self.runtime.predict_chunk(image, state_urdf, task, noise_seed=noise_seed if self.uses_noise else None,
                                           from_camera=False)  # dataset frames are policy images already
        return urdf_to_dataset(chunk, self.spec)


def urdf_to_dataset(chunk_urdf: np.ndarray, spec) -> np.ndarray:
    """[T, 6] URDF radians (JOINT_NAMES order) -> [T, D] in the dataset's joint order and units."""
    from roarm_description.joints import JOINT_NAMES, urdf_to_sdk_degrees

    columns = [JOINT_NAMES.index(n) for n in spec.state_joint_names]
    out = np.asarray(chunk_urdf, dtype=float)[:, columns]
    return urdf_to_sdk_degrees(out) if spec.joint_units == "degrees" else out


class ConstantPredictor:
    """The same chunk for every input: the mean-action baseline (or any constant policy)."""

    def __init__(self, action: np.ndarray, chunk_size: int) -> None:
        self.action = np.asarray(action, dtype=float)
        self.chunk_size = int(chunk_size)

    def __call__(self, image, state, task, noise_seed) -> np.ndarray:
        return np.tile(self.action, (self.chunk_size, 1))


def _progress(iterable, total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return iterable


def predict_many(predictor: Callable, view: DatasetView, positions: Sequence[int], horizon: int, noise_seed: int,
                 image_positions: Sequence[int] | None = None, desc: str = "predict") -> np.ndarray:
    """[S, horizon, D] predictions; ``image_positions`` swaps in another frame's image (same state and task)."""
    image_positions = positions if image_positions is None else image_positions
    out = []
    for p, q in _progress(zip(positions, image_positions), len(positions), desc):
        chunk = predictor(view.image(q), view.states[p], view.task(p), noise_seed)
        if len(chunk) < horizon:
            raise EvaluationError(f"the policy predicts {len(chunk)} steps, fewer than the horizon {horizon}")
        out.append(chunk[:horizon])
    return np.asarray(out, dtype=float)


# ================================================================================================ evaluation
@dataclass
class EvalConfig:
    checkpoint: str
    dataset: str
    episodes: list[int] | None = None
    allow_train_episodes: bool = False
    out: str | None = None
    max_samples: int = 120
    reliance_samples: int = 40
    table_indices: list[int] | None = None  # absolute dataset indices for the per-sample table
    horizon: int = 0  # 0 = the policy's chunk size
    noise_seed: int = 0
    collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD
    frame0_skill_threshold: float = DEFAULT_FRAME0_SKILL_THRESHOLD
    reliance_threshold: float = DEFAULT_RELIANCE_THRESHOLD
    reliance_toward_threshold: float = DEFAULT_RELIANCE_TOWARD_THRESHOLD
    precision: str = "auto"  # as the node's 'auto': an export's recorded mode, else fp32
    device: str = "cpu"
    num_threads: int = 0
    vlm_path: str = ""
    plots: bool = True
    trace_points: int = 40  # predictions along the plotted episode


def evaluate(config: EvalConfig, predictor: Callable | None = None, view: DatasetView | None = None) -> dict:
    """Run the evaluation; returns the report (also written to ``<out>/eval_report.json`` with plots).

    ``predictor`` replaces the checkpoint's policy (same call signature as :class:`PolicyPredictor`), e.g. a
    :class:`ConstantPredictor`; the split is still read from ``config.checkpoint``.
    """
    view = view or load_dataset(config.dataset)
    record = read_training_record(config.checkpoint)
    split = resolve_split(record, view.episodes, config.episodes, config.allow_train_episodes, view.root)
    for warning in split.warnings:
        LOG.warning(warning)
        print(f"WARNING: {warning}", file=sys.stderr)
    if predictor is None:
        predictor = PolicyPredictor(config.checkpoint, view.spec, device=config.device, precision=config.precision,
                                    num_threads=config.num_threads, vlm_path=config.vlm_path)
    horizon = int(config.horizon) or int(predictor.chunk_size)
    units = view.spec.joint_units

    positions = choose_samples(view.episode, view.frame, split.eval_episodes, config.max_samples)
    truth, mask = ground_truth_chunks(view.actions, view.episode, positions, horizon)
    pred = predict_many(predictor, view, positions, horizon, config.noise_seed, desc="eval samples")

    train_eps = split.train_episodes if split.train_episodes is not None else \
        [e for e in view.episodes if e not in set(split.eval_episodes)]
    train_mask = np.isin(view.episode, train_eps)
    if train_mask.any():
        mean_action, baseline_source = view.actions[train_mask].mean(axis=0), "training episodes' actions"
    else:
        mean_action = np.asarray(view.dataset.meta.stats[ACTION_KEY]["mean"], dtype=float)
        baseline_source = "meta/stats.json mean (training episodes unknown)"
    baseline = np.broadcast_to(mean_action, pred.shape).copy()

    policy_err = error_metrics(pred, truth, mask, units)
    baseline_err = error_metrics(baseline, truth, mask, units)
    first = view.frame[positions] == 0
    frame0 = None
    if first.any():
        p0 = error_metrics(pred[first], truth[first], mask[first], units)
        b0 = error_metrics(baseline[first], truth[first], mask[first], units)
        frame0 = {"samples": int(first.sum()), "mean_mae": p0["mean_mae"], "baseline_mean_mae": b0["mean_mae"],
                  "ratio_to_baseline": p0["mean_mae"] / max(b0["mean_mae"], 1e-12)}
    collapse = collapse_check(pred, truth, mask, first, config.collapse_threshold, config.frame0_skill_threshold)
    baseline_collapse = collapse_check(baseline, truth, mask, first, config.collapse_threshold,
                                       config.frame0_skill_threshold)

    pairs = swap_partners(view.episode, view.frame, positions, split.eval_episodes)
    if len(pairs) > config.reliance_samples:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, config.reliance_samples).round().astype(int)]
    if pairs:
        own_pos = [p for p, _ in pairs]
        other_pos = [q for _, q in pairs]
        index_of = {int(p): i for i, p in enumerate(positions)}
        pred_own = pred[[index_of[p] for p in own_pos]]
        pred_swapped = predict_many(predictor, view, own_pos, horizon, config.noise_seed, image_positions=other_pos,
                                    desc="image swap")
        truth_own, mask_own = ground_truth_chunks(view.actions, view.episode, own_pos, horizon)
        truth_other, mask_other = ground_truth_chunks(view.actions, view.episode, other_pos, horizon)
        train_std = view.actions[train_mask].std(axis=0) if train_mask.any() else view.action_std
        image_reliance = reliance(pred_own, pred_swapped, truth_own, truth_other, mask_own & mask_other,
                                  train_std, config.reliance_threshold, config.reliance_toward_threshold)
        image_reliance["pairs_positions"] = [[int(view.index[p]), int(view.index[q])] for p, q in pairs]
    else:
        image_reliance = {"reliance": None, "verdict": NOT_MEASURED, "threshold": config.reliance_threshold,
                          "note": "needs at least two evaluation episodes"}

    table_positions = _table_positions(view, positions, config.table_indices)
    table = []
    for p in table_positions:
        chunk = pred[list(positions).index(p)] if p in set(positions.tolist()) else predict_many(
            predictor, view, [p], horizon, config.noise_seed, desc="table")[0]
        table.append({"index": int(view.index[p]), "episode": int(view.episode[p]), "frame": int(view.frame[p]),
                      "state": _round(view.states[p]), "predicted": _round(chunk[0]),
                      "ground_truth": _round(view.actions[p]),
                      "l2": float(np.linalg.norm(chunk[0] - view.actions[p])),
                      "baseline_l2": float(np.linalg.norm(mean_action - view.actions[p]))})

    verdicts = [collapse["verdict"], image_reliance["verdict"]]
    report = {
        "checkpoint": str(config.checkpoint), "dataset": str(view.root),
        "joint_names": list(view.spec.state_joint_names), "joint_units": units, "fps": view.fps,
        "split": {"eval_episodes": split.eval_episodes, "train_episodes": split.train_episodes,
                  "source": split.source, "on_training_episodes": split.on_training_episodes,
                  "warnings": split.warnings},
        "samples": int(len(positions)), "horizon": horizon, "noise_seed": config.noise_seed,
        "precision": _applied_precision(predictor, config.precision),
        "policy": policy_err, "baseline": {**baseline_err, "mean_action": mean_action.tolist(),
                                           "source": baseline_source},
        "ratio_to_baseline": {"mean_mae": policy_err["mean_mae"] / max(baseline_err["mean_mae"], 1e-12),
                              "mean_first_step_l2": policy_err["mean_first_step_l2"]
                              / max(baseline_err["mean_first_step_l2"], 1e-12)},
        "frame0": frame0,
        "collapse": collapse, "baseline_collapse": baseline_collapse,
        "image_reliance": image_reliance,
        "table": table,
        "verdict": FAIL if FAIL in verdicts else (PASS if all(v == PASS for v in verdicts) else NOT_MEASURED),
    }
    if config.out:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        if config.plots:
            report["plots"] = _make_plots(report, config, predictor, view, split, mean_action, horizon, out)
        (out / "eval_report.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    return report


def _applied_precision(predictor, requested: str) -> str:
    """The mode the runtime applied ('auto' resolved to an export's recorded mode), else the requested one."""
    report = getattr(getattr(predictor, "runtime", None), "precision_report", None)
    return str(report.mode) if report is not None else str(requested)


def _table_positions(view: DatasetView, positions: np.ndarray, indices: Sequence[int] | None) -> list[int]:
    if indices:
        lookup = {int(i): p for p, i in enumerate(view.index)}
        missing = [i for i in indices if int(i) not in lookup]
        if missing:
            raise EvaluationError(f"table indices {missing} are not in the dataset (0..{len(view.index) - 1})")
        return [lookup[int(i)] for i in indices]
    picks = np.linspace(0, len(positions) - 1, min(6, len(positions))).round().astype(int)
    return [int(positions[i]) for i in picks]


def _round(values, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def _make_plots(report, config, predictor, view, split, mean_action, horizon, out: Path) -> dict:
    from roarm_training import plots

    episode = split.eval_episodes[0]
    ep_pos = view.positions_of(episode)
    stride = max(1, math.ceil(len(ep_pos) / max(config.trace_points, 1)))
    trace_pos = ep_pos[::stride]
    trace = predict_many(predictor, view, trace_pos, horizon, config.noise_seed, desc="episode trace")
    files = {
        "episode_trace": str(plots.plot_episode_trace(
            out / "episode_trace.png", view.frame[ep_pos], view.actions[ep_pos], view.frame[trace_pos], trace[:, 0],
            mean_action, list(view.spec.state_joint_names), view.spec.joint_units, episode)),
        "checks": str(plots.plot_checks(out / "diversity_reliance.png", report)),
    }
    curve = find_loss_curve(config.checkpoint)
    if curve is not None:
        steps, losses, source = curve
        files["loss_curve"] = str(plots.plot_loss_curve(out / "loss_curve.png", steps, losses, source))
        report["loss_curve"] = {"source": source, "points": len(steps), "first": losses[0], "last": losses[-1]}
    else:
        report["loss_curve"] = {"source": None, "note": "no training log found beside the checkpoint"}
    return files


# ================================================================================================ loss curve
_LEROBOT_LINE = re.compile(r"step:(?P<step>[0-9.]+)(?P<suffix>[KMBTQ]?)\s.*?\bloss:(?P<loss>[-+0-9.eE]+)")
_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12, "Q": 1e15}
# train_log.jsonl: what `roarm-vla-train fit` writes; the others: LeRobot console logs and older runs
LOSS_LOG_NAMES = ("train_log.jsonl", "metrics.jsonl", "train_metrics.jsonl", "loss.jsonl", "train.log", "training.log",
                  "fit.log")


def parse_loss_log(path: Path) -> tuple[list[float], list[float]]:
    """(steps, losses) from a JSON-lines file ({"step", "loss"} per line) or LeRobot trainer console lines
    (``step:1K smpl:... loss:0.071 ...``; steps printed with K/M suffixes are approximate)."""
    steps, losses = [], []
    text = Path(path).read_text(errors="replace")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if "loss" in row and "step" in row:
                steps.append(float(row["step"]))
                losses.append(float(row["loss"]))
            continue
        match = _LEROBOT_LINE.search(line)
        if match:
            steps.append(float(match["step"]) * _SUFFIX[match["suffix"]])
            losses.append(float(match["loss"]))
    return steps, losses


def find_loss_curve(checkpoint: str | Path) -> tuple[list[float], list[float], str] | None:
    """The training loss curve from a log in the checkpoint's run folders (the closest one wins)."""
    path = Path(checkpoint)
    if not path.exists():
        return None
    for folder in _run_dirs(path.resolve()):
        for name in LOSS_LOG_NAMES:
            candidate = folder / name
            if candidate.is_file():
                steps, losses = parse_loss_log(candidate)
                if steps:
                    return steps, losses, str(candidate)
    return None


# ================================================================================================ CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` on an argparse subparsers object (``roarm-vla-train``)."""
    parser = subparsers.add_parser(
        "eval", help="offline evaluation on held-out episodes: errors vs the mean-action baseline, collapse and "
                     "image-reliance checks, JSON report + PNG plots",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="pretrained_model folder (or hub id)")
    parser.add_argument("--dataset", required=True, help="LeRobotDataset v3 root folder")
    parser.add_argument("--episodes", type=int, nargs="+", default=None,
                        help="episodes to evaluate (default: the held-out episodes of the checkpoint's training)")
    parser.add_argument("--allow-train-episodes", action="store_true",
                        help="allow evaluating on episodes the checkpoint was trained on (shows memorisation)")
    parser.add_argument("--out", default=None, help="folder for eval_report.json and the PNG plots")
    parser.add_argument("--max-samples", type=int, default=EvalConfig.max_samples,
                        help="frames evaluated (frame 0 of every episode + evenly spaced ones)")
    parser.add_argument("--reliance-samples", type=int, default=EvalConfig.reliance_samples,
                        help="samples re-run with another episode's image")
    parser.add_argument("--table-indices", type=int, nargs="+", default=None,
                        help="absolute dataset indices for the per-sample table (default: 6 spread samples)")
    parser.add_argument("--horizon", type=int, default=0, help="chunk steps compared (0 = the policy's chunk)")
    parser.add_argument("--noise-seed", type=int, default=0, help="the one flow-matching start noise of every call")
    parser.add_argument("--collapse-threshold", type=float, default=DEFAULT_COLLAPSE_THRESHOLD,
                        help="FAIL when a joint's predicted std / ground-truth std is below this")
    parser.add_argument("--frame0-skill-threshold", type=float, default=DEFAULT_FRAME0_SKILL_THRESHOLD,
                        help="collapse FAIL when, at frame 0, the predictions explain less than this share of the "
                             "first chunks' variance across held-out episodes (0 = no better than one answer)")
    parser.add_argument("--reliance-threshold", type=float, default=DEFAULT_RELIANCE_THRESHOLD,
                        help="FAIL when the image-swap reliance is below this")
    parser.add_argument("--reliance-toward-threshold", type=float, default=DEFAULT_RELIANCE_TOWARD_THRESHOLD,
                        help="FAIL when the share of the true change that the image swap makes is below this")
    parser.add_argument("--precision", default="auto",
                        help="precision mode of the policy node (auto = what an export recorded, else fp32; fp32, "
                             "bf16, int8, ...)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--vlm-path", default="", help="local SmolVLM folder replacing the checkpoint's")
    parser.add_argument("--no-plots", action="store_true")
    parser.set_defaults(func=run)
    return parser


def format_summary(report: dict) -> str:
    names = report["joint_names"]
    units = "deg" if report["joint_units"] == "degrees" else "rad"
    lines = [f"eval on episodes {report['split']['eval_episodes']} ({report['samples']} samples, horizon "
             f"{report['horizon']}, split from {report['split']['source']})"]
    lines += [f"WARNING: {w}" for w in report["split"]["warnings"]]
    lines.append(f"{'joint':<26}{'MAE ' + units:>10}{'MAE deg':>10}{'RMSE deg':>10}{'base MAE deg':>14}"
                 f"{'diversity':>11}")
    for j, name in enumerate(names):
        ratio = report["collapse"]["ratio"][j]
        lines.append(f"{name:<26}{report['policy']['mae'][j]:>10.4f}{report['policy']['mae_deg'][j]:>10.2f}"
                     f"{report['policy']['rmse_deg'][j]:>10.2f}{report['baseline']['mae_deg'][j]:>14.2f}"
                     f"{'-' if ratio is None else f'{ratio:.2f}':>11}")
    ratio = report["ratio_to_baseline"]
    lines.append(f"policy / mean-action baseline: MAE {ratio['mean_mae']:.2f}, first-step L2 "
                 f"{ratio['mean_first_step_l2']:.2f}" + (f"; at frame 0: {report['frame0']['ratio_to_baseline']:.2f}"
                                                         if report.get("frame0") else ""))
    c, r = report["collapse"], report["image_reliance"]
    f0 = c.get("frame0") or {}
    lines.append(f"collapse check: {c['verdict']} (min diversity {c.get('min_ratio')}; at frame 0 "
                 f"{f0.get('min_ratio')}, skill {f0.get('mean_skill')} over {f0.get('samples')} episodes; thresholds "
                 f"{c['threshold']}, skill {f0.get('skill_threshold')})")
    lines.append(f"image reliance: {r['verdict']} (reliance {r.get('reliance')}, cosine {r.get('cosine')}, toward "
                 f"{r.get('toward')}; thresholds {r['threshold']}, toward {r.get('toward_threshold')})")
    lines.append(f"{'index':>7}{'ep':>5}{'frame':>7}{'L2':>10}{'base L2':>10}  predicted | ground truth")
    for row in report["table"]:
        lines.append(f"{row['index']:>7}{row['episode']:>5}{row['frame']:>7}{row['l2']:>10.4f}"
                     f"{row['baseline_l2']:>10.4f}  {row['predicted']} | {row['ground_truth']}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = EvalConfig(
        checkpoint=args.checkpoint, dataset=args.dataset, episodes=args.episodes,
        allow_train_episodes=args.allow_train_episodes, out=args.out, max_samples=args.max_samples,
        reliance_samples=args.reliance_samples, table_indices=args.table_indices, horizon=args.horizon,
        noise_seed=args.noise_seed, collapse_threshold=args.collapse_threshold,
        frame0_skill_threshold=args.frame0_skill_threshold,
        reliance_threshold=args.reliance_threshold, reliance_toward_threshold=args.reliance_toward_threshold,
        precision=args.precision, device=args.device,
        num_threads=args.num_threads, vlm_path=args.vlm_path, plots=not args.no_plots)
    try:
        report = evaluate(config)
    except EvaluationError as exc:
        print(f"eval: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(report))
    if args.out:
        print(f"report: {Path(args.out) / 'eval_report.json'}")
    summary = {"verdict": report["verdict"], "mean_mae": round(report["policy"]["mean_mae"], 5),
               "mean_mae_deg": round(report["policy"]["mean_mae_deg"], 3),
               "ratio_to_baseline": round(report["ratio_to_baseline"]["mean_mae"], 4),
               "min_diversity": report["collapse"].get("min_ratio"),
               "min_diversity_frame0": (report["collapse"].get("frame0") or {}).get("min_ratio"),
               "frame0_skill": (report["collapse"].get("frame0") or {}).get("mean_skill"),
               "image_reliance": report["image_reliance"].get("reliance"),
               "image_reliance_toward": report["image_reliance"].get("toward")}
    print(json.dumps(_jsonable(summary)))
    return 1 if report["verdict"] == FAIL else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roarm-vla-train")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
