"""The arm driver's logic without ROS: state machine, setpoint acceptance, trajectory execution, move planning,
feedback checks and the serial-line guard. Plain Python; the steady clock and the serial write are passed in.

:class:`DriverCore` is what ``arm_driver_node.py`` wires to topics, services, timers and the serial link:

- ``link_up()`` / ``link_down(reason)``: the serial link's events (output mode set, no motion on reconnect);
- ``on_message(receipt, message)``: one decoded line; returns the checked :class:`~roarm_driver.protocol.Feedback`
  to publish, or None (another T code, a bad line: counted and dropped, or the driver inactive);
- ``on_trajectory(names, times_from_start, positions, stamp_age)``: the ``joint_trajectory`` topic. One point =
  a streamed setpoint (written at once); several = a timed plan executed by :meth:`tick`;
- ``tick()``: the command timer at ``command_rate``: samples the plan, writes, runs the watchdog and the feedback
  keep-alive;
- ``plan_move`` / ``move_status`` / ``end_move``: the ``move_joints`` action's planning and bookkeeping;
- ``set_torque``, ``estop``, ``reset_estop``: the services; ``snapshot()``: every counter for diagnostics.

Every T:102 goes through :meth:`DriverCore.write_pose`, which applies the :class:`~roarm_driver.line_guard.LineGuard`
(velocity limit x elapsed time since the previous write, and ``max_step``) at the moment of writing.

Setpoint acceptance (before anything is planned), in order: names, NaN/inf, URDF limits (clamp or reject), then
``max_step`` from the reference pose (the last accepted command; reject or clamp). A setpoint refused only by
``max_step`` is accepted when it is within ``max_step`` of another pose the servos may hold: the pose of a write
reported failed, the last pose written, or the arm's MEASURED pose (a controller that restarts from the measured pose
after a hold would otherwise be refused while the arm lags behind the last command). Unnamed joints keep the
reference pose. Preconditions: active, no e-stop, torque on, link up, a pose known.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from roarm_description import joints
from roarm_driver import protocol as proto
from roarm_driver.line_guard import LineGuard
from roarm_driver.safety import (
    CommandRejected,
    CommandWatchdog,
    EStopLatch,
    SafetyConfig,
    check_command,
    check_pose,
    merge_named,
)
from roarm_driver.trajectory import TrajectoryError, min_duration
from roarm_driver.trajectory_executor import TrajectoryExecutor

FEEDBACK_MODES = ("stream", "request")
ESTOP_ACTIONS = ("torque_off", "hold")

PRECONDITION_TEXT = {
    "inactive": "driver is not active",
    "estop": "e-stop is latched: call reset_estop",
    "torque_off": "torque is off (hand-guiding): call set_torque true",
    "disconnected": "serial link to the arm is down",
    "no_state": "no feedback from the arm yet",
}


@dataclass(frozen=True)
class DriverConfig:
    feedback_mode: str = "stream"
    estop_action: str = "torque_off"
    command_rate: float = 50.0  # Hz of the command tick (plans are sampled and written at this rate)
    speed: int = 0
    acceleration: int = 0
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    velocity_limits: tuple[float, ...] = tuple(joints.VELOCITY_LIMITS)  # rad/s per joint, at the serial line
    max_velocity: float = 1.0  # rad/s of move_joints goals with duration 0
    watchdog_timeout: float = 0.5
    max_command_age: float = 1.0  # s: a stamped command older than this is refused
    feedback_margin: float = 0.35  # rad beyond the URDF limits a T:1051 joint may read before the line is dropped
    request_timeout: float = 0.1
    feedback_timeout: float = 0.5
    bad_feedback_warn_s: float = 2.0  # diagnostics stay WARN this long after a dropped feedback line

    def __post_init__(self) -> None:
        if self.feedback_mode not in FEEDBACK_MODES:
            raise ValueError(f"feedback_mode must be one of {FEEDBACK_MODES}, got {self.feedback_mode!r}")
        if self.estop_action not in ESTOP_ACTIONS:
            raise ValueError(f"estop_action must be one of {ESTOP_ACTIONS}, got {self.estop_action!r}")
        if not self.command_rate > 0:
            raise ValueError(f"command_rate must be > 0, got {self.command_rate}")
        if not self.max_velocity > 0:
            raise ValueError(f"max_velocity must be > 0, got {self.max_velocity}")
        if len(self.velocity_limits) != joints.NUM_JOINTS or not all(v > 0 for v in self.velocity_limits):
            raise ValueError(f"velocity_limits needs {joints.NUM_JOINTS} values > 0, got {list(self.velocity_limits)}")
        proto.joints_command(joints.HOME_POSITIONS, self.speed, self.acceleration)  # range check of spd/acc


def velocity_limits_from(overrides: Sequence[float]) -> tuple[float, ...]:
    """Per-joint limits: the URDF's ``<limit velocity>`` where the override is 0, else the override (rad/s)."""
    values = list(overrides)
    if len(values) != joints.NUM_JOINTS:
        raise ValueError(f"velocity_limits needs {joints.NUM_JOINTS} values (0 = URDF), got {values}")
    return tuple(float(v) if v > 0 else float(u) for v, u in zip(values, joints.VELOCITY_LIMITS))


