"""The leader arm in simulation: a second firmware simulator moved by a scripted "hand".

The leader's arm_driver opens this simulator's pty like a real second RoArm-M3; teleop_relay switches the leader's
torque off through that driver, and a :class:`ScriptedLeader` thread then moves the simulated arm along a smooth
path with ``FirmwareSimulator.guide`` (what a person's hand does to an arm with torque off; with torque on the
servos pull it back to their goal, as on the real arm). The driver reports the motion on ``leader/joint_states``.

    roarm-sim-leader --link /tmp/roarm_leader --motion wave     # prints the port, runs until SIGINT/SIGTERM

Motions: ``wave`` (every arm joint swings around the start pose, the gripper opens and closes; period ``--period``
s) and ``still`` (the leader rests at the start pose: move it with your own commands).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import threading
import time

import numpy as np

from roarm_description import joints

MOTIONS = ("wave", "still")
# Start pose: elbow up (forearm horizontal), the pose a person starts a demonstration from; URDF radians.
START_POSE = np.array([0.0, 0.0, math.pi / 2, 0.0, 0.0, 0.3])
# Swing of each joint in the wave motion, rad (the base turns most, the wrist least; the gripper opens and closes).
WAVE_AMPLITUDE = np.array([0.5, 0.25, 0.3, 0.3, 0.2, 0.3])


def leader_pose(motion: str, t: float, period: float = 6.0) -> np.ndarray:
    """Where the scripted hand holds the leader at ``t`` seconds (URDF radians, JOINT_NAMES order)."""
    if motion == "still":
        return START_POSE.copy()
    if motion != "wave":
        raise ValueError(f"motion must be one of {list(MOTIONS)}, got {motion!r}")
    phase = 2 * math.pi * t / period
    # every term is 0 at t = 0: the path starts at START_POSE (where start() puts the arm)
    offsets = np.array([math.sin(phase), 0.5 * math.sin(phase), -math.sin(phase), math.sin(2 * phase),
                        math.sin(3 * phase), 0.5 * (1 - math.cos(phase))])
    return joints.clamp_to_limits(START_POSE + WAVE_AMPLITUDE * offsets)


class ScriptedLeader:
    """Moves ``sim`` (a started FirmwareSimulator) by hand along ``motion`` at ``rate`` Hz in its own thread."""

    def __init__(self, sim, motion: str = "wave", period: float = 6.0, rate: float = 50.0):
        leader_pose(motion, 0.0, period)  # validates the motion
        self.sim, self.motion, self.period, self.rate = sim, motion, period, rate
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def start(self) -> "ScriptedLeader":
        self.sim.set_joints(leader_pose(self.motion, 0.0, self.period))
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="scripted_leader", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(1.0 / self.rate):
            if self.sim.torque_on:
                continue  # a hand cannot move an arm holding its pose; wait for teleop_relay's torque off
            self.sim.guide(leader_pose(self.motion, time.monotonic() - self.started, self.period))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def main(argv: list[str] | None = None) -> int:
    from roarm_driver.firmware_sim import FirmwareSimulator

    parser = argparse.ArgumentParser(description="Simulated leader arm: firmware simulator + scripted hand motion.")
    parser.add_argument("--link", default=None, help="stable symlink to the pty (the leader driver's port)")
    parser.add_argument("--port-file", default=None, help="also write the port path to this file")
    parser.add_argument("--motion", choices=MOTIONS, default="wave")
    parser.add_argument("--period", type=float, default=6.0, help="seconds per wave cycle")
    args = parser.parse_args(argv)
    sim = FirmwareSimulator(link_path=args.link)
    port = sim.start()
    leader = ScriptedLeader(sim, args.motion, args.period).start()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(port + "\n")
        os.replace(tmp, args.port_file)
    print(port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        leader.stop()
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
