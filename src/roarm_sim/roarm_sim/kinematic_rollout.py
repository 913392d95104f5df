"""Run whole pick episodes without ROS: the scripted expert drives a simulated servo bank (the firmware
simulator's own servo model, roarm_description.servo_model) and the world judges. Fast enough for tests of the expert
on many seeded boxes and start poses; the ROS graph (demo.py, the end-to-end test) runs the same pieces through
the real driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roarm_description import joints
from roarm_description.servo_model import ServoBank

from .expert import PlanningError, ScriptedExpert, ExpertConfig
from .outcome import RUNNING, STATUS_NAMES
from .perturbation import ExecutionPerturbation, PerturbationConfig, perturbed_setpoint
from .scene import BoxPose
from .world import SimWorld


@dataclass
class RolloutResult:
    seed: int
    status: int
    elapsed: float
    detail: str
    min_clearance: float  # 0 when every arm point stayed above the table top, -1 when one went into it
    rejected_steps: int  # setpoints the real driver would refuse (a joint step over driver_max_step)
    frames: list  # rendered frames when asked for
    max_offset: float = 0.0  # rad, largest executed-minus-intended setpoint difference (a DART perturbation)
    attempts: int = 1  # picks the expert tried (more than 1 after a missed grasp)


def run_episode(seed: int, world: SimWorld | None = None, expert_config: ExpertConfig = ExpertConfig(),
                command_rate: float = 20.0, physics_rate: float = 100.0, render_every: int = 0,
                assumed_box_size: float | None = 0.03, late_tick_probability: float = 0.0,
                driver_max_step: float = 0.2, lost_command_probability: float = 0.0,
                perturbation: PerturbationConfig = PerturbationConfig()) -> RolloutResult:
    """One episode from ``seed``: the arm starts at the episode's start pose (as after a reset), the expert plans
    from the measured joints, setpoints go to the servos at ``command_rate``, the world steps at ``physics_rate``.
    assumed_box_size: the box edge the expert plans with (the node only knows the box's pose, not its size, so it
    assumes its ``box_size`` parameter); None = the true size. late_tick_probability: chance that a command tick
    is skipped (a busy executor), to check that the expert's steps stay within the driver's max_step anyway.
    lost_command_probability: chance that a setpoint the expert sent never reaches the driver (DDS history
    overflow on a starved executor, a serial write timeout): the driver's step reference stays behind.
    perturbation: DART noise on what the expert executes (perturbation.py; std 0 = none), seeded by ``seed``."""
    from .scene import arm_clear_of_table  # local: keeps the module's import light

    world = world or SimWorld()
    episode = world.new_episode(seed)
    servos = ServoBank(initial=joints.urdf_to_firmware(episode.start_pose))
    world.start_clock(0.0)
    expert = ScriptedExpert(expert_config)
    perturber = ExecutionPerturbation(perturbation, seed)
    max_offset = 0.0
    q = joints.firmware_to_urdf(servos.quantized_position())
    frames = []

    def planned_box() -> BoxPose:  # what the node knows: the box's pose, its size assumed
        box = world.box
        return box if assumed_box_size is None else BoxPose(*box.position, box.yaw, assumed_box_size,
                                                            assumed_box_size)

    try:
        expert.start(planned_box(), q, 0.0)
    except PlanningError as exc:
        return RolloutResult(seed, 2, 0.0, f"planning failed: {exc}", 0.0, 0, frames)
    dt = 1.0 / physics_rate
    per_command = max(1, int(round(physics_rate / command_rate)))
    min_clear = np.inf
    t, k = 0.0, 0
    rng = np.random.default_rng(seed)
    reference = q.copy()  # the driver measures each step from its last accepted command
    rejected = 0
    state = world.step(q, t)
    while state.status == RUNNING:
        if k % per_command == 0 and rng.random() >= late_tick_probability:
            expert.check_grasp(planned_box(), t)
            intended, setpoint = perturbed_setpoint(expert, perturber, t, q)
            max_offset = max(max_offset, float(np.max(np.abs(setpoint - intended))))
            if rng.random() < lost_command_probability:
                pass  # lost on the way: neither the driver's reference nor the servos see it
            elif np.max(np.abs(setpoint - reference)) > driver_max_step:
                rejected += 1  # as arm_driver does: refused, the arm keeps its last goal
            else:
                reference = setpoint
                servos.command(joints.urdf_to_firmware(setpoint), 0, 0)
        servos.step(dt)
        t += dt
        k += 1
        q = joints.firmware_to_urdf(servos.quantized_position())
        state = world.step(q, t)
        if k % 5 == 0 and not arm_clear_of_table(q, world.scene.table_top_z, 0.0):
            min_clear = -1.0
        if render_every and k % render_every == 0:
            frames.append(world.render(q))
    return RolloutResult(seed, state.status, state.elapsed, f"{STATUS_NAMES[state.status]}: {state.detail}",
                         float(min_clear if np.isfinite(min_clear) else 0.0), rejected, frames, max_offset,
                         expert.attempt)


def main(argv=None) -> int:
    """`python -m roarm_sim.kinematic_rollout --episodes 500`: the expert's success rate without ROS."""
    import argparse
    import json
    import time

    from .report import wilson_interval

    parser = argparse.ArgumentParser(prog="python -m roarm_sim.kinematic_rollout", description=main.__doc__)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="first seed; episode i uses seed + i")
    parser.add_argument("--late-tick-probability", type=float, default=0.3,
                        help="chance that a command tick is skipped (a busy executor)")
    parser.add_argument("--perturbation", type=float, default=0.0, metavar="RAD",
                        help="DART: std of the smooth offset added to what the expert executes (perturbation.py)")
    parser.add_argument("--miss-fraction", type=float, default=0.0,
                        help="share of the episodes whose first pick misses the box on purpose (perturbation.py)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = [run_episode(args.seed + i, late_tick_probability=args.late_tick_probability,
                           perturbation=PerturbationConfig(std=args.perturbation, miss_fraction=args.miss_fraction))
               for i in range(args.episodes)]
    successes = sum(r.status == 1 for r in results)
    low, high = wilson_interval(successes, len(results))
    for r in results:
        if r.status != 1:
            print(f"seed {r.seed}: {r.detail}")
    times = [r.elapsed for r in results if r.status == 1]
    print(f"expert success {successes}/{len(results)} = {successes / len(results):.1%} (95% Wilson CI "
          f"{low:.1%} .. {high:.1%}); time to success mean {np.mean(times):.2f} s, max {np.max(times):.2f} s; "
          f"driver-refused steps {sum(r.rejected_steps for r in results)}; arm below the table in "
          f"{sum(r.min_clearance < 0 for r in results)} episodes; {sum(r.attempts > 1 for r in results)} episodes "
          f"picked again after a miss")
    print(json.dumps({"episodes": len(results), "successes": successes, "ci95": [round(low, 4), round(high, 4)],
                      "retried_episodes": sum(r.attempts > 1 for r in results),
                      "mean_time_s": round(float(np.mean(times)), 2), "wall_s": round(time.monotonic() - started, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