class DriverCore:
    def __init__(self, config: DriverConfig, clock: Callable[[], float], send: Callable[[bytes], bool],
                 log: Callable[[str, str], None] | None = None):
        """``clock``: steady seconds; ``send(bytes) -> bool``: one line to the serial port (False: not written);
        ``log(level, text)`` with level "info", "warn" or "error" (the node throttles warnings)."""
        self.config = config
        self.clock = clock
        self.send = send
        self.log = log or (lambda level, text: None)
        self.executor = TrajectoryExecutor()
        self.guard = LineGuard(config.velocity_limits, config.safety.max_step, 1.0 / config.command_rate)
        self.watchdog = CommandWatchdog(config.watchdog_timeout)
        self.estop_latch = EStopLatch()
        self.counters: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.active = False
        self.connected = False
        self.torque_on = True
        self.state = "idle"  # idle, streaming, trajectory, move_joints, holding, torque_off, estop
        self.measured: np.ndarray | None = None  # URDF rad, latest accepted feedback
        self.loads: np.ndarray | None = None
        self.feedback_time: float | None = None
        self.feedback_times: deque[float] = deque(maxlen=400)
        self.accepted: np.ndarray | None = None  # last accepted command (reference of the step rule)
        self.maybe_target: np.ndarray | None = None  # a pose whose write was reported failed
        self.pending = False  # a streamed setpoint was clamped at the line: ticks keep moving toward it
        self.move_owner: object | None = None  # the move_joints goal that owns the plan
        self.move_stop_reason = ""
        self.last_rejection = ""
        self.last_bad_feedback = ""
        self.last_bad_feedback_time: float | None = None
        self.latencies: deque[float] = deque(maxlen=500)
        self._last_request = 0.0
        self._last_mode_set = 0.0

    # ================================================================== link events
    def link_up(self) -> None:
        """The port (re)opened: the arm may have been moved or rebooted. Nothing stale is kept; nothing moves."""
        self.stop_motion("serial link reconnected")
        self.accepted = None
        self.maybe_target = None
        self.measured = None
        self.feedback_time = None
        self.guard.reset()
        self.connected = True
        mode = proto.OUTPUT_STREAM if self.config.feedback_mode == "stream" else proto.OUTPUT_SILENT
        self.send(proto.encode(proto.output_mode(mode)))
        self._last_mode_set = self.clock()
        if self.estop_latch.latched and self.config.estop_action == "torque_off":
            # Latched while the link was down (or the firmware rebooted with torque on): make it true now.
            self.send(proto.encode(proto.torque(False)))
            self.torque_on = False
        if self.config.feedback_mode == "request":
            self._request_feedback(self.clock())

    def link_down(self, reason: str) -> None:
        self.connected = False
        self.stop_motion(f"serial link lost ({reason})")
        self.counters["disconnects"] += 1

    # ================================================================== feedback
    def on_message(self, receipt: float, message: dict[str, Any]) -> proto.Feedback | None:
        """A decoded line from the arm. Returns the feedback to publish (None: nothing to publish)."""
        if message.get("T") != proto.T_FEEDBACK:
            self.counters[f"ignored_T{message.get('T')}"] += 1  # debug echoes (mode 1) and other replies
            return None
        if self.config.feedback_mode == "request":
            self._request_feedback(receipt)  # the reply is in, whatever it holds: ask for the next one
        try:
            feedback = proto.parse_feedback(message, margin=self.config.feedback_margin)
        except proto.FeedbackError as exc:
            self.counters["bad_feedback"] += 1
            self.counters[f"bad_feedback_{exc.kind}"] += 1
            self.last_bad_feedback = str(exc)[:200]
            self.last_bad_feedback_time = receipt
            self.log("warn", f"feedback line dropped: {exc}")
            return None
        self.measured = feedback.positions
        self.loads = feedback.loads
        self.feedback_time = receipt
        self.feedback_times.append(receipt)
        return feedback if self.active else None

    def _request_feedback(self, now: float) -> None:
        self._last_request = now
        self.send(proto.encode(proto.feedback_request()))

    def feedback_rate(self, window: float = 1.0) -> float:
        now = self.clock()
        return sum(1 for t in self.feedback_times if now - t <= window) / window

    def feedback_suspect(self) -> bool:
        """A feedback line was dropped recently (diagnostics WARN)."""
        t = self.last_bad_feedback_time
        return t is not None and self.clock() - t <= self.config.bad_feedback_warn_s

    # ================================================================== preconditions and references
    def precondition(self) -> str | None:
        """Why no command can run now (None: it can)."""
        if not self.active:
            return "inactive"
        if self.estop_latch.latched:
            return "estop"
        if not self.torque_on:
            return "torque_off"
        if not self.connected:
            return "disconnected"
        if self.reference() is None:
            return "no_state"
        return None

    def reference(self) -> np.ndarray | None:
        """Pose the next command's step is measured from: the last accepted command, else the measured pose."""
        if self.accepted is not None:
            return self.accepted.copy()
        return None if self.measured is None else self.measured.copy()

    def commanded(self) -> np.ndarray | None:
        """Where the servos were last told to go (else the measured pose): a new plan starts from here."""
        written = self.guard.reference
        if written is not None:
            return written
        return None if self.measured is None else self.measured.copy()

    def refuse(self, rule: str, message: str) -> str:
        self.rejections[rule] += 1
        self.last_rejection = f"{rule}: {message}"
        self.log("warn", f"command rejected ({rule}): {message}")
        return message

    def _warn(self, warnings: list[str]) -> None:
        for w in warnings:
            self.counters["clamped"] += 1
            self.log("warn", w)

    def stop_motion(self, reason: str) -> None:
        """Stop the plan (the servos hold the last pose written); a running move_joints goal ends with reason."""
        self.executor.clear()
        self.pending = False
        self.watchdog.disarm()
        if self.move_owner is not None:
            self.move_stop_reason = reason
            self.move_owner = None

    # ================================================================== writing
    def write_pose(self, q: Sequence[float], now: float | None = None) -> bool:
        """Write one T:102 for ``q`` (URDF rad) after the line guard; True when the bytes went to the OS."""
        now = self.clock() if now is None else now
        limited = self.guard.limit(q, now, self.measured)
        if limited.was_clamped:
            self.log("warn", "T:102 clamped at the serial line (velocity/max_step): "
                     + ", ".join(f"{n} {float(np.asarray(q)[i] - limited.positions[i]):+.3f}"
                                 for i, n in enumerate(joints.JOINT_NAMES) if limited.clamped[i]))
        ok = self.send(proto.encode(proto.joints_command(limited.positions, self.config.speed,
                                                         self.config.acceleration)))
        self.guard.written(limited.positions, now, ok, limited)
        if ok:
            self.maybe_target = None
            self.counters["setpoints_sent"] += 1
        else:
            self.counters["setpoints_lost"] += 1
            self.maybe_target = limited.positions.copy()
        self._last_write_clamped = limited.was_clamped
        return ok

    def hold_measured(self) -> bool:
        """Write the measured pose (stop where the arm is): no motion is asked, so the guard is rebased."""
        if self.measured is None:
            return False
        now = self.clock()
        q = self.measured.copy()
        ok = self.send(proto.encode(proto.joints_command(q, self.config.speed, self.config.acceleration)))
        if ok:
            self.guard.rebase(q, now)
            self.accepted = q
            self.counters["setpoints_sent"] += 1
        return ok

    # ================================================================== joint_trajectory
    def check_setpoint(self, names: Sequence[str], positions: Sequence[float]):
        """Acceptance of a streamed setpoint (see the module docstring)."""
        reference = self.reference()
        try:
            return check_command(names, positions, reference, self.config.safety)
        except CommandRejected as exc:
            if exc.rule != "max_step" or self.accepted is None:
                raise
            for alternative in (self.maybe_target, self.guard.reference, self.measured):
                if alternative is None:
                    continue
                try:
                    return check_command(names, positions, alternative, self.config.safety, base=reference)
                except CommandRejected as again:
                    if again.rule != "max_step":
                        raise
            raise exc

    def on_trajectory(self, names: Sequence[str], times_from_start: Sequence[float],
                      positions: Sequence[Sequence[float]], stamp_age: float | None) -> bool:
        """The joint_trajectory topic. ``stamp_age``: ROS now - header stamp in s (None: zero stamp = now).
        Returns True when the command was accepted."""
        receipt = self.clock()
        why = self.precondition()
        if why is not None:
            self.refuse(why, PRECONDITION_TEXT[why])
            return False
        if not positions:
            self.refuse("empty", "joint_trajectory without points")
            return False
        if stamp_age is not None and stamp_age > self.config.max_command_age:
            self.refuse("stale", f"header stamp {stamp_age:.3f} s old (max_command_age "
                                 f"{self.config.max_command_age:g} s)")
            return False
        try:
            if len(positions) == 1:
                checked = self.check_setpoint(names, positions[0])
                self._warn(checked.warnings)
                self.stop_motion("preempted by a joint_trajectory setpoint")
                self.accepted = checked.positions.copy()
                self.executor.hold(checked.positions, receipt)
                written = self.write_pose(checked.positions, receipt)
                self.pending = self._last_write_clamped
                if written:
                    self.latencies.append(self.clock() - receipt)
                self.watchdog.feed(receipt)
                self.state = "streaming"
                return written
            start = receipt - stamp_age if stamp_age is not None else receipt
            poses = []
            base = self.reference()
            for point in positions:
                checked = check_pose(merge_named(names, point, base), self.config.safety)
                self._warn(checked.warnings)
                poses.append(checked.positions)
                base = checked.positions
            self._replace_plan(start, times_from_start, poses, receipt)
        except (CommandRejected, TrajectoryError) as exc:
            rule = exc.rule if isinstance(exc, CommandRejected) else "trajectory"
            self.refuse(rule, str(exc))
            return False
        return True

    def _replace_plan(self, start: float, tfs: Sequence[float], poses: list[np.ndarray], now: float) -> None:
        if self.move_owner is not None or self.state != "trajectory":
            self.stop_motion("preempted by a joint_trajectory")
        self.watchdog.disarm()
        self.pending = False
        current = self.commanded()
        result = self.executor.replace(start, tfs, poses, now, current)
        self.accepted = np.asarray(poses[-1], dtype=float).copy()
        self.counters["trajectories"] += 1
        self.counters["points_skipped"] += result.skipped
        self.state = "trajectory"

    # ================================================================== command tick
    def tick(self) -> None:
        now = self.clock()
        running = self.executor.active and self.active and self.connected
        if running and self.state in ("trajectory", "move_joints"):
            q = self.executor.tick(now)
            self.write_pose(q, now)
        elif running and self.state == "streaming" and self.pending:
            self.write_pose(self.executor.sample(now), now)
            self.pending = self._last_write_clamped
        if self.watchdog.check(now):
            self.counters["watchdog_trips"] += 1
            self.state = "holding"
            self.executor.clear()
            self.pending = False
            written = self.guard.reference
            if written is not None and self.connected:
                self.write_pose(written, now)  # re-assert the last pose written: the arm holds there
            self.log("warn", f"no setpoint for {self.watchdog.timeout:g} s: holding the last pose")
        if not self.connected:
            return
        # Feedback keep-alive: a dropped reply (request mode) or a firmware reset into mode 0 (stream mode).
        last = self.feedback_time or 0.0
        if self.config.feedback_mode == "request":
            if now - max(self._last_request, last) > self.config.request_timeout:
                self.counters["feedback_rerequests"] += 1
                self._request_feedback(now)
        elif now - max(self._last_mode_set, last) > self.config.feedback_timeout:
            self._last_mode_set = now
            self.counters["stream_restarts"] += 1
            self.send(proto.encode(proto.output_mode(proto.OUTPUT_STREAM)))

    # ================================================================== move_joints and start-up moves
    def plan_move(self, names: Sequence[str], positions: Sequence[float], duration: float,
                  owner: object | None) -> tuple[np.ndarray, float, float]:
        """Plan a straight joint move from the commanded pose; returns (target, duration, start). Its duration is
        at least the one that keeps every joint under max_velocity. Raises CommandRejected."""
        why = self.precondition()
        if why is not None:
            raise CommandRejected(why, PRECONDITION_TEXT[why])
        reference = self.reference()
        checked = check_pose(merge_named(names, positions, reference), self.config.safety)
        self._warn(checked.warnings)
        target = checked.positions
        start_pose = self.commanded()
        duration = max(float(duration), min_duration(start_pose, target, self.config.max_velocity))
        self.stop_motion("preempted by a new move")
        now = self.clock()
        if duration > 0:
            self.executor.start_plan([now, now + duration], [start_pose, target])
        else:
            self.executor.hold(target, now)
        self.accepted = target.copy()
        self.move_owner = owner
        self.state = "move_joints" if owner is not None else "trajectory"
        return target, duration, now

    def end_move(self, owner: object, reason: str = "") -> None:
        """The goal ended (success, timeout, cancel): its plan stops (the servos hold the last pose written)."""
        if self.move_owner is owner:
            self.executor.clear()
            self.move_owner = None
            self.move_stop_reason = reason
            if self.state == "move_joints":
                self.state = "idle"

    # ================================================================== services
    def set_active(self, active: bool) -> None:
        self.active = active
        if not active:
            self.stop_motion("driver deactivated")
            self.state = "idle"

    def set_torque(self, on: bool) -> tuple[bool, str]:
        if not self.active or not self.connected:
            return False, "driver is not active or the arm is not connected"
        if self.estop_latch.latched:
            return False, "e-stop is latched: call reset_estop"
        if on:
            self._torque_on_here()
            return True, "torque on, holding the present pose"
        self.stop_motion("torque switched off")
        self.send(proto.encode(proto.torque(False)))
        self.torque_on = False
        self.accepted = None
        self.guard.reset()
        self.state = "torque_off"
        return True, "torque off: the arm can be moved by hand"

    def _torque_on_here(self) -> None:
        """Torque on without a jump: first make the present (measured) pose the servos' goal."""
        self.hold_measured()
        self.send(proto.encode(proto.torque(True)))
        self.torque_on = True
        self.state = "idle"

    def estop(self) -> str:
        self.estop_latch.trigger("estop service")
        self.stop_motion("e-stop")
        sent = False
        if self.connected:
            if self.config.estop_action == "torque_off":
                sent = self.send(proto.encode(proto.torque(False)))
                self.torque_on = False
                self.accepted = None
                self.guard.reset()
            else:
                sent = self.hold_measured()  # stop where the arm is now
        self.state = "estop"
        return (f"e-stop latched ({self.config.estop_action}"
                f"{'' if sent else '; arm not reachable now, commands refused'}); call reset_estop to clear")

    def reset_estop(self) -> tuple[bool, str]:
        if not self.estop_latch.latched:
            return False, "e-stop was not latched"
        if self.connected and not self.torque_on:
            self._torque_on_here()
        self.estop_latch.reset()
        self.state = "idle" if self.torque_on else "torque_off"
        return True, "e-stop cleared; commands accepted again"

    # ================================================================== diagnostics
    def snapshot(self) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        out: dict[str, Any] = {
            "state": self.state,
            "active": self.active,
            "torque_on": self.torque_on,
            "estop_latched": self.estop_latch.latched,
            "watchdog_trips": self.watchdog.trips,
            "feedback_rate_hz": self.feedback_rate(),
            "last_rejection": self.last_rejection,
            "last_bad_feedback": self.last_bad_feedback,
            "command_latency_median_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
            "plan_exhausted_ticks": self.executor.plan_exhausted_ticks,
            "line_clamps": self.guard.clamped_writes,
            "line_clamped_joints": self.guard.clamped_joint_writes,
            "line_largest_step_rad": self.guard.largest_written,
            "velocity_limits": "[" + ", ".join(f"{v:g}" for v in self.config.velocity_limits) + "]",
            "max_step": self.config.safety.max_step,
        }
        out.update(self.counters)
        out.update({f"rejected_{k}": v for k, v in self.rejections.items()})
        return out

    _last_write_clamped = False

