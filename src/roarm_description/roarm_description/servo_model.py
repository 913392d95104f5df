"""Servo dynamics of the simulated RoArm-M3 (used by firmware_sim). ROS-free, time passed in.

Each joint follows a trapezoidal velocity profile toward its goal, like a Feetech STS servo:
- speed ``spd`` in servo steps/s (4096 steps per turn), 0 = the servo's maximum;
- acceleration ``acc`` 8-bit, 1 unit = 100 steps/s^2 (the STS register unit), 0 = the servo's maximum.
Positions are firmware radians (gripper pi = closed). Goals are clamped to the firmware's own ranges.
Loads (0.1 % of stall torque) are proportional to the tracking error plus a gravity term on shoulder and elbow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from roarm_description import joints

STEPS_PER_TURN = 4096
RAD_PER_STEP = 2 * math.pi / STEPS_PER_TURN
ACC_UNIT_STEPS = 100.0  # steps/s^2 per acc unit (Feetech STS)

# Firmware clamps, firmware radians (../shared/roarm_m3_facts.md).
FIRMWARE_LOWER = np.array([-math.pi, -math.pi / 2, -0.785, -math.pi / 2, -math.pi, joints.FIRMWARE_GRIPPER_MIN])
FIRMWARE_UPPER = np.array([math.pi, math.pi / 2, math.pi, math.pi / 2, math.pi, joints.FIRMWARE_GRIPPER_MAX])
FIRMWARE_HOME = joints.urdf_to_firmware(joints.HOME_POSITIONS)


@dataclass
class ServoParams:
    max_speed_steps: float = 3000.0  # steps/s at spd = 0 (about 4.6 rad/s, an STS3215 at 12 V)
    max_accel_steps: float = 25000.0  # steps/s^2 at acc = 0
    load_per_rad: float = 1500.0  # load units per rad of tracking error (a P-controller's effort)
    gravity_load: tuple[float, ...] = (0.0, 180.0, 120.0, 40.0, 0.0, 0.0)  # load units at a horizontal link
    deadband_rad: float = 0.5 * RAD_PER_STEP


class ServoBank:
    """Six joints, each with position, velocity, goal and a (speed, accel) limit from the last command."""

    def __init__(self, params: ServoParams | None = None, initial: np.ndarray | None = None):
        self.params = params or ServoParams()
        self.position = np.array(FIRMWARE_HOME if initial is None else initial, dtype=float)
        self.velocity = np.zeros(joints.NUM_JOINTS)
        self.goal = self.position.copy()
        self.vmax = np.full(joints.NUM_JOINTS, self.params.max_speed_steps * RAD_PER_STEP)
        self.amax = np.full(joints.NUM_JOINTS, self.params.max_accel_steps * RAD_PER_STEP)
        self.torque_on = True
        self.blocked_gripper_at: float | None = None  # firmware rad where an object stops the gripper closing

    def speed_limits(self, spd: float, acc: float) -> tuple[float, float]:
        p = self.params
        v = p.max_speed_steps if spd <= 0 else min(float(spd), p.max_speed_steps)
        a = p.max_accel_steps if acc <= 0 else min(float(acc) * ACC_UNIT_STEPS, p.max_accel_steps)
        return v * RAD_PER_STEP, a * RAD_PER_STEP

    def command(self, goal: np.ndarray, spd: float, acc: float, mask: np.ndarray | None = None) -> None:
        """New goal (firmware rad) for the joints in ``mask`` (all when None), clamped to the firmware ranges."""
        m = np.ones(joints.NUM_JOINTS, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        g = np.clip(np.asarray(goal, dtype=float), FIRMWARE_LOWER, FIRMWARE_UPPER)
        v, a = self.speed_limits(spd, acc)
        self.goal[m] = g[m]
        self.vmax[m] = v
        self.amax[m] = a

    def set_torque(self, on: bool) -> None:
        if on and not self.torque_on:
            # An STS servo re-enabled holds where it is now (the firmware writes the present position as goal).
            self.goal = self.position.copy()
        self.torque_on = on
        if not on:
            self.velocity[:] = 0.0

    def teleport(self, position: np.ndarray) -> None:
        """Put the joints somewhere (test set-up, or a hand moving a torque-off arm); goal follows when torque is off."""
        self.position = np.clip(np.asarray(position, dtype=float), FIRMWARE_LOWER, FIRMWARE_UPPER)
        self.velocity[:] = 0.0
        if not self.torque_on:
            self.goal = self.position.copy()

    def step(self, dt: float) -> None:
        if dt <= 0 or not self.torque_on:
            return
        goal = self.goal.copy()
        if self.blocked_gripper_at is not None:
            g = joints.GRIPPER_INDEX
            # Closing = increasing firmware g: an object stops the fingers at blocked_gripper_at.
            goal[g] = min(goal[g], max(self.blocked_gripper_at, self.position[g]))
        err = goal - self.position
        # Speed that can still stop at the goal: v^2 = 2 a d.
        v_stop = np.sqrt(2.0 * self.amax * np.abs(err))
        v_target = np.sign(err) * np.minimum(self.vmax, v_stop)
        dv = np.clip(v_target - self.velocity, -self.amax * dt, self.amax * dt)
        self.velocity = self.velocity + dv
        new = self.position + self.velocity * dt
        # Never overshoot the goal in one step.
        crossed = np.sign(goal - new) != np.sign(err)
        new = np.where(crossed | (np.abs(err) < self.params.deadband_rad), goal, new)
        self.velocity = np.where(crossed | (np.abs(err) < self.params.deadband_rad), 0.0, self.velocity)
        self.position = new

    def loads(self) -> np.ndarray:
        """Servo loads, 0.1 % of stall torque, integers as the firmware reports them."""
        if not self.torque_on:
            return np.zeros(joints.NUM_JOINTS, dtype=int)
        p = self.params
        goal = self.goal
        load = p.load_per_rad * (goal - self.position)
        s, e = self.position[1], self.position[2]
        # Gravity: shoulder carries both links (leaning forward from vertical), elbow the forearm (pi/2 = horizontal).
        load[1] += p.gravity_load[1] * math.sin(s) + 0.5 * p.gravity_load[2] * math.cos(s + e - math.pi / 2)
        load[2] += p.gravity_load[2] * math.cos(s + e - math.pi / 2)
        load[3] += p.gravity_load[3] * math.cos(s + e + self.position[3] - math.pi / 2)
        return np.clip(np.round(load), -1000, 1000).astype(int)

    def quantized_position(self) -> np.ndarray:
        """What the servos report: whole encoder steps."""
        return np.round(self.position / RAD_PER_STEP) * RAD_PER_STEP
