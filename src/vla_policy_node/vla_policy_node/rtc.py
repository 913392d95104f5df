"""Real-time chunking (RTC) leftovers: which part of the previous chunk guides the next inference. ROS-free.

LeRobot's RTC (``predict_action_chunk(..., prev_chunk_left_over, inference_delay)``) guides a new chunk towards
the steps of the previous chunk that have not been executed when the new observation was taken. With the previous
chunk's step 0 executed at ``start`` (steady time) and steps ``dt`` apart, an observation stamped ``t`` has seen
``done = round((t - start) / dt)`` steps executed; the leftover is ``model_actions[:, done:]``. The inference delay
(in steps) is the previous inference's latency rounded up: the steps that will run while this inference computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PreviousChunk:
    start: float  # steady time at which its step 0 runs
    model_actions: Any  # [1, T, A] in the model's space (torch tensor or array): sliced along dim 1
    latency: float  # s, observation stamp -> chunk placed


def rtc_arguments(previous: PreviousChunk | None, obs_stamp: float, step_period: float) -> dict:
    """{prev_chunk_left_over, inference_delay} for the inference of an observation stamped ``obs_stamp``;
    {} when there is no previous chunk or nothing of it is left (the observation is before or after it)."""
    if previous is None:
        return {}
    steps = int(previous.model_actions.shape[1])
    done = int(round((obs_stamp - previous.start) / step_period))
    if not 0 <= done < steps:
        return {}
    return {"prev_chunk_left_over": previous.model_actions[:, done:],
            "inference_delay": int(math.ceil(max(previous.latency, 0.0) / step_period - 1e-9))}
