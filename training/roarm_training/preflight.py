"""Pre-flight checks of a SmolVLA fine-tuning plan: the failures of the seed report, caught before any GPU hour.

The seed report (../shared/seeds/smolvla_roarm_finetune_report.md) lost days to four mistakes, each of which
trained to a low loss and produced a "mean action" policy:
  1. a freshly constructed SmolVLAConfig: random action expert under a frozen VLM (section 12, cause 1);
  2. no normalization of state/action (section 12, cause 2);
  3. no / too short LR schedule (sections 11 and 12, cause 3);
  4. batch size 1 (section 11).
The learning notes add a fifth: every episode starting from the SAME pose lets the model read the answer from
the state and ignore the camera. Each check below returns a Finding; errors stop a run, warnings are printed.

Command line: `roarm-vla-train preflight --dataset DIR [--policy-path ID_OR_DIR] [--batch-size N] [--steps N]`
(exit 1 on any error). `roarm-vla-train fit` runs the same checks before its first step.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

MIN_BATCH_SIZE = 8
MIN_DECAY_FRACTION = 0.5  # the cosine decay should span at least half of the run
MIN_START_POSE_SPREAD_RATIO = 0.25  # start-pose std / action std below this -> state shortcut likely


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning"
    code: str
    message: str

    def __str__(self) -> str:
        return f"[{self.severity.upper()}] {self.code}: {self.message}"


def check_plan(policy: Mapping[str, Any], batch_size: int, steps: int, pretrained_path: str | None) -> list[Finding]:
    """Check a SmolVLA training plan: `policy` holds SmolVLAConfig fields (a dict or the dataclass's __dict__)."""
    findings: list[Finding] = []
    if batch_size < MIN_BATCH_SIZE:
        findings.append(Finding("warning", "batch-size",
                                f"batch_size={batch_size} < {MIN_BATCH_SIZE}: gradient noise collapses SmolVLA to the "
                                "mean action (seed report, section 11). Use >= 8 (LeRobot's default is 64)."))
    expert_only = bool(policy.get("train_expert_only", True))
    freeze_vision = bool(policy.get("freeze_vision_encoder", True))
    if not pretrained_path:
        if expert_only or freeze_vision:
            findings.append(Finding("error", "random-expert",
                                    "no pretrained policy (e.g. lerobot/smolvla_base) and train_expert_only="
                                    f"{expert_only}, freeze_vision_encoder={freeze_vision}: a random action expert "
                                    "would train on top of a frozen VLM (seed report, section 12, cause 1). Start from "
                                    "--policy.path=lerobot/smolvla_base, or train from scratch with both set to false."))
        if not policy.get("load_vlm_weights", False):
            findings.append(Finding("warning", "random-vlm",
                                    "load_vlm_weights=false without a pretrained policy: the VLM is random too; "
                                    "only a from-scratch experiment should do this."))
    mapping = {str(k): str(getattr(v, "value", v)) for k, v in dict(policy.get("normalization_mapping", {})).items()}
    for feature in ("STATE", "ACTION"):
        mode = mapping.get(feature)
        if mode is None or mode.upper() == "IDENTITY":
            findings.append(Finding("error", "no-normalization",
                                    f"{feature} normalization is {mode or 'missing'}: state/action must be normalized "
                                    "with the dataset's stats (seed report, section 12, cause 2)."))
    warmup = int(policy.get("scheduler_warmup_steps", 0) or 0)
    decay = int(policy.get("scheduler_decay_steps", 0) or 0)
    if decay <= 0:
        findings.append(Finding("error", "no-lr-schedule",
                                "scheduler_decay_steps is 0: no LR schedule (seed report, section 12, cause 3)."))
    elif decay < MIN_DECAY_FRACTION * steps:
        findings.append(Finding("warning", "short-decay",
                                f"scheduler_decay_steps={decay} < {MIN_DECAY_FRACTION:.0%} of steps={steps}: the LR "
                                "hits its floor early (seed report, section 11: decay 500 -> collapse)."))
    if warmup > steps:
        findings.append(Finding("warning", "long-warmup", f"warmup ({warmup}) is longer than the run ({steps})."))
    return findings


def check_dataset(root: Path) -> list[Finding]:
    """Check a LeRobotDataset v3 folder: stats for normalization, and start-pose diversity (state shortcut)."""
    findings: list[Finding] = []
    root = Path(root)
    info_path, stats_path = root / "meta" / "info.json", root / "meta" / "stats.json"
    if not info_path.is_file():
        return [Finding("error", "not-a-dataset", f"{info_path} missing: not a LeRobotDataset folder")]
    if not stats_path.is_file():
        return [Finding("error", "no-stats", f"{stats_path} missing: normalization impossible")]
    stats = json.loads(stats_path.read_text())
    for key in ("observation.state", "action"):
        entry = stats.get(key, {})
        if not {"mean", "std"} <= set(entry):
            findings.append(Finding("error", "no-stats", f"stats.json has no mean/std for {key}"))
        elif np.any(np.asarray(entry["std"], dtype=float) <= 0):
            findings.append(Finding("warning", "constant-feature",
                                    f"{key} has a dimension with zero std: it carries no information"))
    starts = _episode_start_states(root)
    action_std = np.asarray(stats.get("action", {}).get("std", []), dtype=float)
    if starts is not None and len(starts) >= 2 and action_std.size == starts.shape[1]:
        ratio = float(np.mean(starts.std(axis=0)) / max(float(np.mean(action_std)), 1e-9))
        if ratio < MIN_START_POSE_SPREAD_RATIO:
            findings.append(Finding("warning", "same-start-pose",
                                    f"episodes start from nearly the same pose (start-pose spread / action spread = "
                                    f"{ratio:.2f}): the policy can read the answer from the state and ignore the "
                                    "camera (learning notes). Record demonstrations from varied start poses."))
    return findings


def _episode_start_states(root: Path) -> np.ndarray | None:
    """observation.state of each episode's first frame, read from the dataset's parquet files."""
    try:
        import pandas as pd
    except ImportError:  # pandas comes with LeRobot; without it the diversity check is skipped
        return None
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        return None
    frames = pd.concat([pd.read_parquet(f, columns=["episode_index", "frame_index", "observation.state"])
                        for f in files])
    first = frames[frames["frame_index"] == 0].sort_values("episode_index")
    return np.stack([np.asarray(s, dtype=float) for s in first["observation.state"]]) if len(first) else None


def _policy_fields(policy_path: str | None) -> dict:
    """Config fields of a pretrained policy (local folder) or SmolVLA's defaults for a fresh one."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    if policy_path and Path(policy_path).is_dir():
        from lerobot.configs.policies import PreTrainedConfig

        return asdict(PreTrainedConfig.from_pretrained(policy_path))
    # A hub id cannot be read offline; its training fields are the defaults, which the checks accept.
    return asdict(SmolVLAConfig())


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    pre = subparsers.add_parser("preflight", help="check a fine-tuning plan and its dataset before training",
                                description="Checks a fine-tuning plan and a dataset against the seed report's failures; exit 1 on any error.")
    pre.add_argument("--dataset", type=Path, required=True, help="LeRobotDataset v3 root folder")
    pre.add_argument("--policy-path", default=None,
                     help="pretrained policy (hub id or folder); omit for a fresh SmolVLAConfig")
    pre.add_argument("--batch-size", type=int, default=64)
    pre.add_argument("--steps", type=int, default=20_000)
    pre.set_defaults(func=run)
    return pre


def run(args: argparse.Namespace) -> int:
    findings = check_plan(_policy_fields(args.policy_path), args.batch_size, args.steps, args.policy_path)
    findings += check_dataset(args.dataset)
    for finding in findings:
        print(finding, file=sys.stderr if finding.severity == "error" else sys.stdout)
    errors = sum(f.severity == "error" for f in findings)
    print(f"preflight: {errors} error(s), {len(findings) - errors} warning(s)")
    return 1 if errors else 0
