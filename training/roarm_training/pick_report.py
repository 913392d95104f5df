"""The pick pipeline's report: success rates with 95 % Wilson intervals, a bar plot, a contact sheet.

ROS-free (matplotlib Agg, OpenCV). The rates come from roarm_training.stats (the one Wilson implementation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from roarm_training.stats import SuccessRate, success_rate_of

# Report keys the issue names (the last line `make demo` prints carries them).
REQUIRED_KEYS = ("policy_success_rate", "policy_trials", "baseline_success_rate", "expert_success_rate",
                 "eval_seeds", "checkpoint")


def rate_of(results: Sequence) -> SuccessRate:
    """SuccessRate of TrialResult-like objects (``.success``) or booleans."""
    return success_rate_of(bool(getattr(r, "success", r)) for r in results)


def plot_success_bars(path: str | Path, rates: dict[str, SuccessRate], title: str = "") -> Path:
    """One bar per controller: success rate with its 95 % Wilson interval, 'k/n' written above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rates)
    values = [rates[n].rate for n in names]
    lower = [rates[n].rate - rates[n].ci95_low for n in names]
    upper = [rates[n].ci95_high - rates[n].rate for n in names]
    colours = {"policy": "tab:blue", "baseline": "tab:red", "expert": "tab:green"}
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.bar(names, values, color=[colours.get(n, "tab:grey") for n in names], alpha=0.8)
    ax.errorbar(names, values, yerr=[lower, upper], fmt="none", ecolor="black", capsize=6, lw=1.2)
    for x, name in enumerate(names):
        r = rates[name]
        ax.text(x, min(1.02, r.ci95_high + 0.03), f"{r.successes}/{r.trials}", ha="center", fontsize=9)
    ax.axhline(0.8, color="grey", ls="--", lw=0.8)
    ax.text(len(names) - 0.5, 0.81, "goal 80 %", fontsize=8, color="grey", ha="right")
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("success rate (95 % Wilson CI)")
    ax.set_title(title or "closed-loop pick in the simulated world", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_contact_sheet(path: str | Path, rows: dict[str, list]) -> Path | None:
    """One row of evenly spaced camera frames per controller's first trial (labelled); None without frames."""
    import cv2

    from roarm_sim.report import contact_sheet

    strips = []
    for name, frames in rows.items():
        if not frames:
            continue
        strip = contact_sheet(frames, columns=6, rows=1, tile_width=213)
        label = np.zeros((26, strip.shape[1], 3), dtype=np.uint8)
        cv2.putText(label, f"{name}: first trial", (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                    cv2.LINE_AA)
        strips.append(np.vstack([label, strip]))
    if not strips:
        return None
    width = max(s.shape[1] for s in strips)
    sheet = np.vstack([np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips])
    path = Path(path)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def summary_lines(rates: dict[str, SuccessRate]) -> list[str]:
    return [f"{name:>8}: {rate.summary() if rate.trials else 'not run (0 trials)'}" for name, rate in rates.items()]
