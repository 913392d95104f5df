"""Closed-loop pick trials in the simulated world, through the real nodes, and the mean-action baseline checkpoint.

`run_trials` starts graph.py's `pick` sim graph under GraphRunner (one process per node, the same table and YAMLs as
`make demo-expert` and pick.launch.py) with either the scripted expert or vla_policy loading a checkpoint, and runs
one episode per seed through sim/reset_episode + sim/episode_outcome. The episode loop is demo.py's (its overrides,
outcome wait and vla/enable toggling are imported, not copied); what this adds is the per-trial record (seed,
status, time, detail) the pipeline's report needs, and the camera frames of the first trial for a contact sheet.

`mean_action_checkpoint` turns a trained checkpoint into the MEAN-ACTION BASELINE for closed loop: the same folder
with the action un-normalizer's std set to 0 (min/max/quantiles to the mean), so LeRobot's post-processor maps
every prediction to the dataset's mean action (inverse MEAN_STD: x * std + mean). vla_policy then plans a constant
chunk at the mean pose through exactly the code path of the real policy. It must fail: it never goes to the box.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

POSTPROCESSOR_STATS_GLOB = "policy_postprocessor_step_*_unnormalizer_processor.safetensors"
SPREAD_STATS = ("std",)  # set to 0
BOUND_STATS = ("min", "max", "q01", "q10", "q50", "q90", "q99")  # set to the mean


@dataclass
class TrialResult:
    seed: int
    status: str  # SUCCESS | TIMEOUT
    elapsed: float  # s from the episode's start to its outcome
    detail: str

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


@dataclass
class TrialRun:
    controller: str  # expert | policy
    checkpoint: str | None
    results: list[TrialResult] = field(default_factory=list)
    wall_s: float = 0.0
    frames: list = field(default_factory=list)  # (t, RGB image) of the first trial

    def as_dict(self) -> dict:
        return {"controller": self.controller, "checkpoint": self.checkpoint, "wall_s": round(self.wall_s, 1),
                "results": [asdict(r) for r in self.results]}


# ------------------------------------------------------------------------------------------------ baseline
def mean_action_checkpoint(checkpoint: str | Path, out: str | Path, mean_action: np.ndarray | None = None) -> Path:
    """A copy of ``checkpoint`` whose post-processor outputs the mean action for every input.

    The weights file is linked, not copied. ``mean_action`` (dataset units, [D]) replaces the stats' mean when given;
    by default the mean stored in the checkpoint (the training dataset's, from meta/stats.json) is kept.
    """
    from safetensors.torch import load_file, save_file
    import torch

    checkpoint, out = Path(checkpoint).resolve(), Path(out)
    files = sorted(checkpoint.glob(POSTPROCESSOR_STATS_GLOB))
    if not files:
        raise FileNotFoundError(f"{checkpoint} has no action un-normalizer ({POSTPROCESSOR_STATS_GLOB})")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for item in checkpoint.iterdir():
        target = out / item.name
        if item.name.endswith(".safetensors") and item not in files:
            target.symlink_to(item)  # the weights: unchanged
        elif item.is_dir():
            shutil.copytree(item, target, symlinks=True)
        else:
            shutil.copy2(item, target)
    for path in files:
        stats = load_file(str(path))
        mean = stats.get("action.mean")
        if mean is None:
            raise ValueError(f"{path} holds no action.mean: cannot build the mean-action baseline")
        if mean_action is not None:
            mean = torch.as_tensor(np.asarray(mean_action), dtype=mean.dtype)
            stats["action.mean"] = mean.clone()
        for name in SPREAD_STATS:
            if f"action.{name}" in stats:
                stats[f"action.{name}"] = torch.zeros_like(stats[f"action.{name}"])
        for name in BOUND_STATS:
            if f"action.{name}" in stats:
                stats[f"action.{name}"] = mean.clone()
        target = out / path.name
        target.unlink()
        save_file(stats, str(target))
    (out / "BASELINE.txt").write_text(f"mean-action baseline built from {checkpoint}: the action un-normalizer's "
                                      "std is 0, so every prediction is the mean action.\n")
    return out


# ------------------------------------------------------------------------------------------------ trials
def run_trials(controller: str, seeds: list[int], *, checkpoint: str | Path | None = None, time_limit: float = 15.0,
               overrides: list[str] | None = None, keep_frames: bool = True, record_fps: float = 5.0,
               log: Callable[[str], None] = print, echo: Callable[[str], None] | None = None,
               on_result: Callable[[TrialResult], None] | None = None) -> TrialRun:
    """One episode per seed in the simulated pick graph; ``controller`` 'expert' or 'policy' (needs checkpoint).

    ``overrides``: `roarm-vla run --set` items (NAME:=VALUE) for the graph, e.g. vla_policy.inference_lead_steps:=8.
    A node that dies ends the run (runner.NodeExited propagates, with the node's name and exit code).
    """
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from roarm_sim.episode_client import EpisodeClient
    from roarm_sim.outcome import STATUS_NAMES
    from roarm_sim.report import FrameRecorder
    from roarm_vla_bringup.demo import _set_enabled, _wait_for_outcome, demo_overrides
    from roarm_vla_bringup.graph import load_graph
    from roarm_vla_bringup.runner import GraphRunner

    if controller not in ("expert", "policy"):
        raise ValueError(f"controller must be 'expert' or 'policy', got {controller!r}")
    if controller == "policy" and checkpoint is None:
        raise ValueError("policy trials need a checkpoint")
    if not seeds:
        return TrialRun(controller, str(checkpoint) if checkpoint else None)
    # One override list serves every controller: items for nodes this graph does not have (vla_policy.* with the
    # expert) are left out, not an error.
    nodes = set(load_graph("pick", sim=True, controller=controller).node_names)
    kept = [o for o in overrides or [] if "." not in o.split(":=")[0] or o.split(".", 1)[0] in nodes]
    demo_args = argparse.Namespace(time_limit=float(time_limit), camera_rate=None, set=kept)
    graph = load_graph("pick", sim=True, controller=controller,
                       overrides=demo_overrides(demo_args, Path(checkpoint) if checkpoint else None))
    camera_rate = float(graph.node("sim_world").parameters().get("camera_rate", 30.0))
    recorder = FrameRecorder(every=int(round(camera_rate / max(record_fps, 0.1))))
    run = TrialRun(controller, str(Path(checkpoint).resolve()) if checkpoint else None)
    started = time.monotonic()
    quiet = echo if echo is not None else (lambda line: None)
    with GraphRunner(graph, log=lambda m: log(f"[trials:{controller}] {m}"), echo=quiet) as runner:
        helper = runner.create_node(f"roarm_vla_pick_trials_{controller}")
        episodes = EpisodeClient(helper)
        helper.create_subscription(Image, "camera/image_raw", recorder, qos_profile_sensor_data)
        enable = None
        if controller == "policy":
            from std_srvs.srv import SetBool

            enable = helper.create_client(SetBool, "vla/enable")
        runner.wait_for_topic("joint_states", count=5, timeout=60.0)
        for i, seed in enumerate(seeds):
            if enable is not None:
                _set_enabled(enable, False)  # the policy must not fight the reset move
            if i == 0 and keep_frames:
                recorder.start()
            reply = episodes.reset(int(seed))
            if enable is not None:
                _set_enabled(enable, True)
            outcome = _wait_for_outcome(runner, episodes, reply.episode_index, timeout=time_limit + 30.0)
            if i == 0 and keep_frames:
                runner.spin_for(0.5)  # a few frames of the outcome
                recorder.stop()
            result = TrialResult(int(seed), STATUS_NAMES[outcome.status], round(float(outcome.elapsed), 2),
                                 str(outcome.detail))
            run.results.append(result)
            log(f"[trials:{controller}] {i + 1}/{len(seeds)} seed {seed}: {result.status} after "
                f"{result.elapsed:.1f} s ({result.detail})")
            if on_result is not None:
                on_result(result)
    run.wall_s = time.monotonic() - started
    run.frames = list(recorder.frames)
    return run


def save_run(run: TrialRun, path: str | Path) -> None:
    Path(path).write_text(json.dumps(run.as_dict(), indent=2) + "\n")


def load_run(path: str | Path) -> TrialRun:
    data = json.loads(Path(path).read_text())
    return TrialRun(data["controller"], data.get("checkpoint"),
                    [TrialResult(**r) for r in data.get("results", [])], float(data.get("wall_s", 0.0)))
