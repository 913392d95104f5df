"""The leader arm in simulation: a second firmware simulator moved by a scripted "hand".

The leader's arm_driver opens this simulator's pty like a real second RoArm-M3; teleop_relay switches the leader's
torque off through that driver, and a :class:`ScriptedLeader` thread then moves the simulated arm along a smooth
path with ``FirmwareSimulator.guide`` (what a person's hand does to an arm with torque off; with torque on the
servos pull it back to their goal, as on the real arm). The driver reports the motion on ``leader/joint_states``.

    roarm-sim-leader --link /tmp/roarm_leader --motion wave     # prints the port, runs until SIGINT/SIGTERM

In a graph (record, sim, controller leader) the same thing runs as the node ``sim_leader`` (:class:`SimLeaderNode`,
console script ``sim_leader``): parameters ``link``, ``motion``, ``period``, ``rate`` from teleop_relay.yaml; graph.py
hands its ``link`` to the leader driver's ``port``. The node publishes nothing: the leader's arm_driver does.

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


def _node_parameters():
    from roarm_common.parameters import Param

    return (
        Param("link", "/tmp/roarm_vla_sim_leader", "stable symlink to the simulated leader's pty (graph.py gives "
              "the same path to leader_arm_driver.port)"),
        Param("motion", "wave", "scripted hand motion: wave (every joint swings) or still", choices=MOTIONS),
        Param("period", 6.0, "s per wave cycle", range=(0.5, 600.0)),
        Param("rate", 50.0, "Hz at which the scripted hand moves the leader", range=(1.0, 500.0)),
    )


def _node_class():
    from rclpy.node import Node

    from roarm_common.parameters import declare_parameters

    class SimLeaderNode(Node):
        """The simulated leader as a graph node: the firmware simulator and its scripted hand live as long as it."""

        PARAMETERS = _node_parameters()

        def __init__(self, node_name: str = "sim_leader", **kwargs):
            from roarm_driver.firmware_sim import FirmwareSimulator

            super().__init__(node_name, **kwargs)
            p = declare_parameters(self, self.PARAMETERS)
            self.sim = FirmwareSimulator(link_path=str(p["link"]))
            port = self.sim.start()
            self.leader = ScriptedLeader(self.sim, str(p["motion"]), float(p["period"]), float(p["rate"])).start()
            self.get_logger().info(f"simulated leader arm on {port} ({p['motion']}); its driver opens this port")

        def destroy_node(self):
            self.leader.stop()
            self.sim.wait_for_host_to_close()  # the leader's driver first: no false "serial link lost"
            self.sim.stop()
            return super().destroy_node()

    return SimLeaderNode


def __getattr__(name: str):
    # rclpy is imported only when the node is asked for: roarm-sim-leader and the tests' FirmwareSimulator use
    # this module without ROS.
    if name == "SimLeaderNode":
        cls = _node_class()
        globals()["SimLeaderNode"] = cls
        return cls
    raise AttributeError(name)


def node_main(args: list[str] | None = None) -> int:
    from roarm_common.node_main import run_node

    return run_node(__getattr__("SimLeaderNode"), args)


def main(argv: list[str] | None = None) -> int:
    import sys

    if "--ros-args" in (sys.argv[1:] if argv is None else argv):
        return node_main(argv)  # started as a graph node (the runner's `python -c ... main()`, launch)
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
        sim.wait_for_host_to_close()
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
