"""Scripted pick expert: a pure planner that turns (box pose, current joints) into joint setpoints over time.

ROS-free. From ANY start pose: move above the box with the jaws open and aligned to the box's faces (APPROACH),
go straight down (DESCEND), close the jaws (CLOSE), lift (LIFT), then keep holding (HOLD). Every pose comes from
the shared kinematics module's IK (via arm_model.solve_grasp_ik).

A missed grasp is noticed from the box's measured pose (``check_grasp``, each tick): when the lift is half done and
the box has not risen, the pick is planned again from where the arm is (reopen on the way back up to the pre-grasp,
down again, close), up to ``max_attempts`` times. The simulated gripper does not stall on the box, so the jaws'
angle cannot tell a grasp from a miss; the box's pose can.

Each phase is a list of joint waypoints played back over a duration set by the largest joint move and a speed
limit, with a smooth (cosine) time profile so the arm starts and stops gently. A phase ends when its time is up
AND the measured joints are within a tolerance of its last waypoint (or a settle timeout passes): the expert
waits for a lagging arm instead of running ahead of it, which keeps it working through the real driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from roarm_description import joints

from . import arm_model
from .scene import BoxPose

APPROACH, DESCEND, CLOSE, LIFT, HOLD, FAILED = "APPROACH", "DESCEND", "CLOSE", "LIFT", "HOLD", "FAILED"
G = joints.GRIPPER_INDEX


@dataclass(frozen=True)
class ExpertConfig:
    max_joint_speed: float = 1.0  # rad/s of the fastest arm joint during a move
    gripper_speed: float = 2.0  # rad/s of the gripper while opening/closing
    min_move_time: float = 0.5  # s, shortest phase
    approach_height: float = 0.07  # m, pre-grasp clamp point above the box centre
    lift_height: float = 0.12  # m, how far the box is lifted
    open_margin: float = 0.02  # m, jaws open to box width + this before descending
    close_time: float = 0.8  # s, time given to the jaws to close
    descend_steps: int = 5  # IK waypoints on the straight way down (and up)
    settle_tolerance: float = 0.04  # rad, measured joints this close to a phase's goal end the phase
    settle_timeout: float = 2.0  # s, a phase ends this long after its time even if the arm lags
    max_command_step: float = 0.15  # rad, most any joint's setpoint moves between two calls (the driver
    # rejects steps over its max_step, 0.2 rad: a late tick must not produce a step it would refuse)
    resync_time: float = 0.3  # s: when the measured joints have stood still this long while the last setpoint is
    # more than max_command_step away from them, the driver is refusing our stream (its step reference, the last
    # ACCEPTED command, is behind: a setpoint was lost on the way, e.g. a DDS history overflow on a starved
    # executor or a serial write timeout, and every later one is then too far). The setpoint restarts from the
    # measured pose, where the arm stands: the driver's reference.
    still_tolerance: float = 0.01  # rad: the measured joints "stand still" while they stay within this
    pitches: tuple[float, ...] = (math.pi / 2, 1.35, 1.2, 1.05)  # tool pitches to try, steepest first
    max_attempts: int = 3  # picks tried in one episode (1 = never retry a missed grasp)
    miss_rise: float = 0.01  # m: a box that rose less than this since the start was not grasped ...
    miss_check_progress: float = 0.5  # ... judged once the lift is this far through (or while holding)

    def __post_init__(self):
        if self.max_joint_speed <= 0 or self.gripper_speed <= 0 or self.min_move_time <= 0:
            raise ValueError(f"expert speeds and min_move_time must be > 0: {self}")
        if self.descend_steps < 1:
            raise ValueError("descend_steps must be >= 1")
        if self.max_command_step <= 0 or self.resync_time <= 0 or self.still_tolerance <= 0:
            raise ValueError(f"max_command_step, resync_time and still_tolerance must be > 0: {self}")
        if self.max_attempts < 1 or self.miss_rise <= 0 or not 0 < self.miss_check_progress <= 1:
            raise ValueError(f"max_attempts must be >= 1, miss_rise > 0, miss_check_progress in (0, 1]: {self}")


@dataclass
class _Phase:
    name: str
    waypoints: list[np.ndarray]
    duration: float = 0.0
    start_time: float = 0.0
    start: np.ndarray = field(default_factory=lambda: np.zeros(joints.NUM_JOINTS))


class PlanningError(RuntimeError):
    """The box cannot be picked from here (no IK solution for a pose of the pick)."""


class ScriptedExpert:
    """Feed it the box and the start joints with ``start``, then call ``setpoint(t, q_measured)`` each tick."""

    def __init__(self, config: ExpertConfig = ExpertConfig()):
        self.config = config
        self.phases: list[_Phase] = []
        self.index = 0
        self.failure = ""
        self._last: np.ndarray | None = None  # last setpoint handed out (the driver's step reference)
        self._still_q: np.ndarray | None = None  # measured joints when they last moved
        self._still_since = 0.0
        self._far_since: float | None = None  # when the setpoint went more than max_command_step from the arm
        self.resyncs = 0  # times the stream restarted from the measured pose (the arm had stopped following)
        self.attempt = 1  # which pick of the episode runs (check_grasp starts the next after a miss)
        self._start_box_z: float | None = None  # the box's height when the episode's first pick was planned

    @property
    def phase(self) -> str:
        if self.failure:
            return FAILED
        return self.phases[self.index].name if self.phases else FAILED

    def phase_progress(self, t: float) -> float:
        """How far the current phase is through its planned duration at time t: 0..1 (1 once its time is up)."""
        if not self.phases or self.failure:
            return 1.0
        phase = self.phases[self.index]
        if phase.duration <= 0:
            return 1.0
        return min(max((t - phase.start_time) / phase.duration, 0.0), 1.0)

    def start(self, box: BoxPose, q_start, t: float) -> None:
        """Plan the pick of ``box`` from joints ``q_start`` (URDF) at time ``t`` (s). Raises PlanningError."""
        self.failure = ""
        q_start = np.asarray(q_start, dtype=float)
        try:
            self.phases = self._plan(box, q_start)
        except PlanningError as exc:
            self.failure = str(exc)
            self.phases = []
            raise
        self.index = 0
        self.attempt = 1
        self._start_box_z = float(box.z)
        self._last = q_start.copy()
        self._still_q, self._far_since = None, None
        self._begin(0, q_start, t)

    def check_grasp(self, box: BoxPose, t: float) -> bool:
        """Judge the grasp from the box's measured pose; call it each tick before ``setpoint``. Once the lift is
        ``miss_check_progress`` through (or while holding) with the box less than ``miss_rise`` above where it
        started, the grasp missed: the pick is planned again for ``box`` from the last setpoint (no jump in the
        stream) as the next attempt, or the expert fails after ``max_attempts``. True when a new attempt began."""
        c = self.config
        if self.failure or not self.phases or self._start_box_z is None:
            return False
        lifting = self.phase == LIFT and self.phase_progress(t) >= c.miss_check_progress
        if not (lifting or self.phase == HOLD) or box.z - self._start_box_z >= c.miss_rise:
            return False
        if self.attempt >= c.max_attempts:
            self.failure = f"missed the grasp {self.attempt} time(s): the box did not rise with the lift"
            return False
        try:
            self.phases = self._plan(box, self._last)
        except PlanningError as exc:
            self.failure = f"missed the grasp, and cannot plan again: {exc}"
            return False
        self.attempt += 1
        self._begin(0, self._last, t)
        return True

    def setpoint(self, t: float, q_measured, q_time: float | None = None) -> np.ndarray:
        """Joint setpoint (URDF radians) for time ``t`` given the measured joints; no joint moves more than
        ``max_command_step`` from the previous setpoint (a late call catches up over the next calls); restarts
        from the measured joints when the arm has stopped following (see ExpertConfig.resync_time). q_time: when
        q_measured was measured (default t); the stand-still clock runs on it, so a stale measurement (joint_states
        held up in a busy executor) never looks like an arm standing still."""
        target = self._planned_setpoint(t, q_measured)
        q = np.asarray(q_measured, dtype=float)
        step = self.config.max_command_step
        if self._last is not None and self._arm_stopped_following(t if q_time is None else q_time, q):
            self._last = q.copy()
            self.resyncs += 1
        if self._last is None:
            self._last = target
        else:
            self._last = self._last + np.clip(target - self._last, -step, step)
        return self._last.copy()

    def _arm_stopped_following(self, t: float, q: np.ndarray) -> bool:
        """True when the arm has stood still for resync_time while the setpoint was all that time more than
        max_command_step away (a phase start, where the setpoint runs a little ahead of a resting arm for a
        moment, is not that)."""
        if self._still_q is None or np.max(np.abs(q - self._still_q)) > self.config.still_tolerance:
            self._still_q, self._still_since = q.copy(), t  # moving: restart the stand-still clock
        if np.max(np.abs(self._last - q)) <= self.config.max_command_step:
            self._far_since = None  # standing where we asked (or one step from it): following
            return False
        if self._far_since is None:
            self._far_since = t
        if t - max(self._still_since, self._far_since) < self.config.resync_time:
            return False
        self._far_since = None
        return True

    def _planned_setpoint(self, t: float, q_measured) -> np.ndarray:
        if not self.phases:
            return np.asarray(q_measured, dtype=float).copy()
        phase = self.phases[self.index]
        elapsed = t - phase.start_time
        if elapsed >= phase.duration and self.index < len(self.phases) - 1:
            goal = phase.waypoints[-1]
            err = np.abs(np.asarray(q_measured, dtype=float) - goal)
            if phase.name == CLOSE:
                err[G] = 0.0  # a gripper closing on a box stalls on it: do not wait for 0
            if np.max(err) <= self.config.settle_tolerance or elapsed >= phase.duration + self.config.settle_timeout:
                self._begin(self.index + 1, goal, t)
                phase = self.phases[self.index]
                elapsed = 0.0
        return self._sample(phase, elapsed)

    # --- planning -------------------------------------------------------------------------------------------
    def _plan(self, box: BoxPose, q_start: np.ndarray) -> list[_Phase]:
        c = self.config
        gap = min(box.size_xy + c.open_margin, arm_model.MAX_GAP)
        g_open = arm_model.gripper_angle_for_gap(gap)
        centre = box.position
        pitch = self._pitch_for(box, g_open, q_start)

        def ik(height: float, gripper: float, seed: np.ndarray) -> np.ndarray:
            target = centre + [0.0, 0.0, height]
            q = arm_model.solve_grasp_ik(target, box.size_xy, box.yaw, (pitch,), gripper, seed)
            if q is None:
                raise PlanningError(f"no IK for the clamp point {np.round(target, 3).tolist()} at pitch {pitch:.2f}")
            return q

        pre = ik(c.approach_height, g_open, q_start)
        down = [ik(c.approach_height * (1 - k / c.descend_steps), g_open, pre) for k in range(1, c.descend_steps + 1)]
        grasp = down[-1]
        closed = grasp.copy()
        closed[G] = 0.0
        up = [ik(c.lift_height * k / c.descend_steps, 0.0, closed) for k in range(1, c.descend_steps + 1)]
        return [_Phase(APPROACH, [pre]), _Phase(DESCEND, down), _Phase(CLOSE, [closed]), _Phase(LIFT, up),
                _Phase(HOLD, [up[-1]])]

    def _pitch_for(self, box: BoxPose, g_open: float, seed: np.ndarray) -> float:
        """Steepest pitch at which the whole pick (pre-grasp, grasp, lifted) is reachable."""
        c = self.config
        for pitch in c.pitches:
            ok = all(arm_model.solve_grasp_ik(box.position + [0.0, 0.0, h], box.size_xy, box.yaw, (pitch,), g_open,
                                              seed) is not None
                     for h in (0.0, c.approach_height, c.lift_height))
            if ok:
                return pitch
        raise PlanningError(f"box at {np.round(box.position, 3).tolist()} is out of reach for pitches {c.pitches}")

    # --- playback -------------------------------------------------------------------------------------------
    def _begin(self, index: int, start: np.ndarray, t: float) -> None:
        self.index = index
        phase = self.phases[index]
        phase.start = np.asarray(start, dtype=float).copy()
        phase.start_time = t
        c = self.config
        if phase.name == CLOSE:
            phase.duration = c.close_time
        elif phase.name == HOLD:
            phase.duration = 0.0
        else:
            path = [phase.start] + phase.waypoints
            arm_move = sum(np.max(np.abs(b[:G] - a[:G])) for a, b in zip(path[:-1], path[1:]))
            grip_move = abs(path[-1][G] - path[0][G])
            phase.duration = max(c.min_move_time, arm_move / c.max_joint_speed, grip_move / c.gripper_speed)

    @staticmethod
    def _sample(phase: _Phase, elapsed: float) -> np.ndarray:
        path = [phase.start] + phase.waypoints
        if phase.duration <= 0 or elapsed >= phase.duration:
            return path[-1].copy()
        s = 0.5 - 0.5 * math.cos(math.pi * max(elapsed, 0.0) / phase.duration)  # smooth start and stop
        lengths = np.array([np.max(np.abs(b - a)) for a, b in zip(path[:-1], path[1:])]) + 1e-9
        cum = np.concatenate([[0.0], np.cumsum(lengths)]) / lengths.sum()
        i = min(int(np.searchsorted(cum, s, side="right")) - 1, len(path) - 2)
        local = (s - cum[i]) / (cum[i + 1] - cum[i])
        return path[i] + (path[i + 1] - path[i]) * min(max(local, 0.0), 1.0)
