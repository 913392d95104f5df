"""Why does a learned pick fail? A ROS-free closed-loop replay of a checkpoint that records the grasp geometry.

    python -m roarm_training.pick_diagnose --checkpoint outputs/pick_v2/fit/checkpoints/last/pretrained_model \
        --seeds 10000 --count 20 --n-action-steps 5 --out outputs/pick_v2/diagnose

The trials stage (pick_trials.py) runs the real nodes and only learns SUCCESS or TIMEOUT. This replays the same
episodes (same seeds: sim_world's draw) through the same pieces without ROS: the sim's world, box physics and
renderer (roarm_sim.world), the firmware simulator's servo model, the policy node's own runtime, chunk scheduler
and plan smoothing (vla_policy_node: PolicyRuntime, ChunkScheduler, CommandPlanner with vla_policy.yaml's merge
and smoothing settings), and records per control step what the grasp rule of roarm_sim.box_physics looks at:
the box centre's axial and lateral offset from the jaws' clamp point, the jaw gap against the box width, the
"open around the box" latch. Each failed episode is then put in one class:

- ``never_within_tolerance``: the clamp point never came within the grasp tolerance of the box centre
  (a position error; the closest approach is reported in cm, axial and lateral);
- ``jaws_not_open_inside``: it came within tolerance, but never with the jaws wider than the box;
- ``closed_outside``: the jaws were open around the box, but closed only after the clamp point had left it;
- ``grasped_not_lifted``: the box was grasped, but not held high enough long enough.

It is a diagnosis tool, not the success measure: inference here is instantaneous plus a fixed latency and the
driver is a 50 Hz sampler of the plan, so the closed-loop rate it prints need not equal the trials stage's.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CLASSES = ("success", "never_within_tolerance", "jaws_not_open_inside", "closed_outside", "grasped_not_lifted")


@dataclass
class StepRecord:
    t: float
    q: list[float]
    gap: float  # jaw gap, m
    axial: float  # |box centre - clamp point| along the tool, m
    lateral: float  # ... across the tool, m
    open_around: bool
    grasped: bool


@dataclass
class EpisodeDiagnosis:
    seed: int
    status: str
    cls: str
    box_size: float
    closest_axial_cm: float  # at the closest approach (largest of axial/tol, lateral/tol smallest)
    closest_lateral_cm: float
    closest_gap_cm: float  # jaw gap there
    closest_time: float
    first_close_time: float | None  # first time the jaws went narrower than the box after being wider
    inside_open_steps: int  # control steps inside the tolerance with the jaws wider than the box
    steps: list[StepRecord] = field(default_factory=list)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("steps")
        return d


def classify(records: list[StepRecord], box_size: float, tol_axial: float, tol_lateral: float,
             success: bool) -> tuple[str, int, int]:
    """(class, index of the closest approach, steps inside with open jaws) from an episode's records."""
    norm = [max(r.axial / tol_axial, r.lateral / tol_lateral) for r in records]
    closest = int(np.argmin(norm)) if norm else 0
    inside_open = sum(1 for r, n in zip(records, norm) if n <= 1.0 and r.gap >= box_size)
    if success:
        return "success", closest, inside_open
    if any(r.grasped for r in records):
        return "grasped_not_lifted", closest, inside_open
    if not norm or min(norm) > 1.0:
        return "never_within_tolerance", closest, inside_open
    if inside_open == 0:
        return "jaws_not_open_inside", closest, inside_open
    return "closed_outside", closest, inside_open


def node_settings(config_file: Path | None = None) -> dict:
    """vla_policy's merge/smoothing parameters from config/vla_policy.yaml (the node's single source)."""
    import yaml

    from roarm_vla_bringup.graph import config_path

    path = config_file or config_path("vla_policy.yaml")
    return yaml.safe_load(Path(path).read_text())["vla_policy"]["ros__parameters"]


