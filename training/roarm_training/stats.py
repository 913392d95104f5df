"""Success-rate statistics for online evaluation (closed-loop trials in the simulator or on the arm).

The 95 % Wilson score interval itself has ONE implementation, ``roarm_sim.report.wilson_interval``: the demo and
the simulator's rollouts (ROS packages, installed in the robot's Docker image) need it, and they must not depend on
this offline package (it is not installed there), while this package already depends on the ROS-side packages. So
the dependency points from training to ``roarm_sim``, never back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from roarm_sim.report import wilson_interval

__all__ = ["SuccessRate", "success_rate", "success_rate_of", "wilson_interval"]


@dataclass(frozen=True)
class SuccessRate:
    successes: int
    trials: int
    rate: float  # successes / trials (0 when there was no trial)
    ci95_low: float
    ci95_high: float

    def as_dict(self) -> dict:
        out = asdict(self)
        for key in ("rate", "ci95_low", "ci95_high"):
            out[key] = round(out[key], 4)
        return out

    def summary(self) -> str:
        """``7/10 = 70% (95% Wilson CI 40% .. 89%)``"""
        return (f"{self.successes}/{self.trials} = {self.rate:.0%} "
                f"(95% Wilson CI {self.ci95_low:.0%} .. {self.ci95_high:.0%})")


def success_rate(successes: int, trials: int) -> SuccessRate:
    """Successes over trials with a 95 % Wilson interval; raises ValueError on impossible counts."""
    successes, trials = int(successes), int(trials)
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} successes over {trials} trials")
    low, high = wilson_interval(successes, trials)
    return SuccessRate(successes, trials, successes / trials if trials else 0.0, low, high)


def success_rate_of(outcomes: Iterable[bool]) -> SuccessRate:
    """The success rate of a sequence of trial outcomes (True = success)."""
    outcomes = [bool(o) for o in outcomes]
    return success_rate(sum(outcomes), len(outcomes))
