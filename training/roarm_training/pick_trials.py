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
    paths: list = field(default_factory=list)  # (t, hand_tcp path) of each chunk in the first trial (policy)
    camera: object = None  # sim_world's CameraModel (to draw the paths on the frames)

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


# ------------------------------------------------------------------------------------------------ predicted paths
class ChunkPathRecorder:
    """vla/action_chunk messages -> (t, hand_tcp path in base_link) while recording; t on the frames' clock."""

    def __init__(self) -> None:
        from roarm_vla_bringup.action_markers import default_tcp_fk

        self.fk, _ = default_tcp_fk()
        self.paths: list[tuple[float, np.ndarray]] = []
        self.t0: float | None = None  # set with the frame recorder's start

    def start(self) -> None:
        self.paths, self.t0 = [], time.monotonic()

    def stop(self) -> None:
        self.t0 = None

    def __call__(self, msg) -> None:
        if self.t0 is None:
            return
        from roarm_vla_bringup.action_markers import chunk_path

        try:
            path = chunk_path(list(msg.joint_names), list(msg.positions), int(msg.num_steps), msg.step_period,
                              self.fk)
        except ValueError:  # a malformed chunk is the node's problem; the video just lacks it
            return
        self.paths.append((time.monotonic() - self.t0, path.points))


def draw_paths(frames: list, paths: list, camera) -> list:
    """Each frame with the latest chunk path received before it drawn on it (cyan = now -> magenta = chunk end)."""
    import cv2

    out = []
    for t, image in frames:
        image = image.copy()
        earlier = [p for tp, p in paths if tp <= t]
        if earlier:
            uv, depth = camera.project(earlier[-1])
            pts = [(int(round(u)), int(round(v))) for (u, v), d in zip(uv, depth) if d > 0]
            for k in range(len(pts) - 1):
                f = k / max(len(pts) - 2, 1)
                colour = (int(255 * f), int(230 * (1 - f) + 25 * f), int(255 * (1 - f) + 204 * f))  # RGB
                cv2.line(image, pts[k], pts[k + 1], colour, 2, cv2.LINE_AA)
            for point in pts[:1]:
                cv2.circle(image, point, 4, (0, 230, 255), -1, cv2.LINE_AA)
        out.append((t, image))
    return out


def camera_of(graph):
    """sim_world's camera model from the graph's parameters (what it renders with)."""
    from roarm_sim.scene import CameraModel

    p = graph.node("sim_world").parameters()
    return CameraModel(width=int(p.get("image_width", 640)), height=int(p.get("image_height", 480)),
                       horizontal_fov_deg=float(p.get("horizontal_fov_deg", 64.0)),
                       position=tuple(float(v) for v in p.get("camera_position", (0.58, -0.4, 0.46))),
                       look_at=tuple(float(v) for v in p.get("camera_look_at", (0.13, 0.0, 0.07))))


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

    from roarm_sim.outcome import STATUS_NAMES
    from roarm_sim.report import FrameRecorder
    from roarm_vla_bringup.demo import demo_overrides
    from roarm_vla_bringup.graph import load_graph
    from roarm_vla_bringup.runner import GraphRunner
    from roarm_vla_bringup.sim_episodes import run_episodes

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
        helper.create_subscription(Image, "camera/image_raw", recorder, qos_profile_sensor_data)
        chunks = ChunkPathRecorder()
        if controller == "policy":
            from roarm_interfaces.msg import ActionChunk

            helper.create_subscription(ActionChunk, "vla/action_chunk", chunks, 10)
        runner.wait_for_topic("joint_states", count=5, timeout=60.0)

        def record(i, seed, _episode_index, outcome):
            result = TrialResult(seed, STATUS_NAMES[outcome.status], round(float(outcome.elapsed), 2),
                                 str(outcome.detail))
            run.results.append(result)
            log(f"[trials:{controller}] {i + 1}/{len(seeds)} seed {seed}: {result.status} after "
                f"{result.elapsed:.1f} s ({result.detail})")
            if on_result is not None:
                on_result(result)

        run_episodes(runner, helper, seeds, time_limit=time_limit, policy=controller == "policy",
                     first_episode_capture=[recorder, chunks] if keep_frames else [], on_outcome=record)
    run.wall_s = time.monotonic() - started
    run.frames = list(recorder.frames)
    run.paths = list(chunks.paths)
    run.camera = camera_of(graph)
    return run


def save_run(run: TrialRun, path: str | Path) -> None:
    Path(path).write_text(json.dumps(run.as_dict(), indent=2) + "\n")


def load_run(path: str | Path) -> TrialRun:
    data = json.loads(Path(path).read_text())
    return TrialRun(data["controller"], data.get("checkpoint"),
                    [TrialResult(**r) for r in data.get("results", [])], float(data.get("wall_s", 0.0)))
