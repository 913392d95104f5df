"""PNG plots of the offline evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(name: str) -> str:
    return name.replace("_to_", "->").replace("_link", "")


def plot_episode_trace(path: Path, frames: np.ndarray, truth: np.ndarray, pred_frames: np.ndarray,
                       pred_first: np.ndarray, mean_action: np.ndarray, joint_names: Sequence[str],
                       joint_units: str, episode: int) -> Path:
    """Per joint: ground-truth action over the episode, the policy's first predicted action, the mean action."""
    plt = _pyplot()
    n = len(joint_names)
    cols = 3
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    unit = "deg" if joint_units == "degrees" else "rad"
    for j, name in enumerate(joint_names):
        ax = axes[j // cols][j % cols]
        ax.plot(frames, truth[:, j], color="black", lw=1.6, label="ground truth")
        ax.plot(pred_frames, pred_first[:, j], "o-", color="tab:blue", ms=3, lw=1.0, label="policy (1st action)")
        ax.axhline(mean_action[j], color="tab:red", ls="--", lw=1.0, label="mean-action baseline")
        ax.set_title(_short(name), fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"held-out episode {episode}: predicted vs ground-truth action", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_loss_curve(path: Path, steps: Sequence[float], losses: Sequence[float], source: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, "o-", ms=3, color="tab:blue")
    if min(losses) > 0 and max(losses) / min(losses) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"training loss ({Path(source).name})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_checks(path: Path, report: dict) -> Path:
    """Left: prediction diversity per joint (policy vs mean-action baseline) with the collapse threshold.
    Right: image reliance and its direction cosine with the reliance threshold."""
    plt = _pyplot()
    names = [_short(n) for n in report["joint_names"]]
    collapse, base = report["collapse"], report["baseline_collapse"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1.3]})
    x = np.arange(len(names))
    policy_ratio = [np.nan if r is None else r for r in collapse["ratio"]]
    base_ratio = [np.nan if r is None else r for r in base["ratio"]]
    frame0_ratio = [np.nan if r is None else r for r in (collapse.get("frame0") or {}).get("ratio", [None] * len(x))]
    left.bar(x - 0.27, policy_ratio, 0.27, label="policy", color="tab:blue")
    left.bar(x, frame0_ratio, 0.27, label="policy at frame 0", color="tab:cyan")
    left.bar(x + 0.27, base_ratio, 0.27, label="mean-action baseline", color="tab:red")
    left.axhline(collapse["threshold"], color="black", ls="--", lw=1, label=f"FAIL below {collapse['threshold']}")
    left.axhline(1.0, color="grey", ls=":", lw=1)
    left.set_xticks(x, names, rotation=25, fontsize=7)
    left.set_ylabel("std(pred) / std(truth)")
    skill = (collapse.get("frame0") or {}).get("mean_skill")
    left.set_title(f"prediction diversity: {collapse['verdict']}"
                   + (f" (frame-0 skill {skill:.2f}, FAIL below {collapse['frame0'].get('skill_threshold')})"
                      if skill is not None else ""), fontsize=10)
    left.legend(fontsize=7)
    rel = report["image_reliance"]
    value = rel.get("reliance")
    right.bar([0], [value if value is not None else 0.0], 0.5, color="tab:green", label="reliance")
    if rel.get("cosine") is not None:
        right.bar([1], [rel["cosine"]], 0.5, color="tab:olive", label="direction cosine")
    right.axhline(rel["threshold"], color="black", ls="--", lw=1, label=f"FAIL below {rel['threshold']}")
    right.set_xticks([0, 1], ["reliance", "cosine"], fontsize=8)
    right.set_title(f"image swap: {rel['verdict']}", fontsize=10)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