def diagnose_episode(runtime, seed: int, *, n_action_steps: int, latency: float = 0.05, time_limit: float = 15.0,
                     task: str = "Pick up the white box", settings: dict | None = None,
                     physics_rate: float = 100.0, driver_rate: float = 50.0,
                     camera_rate: float = 30.0) -> EpisodeDiagnosis:
    """One episode of ``seed`` driven by the policy (see the module docstring). Each inference draws fresh
    flow-matching noise as the node does (noise_seed -1), from a generator seeded by (seed, inference number) so
    that a replay is repeatable."""
    from roarm_description import joints
    from roarm_description.servo_model import ServoBank
    from roarm_sim import arm_model
    from roarm_sim.outcome import STATUS_NAMES, SUCCESS, OutcomeRules
    from roarm_sim.world import SimWorld
    from vla_policy_node.chunk_scheduler import ChunkScheduler, MergeRule, SchedulerConfig
    from vla_policy_node.command_plan import CommandPlanner, SmoothingConfig

    s = settings or node_settings()
    world = SimWorld(rules=OutcomeRules(time_limit=time_limit))
    episode = world.new_episode(seed)
    tol = world.physics.tolerance
    servos = ServoBank(initial=joints.urdf_to_firmware(episode.start_pose))
    world.start_clock(0.0)
    dt_step = 1.0 / (runtime.info.fps or 10.0)
    chunk = runtime.chunk_size
    lead_steps = max(1, chunk - n_action_steps)
    scheduler = ChunkScheduler(SchedulerConfig(
        step_period=dt_step, merge_rule=MergeRule.parse(s.get("merge_rule", "weighted_average")),
        old_weight=float(s.get("merge_old_weight", 0.3)), new_weight=float(s.get("merge_new_weight", 0.7)),
        ensemble_decay=float(s.get("ensemble_decay", 0.01)), rebase_when_idle=bool(s.get("rebase_when_idle", True))))
    max_step = float(s.get("max_joint_step", 0.0)) or math.inf
    planner = CommandPlanner(dt_step, SmoothingConfig(ema_alpha=float(s.get("ema_alpha", 1.0)),
                                                      max_joint_step=max_step,
                                                      lower_limits=np.asarray(joints.LOWER_LIMITS, float),
                                                      upper_limits=np.asarray(joints.UPPER_LIMITS, float)))
    dt = 1.0 / physics_rate
    per_drive = max(1, int(round(physics_rate / driver_rate)))
    per_frame = max(1, int(round(physics_rate / camera_rate)))
    per_record = max(1, int(round(physics_rate * dt_step)))
    q = joints.firmware_to_urdf(servos.quantized_position())
    plan = None
    pending: tuple[float, np.ndarray, float] | None = None  # (ready time, chunk, observation stamp)
    records: list[StepRecord] = []
    t, k = 0.0, 0
    first_close = None
    was_open = False
    inferences = 0
    state = world.step(q, t)
    while state.status == 0:
        if pending is not None and t >= pending[0]:
            _, actions, stamp = pending
            pending = None
            scheduler.add_chunk(actions, stamp, t)
            plan = planner.build(scheduler.planned(t), t, q) or plan
        if pending is None and k % per_frame == 0:
            end = scheduler.plan_end(t)
            if end is None or end - t <= lead_steps * dt_step + 1e-9:
                actions = runtime.predict(world.render(q), q, task, noise_seed=seed * 1000 + inferences).actions
                inferences += 1
                pending = (t + latency, actions, t)
        if k % per_drive == 0 and plan is not None:
            servos.command(joints.urdf_to_firmware(plan.sample(t)), 0, 0)
        servos.step(dt)
        t += dt
        k += 1
        q = joints.firmware_to_urdf(servos.quantized_position())
        state = world.step(q, t)
        gap = arm_model.jaw_gap(q[joints.GRIPPER_INDEX])
        box = world.physics.box
        if gap >= box.size_xy:
            was_open = True
        elif was_open and first_close is None:
            first_close = t
        if k % per_record == 0:
            axial, lateral = world.physics.clamp_offset(arm_model.tcp_transform(q))
            records.append(StepRecord(round(t, 3), [round(float(v), 4) for v in q], gap, axial, lateral,
                                      bool(world.physics._open_around_box), bool(world.physics.grasped)))
    box_size = float(episode.box.size_xy)
    cls, closest, inside_open = classify(records, box_size, tol.axial, tol.lateral, state.status == SUCCESS)
    r = records[closest] if records else StepRecord(0.0, [], 0.0, math.inf, math.inf, False, False)
    return EpisodeDiagnosis(seed, STATUS_NAMES[state.status], cls, box_size, round(r.axial * 100, 2),
                            round(r.lateral * 100, 2), round(r.gap * 100, 2), r.t, first_close, inside_open,
                            records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m roarm_training.pick_diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--seeds", type=int, default=10_000, help="first seed (the trials stage's --eval-seed)")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--n-action-steps", type=int, default=5)
    p.add_argument("--latency", type=float, default=0.05, help="s from observation to chunk")
    p.add_argument("--time-limit", type=float, default=15.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="folder for diagnose.json (per-step records included)")
    args = p.parse_args(argv)
    from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig

    runtime = PolicyRuntime(RuntimeConfig(checkpoint=args.checkpoint, num_threads=args.threads))
    runtime.resolve_spec()
    started = time.monotonic()
    out = []
    for seed in range(args.seeds, args.seeds + args.count):
        d = diagnose_episode(runtime, seed, n_action_steps=args.n_action_steps, latency=args.latency,
                             time_limit=args.time_limit)
        out.append(d)
        print(f"seed {seed}: {d.status:8s} {d.cls:24s} box {d.box_size * 100:.1f} cm; closest axial "
              f"{d.closest_axial_cm:.1f} lateral {d.closest_lateral_cm:.1f} cm (tol 1.5/1.2) gap there "
              f"{d.closest_gap_cm:.1f} cm at {d.closest_time:.1f} s; first close "
              f"{'-' if d.first_close_time is None else f'{d.first_close_time:.1f} s'}; "
              f"inside+open steps {d.inside_open_steps}", flush=True)
    counts = {c: sum(d.cls == c for d in out) for c in CLASSES}
    fails = [d for d in out if d.cls != "success"]
    headline = {"checkpoint": str(args.checkpoint), "n_action_steps": args.n_action_steps, "episodes": len(out),
                "classes": counts,
                "median_closest_axial_cm": float(np.median([d.closest_axial_cm for d in fails])) if fails else None,
                "median_closest_lateral_cm": float(np.median([d.closest_lateral_cm for d in fails])) if fails else None,
                "wall_s": round(time.monotonic() - started, 1)}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"diagnose_n{args.n_action_steps}.json").write_text(json.dumps(
            {"headline": headline, "episodes": [dict(d.summary(), steps=[asdict(r) for r in d.steps])
                                                for d in out]}) + "\n")
    print(json.dumps(headline), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
