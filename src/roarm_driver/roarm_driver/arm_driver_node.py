"""``arm_driver``: the RoArm-M3 serial driver as a lifecycle node.

configure  opens the serial link (reader thread; retries forever), sets the firmware output mode, flushes stale
           input; publishes diagnostics. Nothing is written that could move the arm.
activate   publishes ``joint_states`` and accepts commands: ``joint_trajectory`` (1 point = streaming setpoint,
           several = timed trajectory streamed at ``command_rate``), the ``move_joints`` action, the
           ``set_torque`` / ``estop`` / ``reset_estop`` services.
deactivate stops streaming; the servos keep holding the last commanded pose.
cleanup    closes the port.

Safety (see :mod:`roarm_driver.safety`) applies to every command; the e-stop latches until ``reset_estop``.
On unplug the node keeps running, reports the fault in ``diagnostics``, retries, and resumes publishing as soon
as the port is back, without sending any motion command (the next command's step is checked against the
measured pose). Threads: one serial reader thread (publishes joint_states stamped at receipt); executor
callbacks for commands; writes never wait for replies.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from roarm_interfaces.action import MoveJoints
from roarm_description import joints
from roarm_driver import protocol as proto
from roarm_driver.safety import (
    CommandRejected,
    CommandWatchdog,
    EStopLatch,
    SafetyConfig,
    check_command,
    check_pose,
    merge_named,
)
from roarm_driver.serial_link import SerialLink
from roarm_driver.trajectory import Trajectory, TrajectoryError, linear_move, min_duration
from roarm_common.node_main import run_node

FEEDBACK_MODES = ("stream", "request")
ESTOP_ACTIONS = ("torque_off", "hold")

# name -> (default, description). The YAML src/roarm_vla_bringup/config/arm_driver.yaml sets them for launch.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "port": ("/dev/ttyUSB0", "serial device of the arm (or the firmware simulator's pty link)"),
    "baud": (115200, "serial baud rate, 8N1"),
    "rts": (False, "RTS level held while the port opens and after (toggling can reset the ESP32)"),
    "dtr": (False, "DTR level held while the port opens and after (toggling can reset the ESP32)"),
    "feedback_mode": ("stream", "stream: T:605 cmd 2, the firmware streams T:1051 at line rate; "
                                "request: T:605 cmd 0 and one T:105 per reply (polling)"),
    "request_timeout": (0.1, "request mode: seconds without a reply before T:105 is sent again"),
    "feedback_timeout": (0.5, "stream mode: seconds without feedback before the output mode is set again"),
    "reconnect_period": (0.25, "seconds between attempts to reopen a lost port"),
    "write_timeout": (0.05, "seconds a serial write may block before it is dropped and counted"),
    "command_rate": (50.0, "Hz at which timed trajectories and move_joints goals are streamed as T:102"),
    "speed": (0, "T:102 spd: servo steps/s (4096 per turn), 0 = servo maximum"),
    "acceleration": (0, "T:102 acc: servo acceleration 0..254 (x100 steps/s^2), 0 = servo maximum"),
    "limit_mode": ("clamp", "commands outside the URDF joint limits: clamp (logged) or reject"),
    "max_step": (0.2, "rad: the most any joint may move in one command (<= 0 disables)"),
    "step_mode": ("reject", "a larger step: reject the command, or clamp it to max_step"),
    "watchdog_timeout": (0.5, "s: a setpoint stream silent this long is stopped and the arm holds (0 = off)"),
    "estop_action": ("torque_off", "e-stop: torque_off (servos limp) or hold (stop where the arm is)"),
    "max_velocity": (1.0, "rad/s: speed of move_joints goals with duration 0, and the cap of any goal"),
    "default_tolerance": (0.03, "rad: move_joints success tolerance when the goal gives 0"),
    "settle_timeout": (2.0, "s after a move_joints trajectory ends to reach the tolerance before aborting"),
    "move_on_startup": (False, "on activate, move to startup_pose (otherwise nothing moves at start-up)"),
    "startup_pose": ([0.0, 0.0, math.pi / 2, 0.0, 0.0, 0.0], "URDF radians, JOINT_NAMES order, for move_on_startup"),
    "effort_scale": (0.001, "joint_states effort = servo load (0.1 % of stall torque) x this: 0.001 -> fraction"),
    "diagnostics_period": (1.0, "s between diagnostics messages"),
    "autostart": (True, "main() only: configure and activate on start (launch files drive the lifecycle)"),
}


class ArmDriverNode(LifecycleNode):
    # The move_joints execute callback loops until the move ends while joint_trajectory, timers and services
    # must go on (roarm_common.node_main.executor_threads).
    EXECUTOR_THREADS = 4

    def __init__(self, node_name: str = "arm_driver", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self._lock = threading.RLock()
        self._link: SerialLink | None = None
        self._active = False
        self._measured: np.ndarray | None = None  # URDF rad, latest feedback
        self._loads: np.ndarray | None = None
        self._feedback_time: float | None = None  # monotonic receipt of the latest feedback
        self._feedback_times: deque[float] = deque(maxlen=400)
        self._target: np.ndarray | None = None  # last commanded pose (None: not known -> measured pose)
        self._maybe_target: np.ndarray | None = None  # a pose whose write was reported failed (it may be there)
        self._trajectory: Trajectory | None = None
        self._trajectory_start = 0.0
        self._trajectory_owner: object | None = None  # goal handle of the move_joints goal that owns it
        self._current_goal: object | None = None
        self._goal_stop_reason = ""
        self._torque_on = True
        self._estop = EStopLatch()
        self._watchdog = CommandWatchdog(0.5)
        self._safety = SafetyConfig()
        self._counters: Counter[str] = Counter()
        self._rejections: Counter[str] = Counter()
        self._latencies: deque[float] = deque(maxlen=500)
        self._last_request = 0.0
        self._last_mode_set = 0.0
        self._state = "unconfigured"
        self._last_reject = ""
        # Hook for benchmarks/tests: called as hook(msg, receipt_monotonic, written_monotonic) after a streamed
        # setpoint reached the OS (serial write returned).
        self.command_written_hook: Callable[[JointTrajectory, float, float], None] | None = None
        self._entities: list[Any] = []
        self._joint_pub = None
        self._diag_pub = None
        self._action_server: ActionServer | None = None
        self._effort_scale = 0.001

    # ================================================================== parameters
    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _read_parameters(self) -> None:
        self._feedback_mode = str(self._p("feedback_mode"))
        if self._feedback_mode not in FEEDBACK_MODES:
            raise ValueError(f"feedback_mode must be one of {FEEDBACK_MODES}, got {self._feedback_mode!r}")
        self._estop_action = str(self._p("estop_action"))
        if self._estop_action not in ESTOP_ACTIONS:
            raise ValueError(f"estop_action must be one of {ESTOP_ACTIONS}, got {self._estop_action!r}")
        self._safety = SafetyConfig(limit_mode=str(self._p("limit_mode")), max_step=float(self._p("max_step")),
                                    step_mode=str(self._p("step_mode")))
        self._watchdog = CommandWatchdog(float(self._p("watchdog_timeout")))
        self._command_rate = float(self._p("command_rate"))
        if not self._command_rate > 0:
            raise ValueError(f"command_rate must be > 0, got {self._command_rate}")
        self._speed = int(self._p("speed"))
        self._acceleration = int(self._p("acceleration"))
        proto.joints_command(joints.HOME_POSITIONS, self._speed, self._acceleration)  # range check now
        self._max_velocity = float(self._p("max_velocity"))
        if not self._max_velocity > 0:
            raise ValueError(f"max_velocity must be > 0, got {self._max_velocity}")
        self._effort_scale = float(self._p("effort_scale"))
        startup = list(self._p("startup_pose"))
        if len(startup) != joints.NUM_JOINTS:
            raise ValueError(f"startup_pose needs {joints.NUM_JOINTS} values, got {startup}")

    # ================================================================== lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._read_parameters()
        except (ValueError, CommandRejected) as exc:
            self.get_logger().error(f"bad parameter: {exc}")
            return TransitionCallbackReturn.FAILURE
        sensor_group = MutuallyExclusiveCallbackGroup()
        self._joint_pub = self.create_lifecycle_publisher(JointState, "joint_states", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self._entities = [
            self.create_subscription(JointTrajectory, "joint_trajectory", self._on_trajectory, 10,
                                     callback_group=sensor_group),
            self.create_service(SetBool, "set_torque", self._on_set_torque),
            self.create_service(Trigger, "estop", self._on_estop),
            self.create_service(Trigger, "reset_estop", self._on_reset_estop),
            self.create_timer(1.0 / self._command_rate, self._on_command_tick),
            self.create_timer(float(self._p("diagnostics_period")), self._publish_diagnostics),
        ]
        self._action_server = ActionServer(
            self, MoveJoints, "move_joints", execute_callback=self._execute_move,
            goal_callback=self._on_goal, cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            handle_accepted_callback=self._on_goal_accepted, callback_group=ReentrantCallbackGroup())
        self._link = SerialLink(
            str(self._p("port")), int(self._p("baud")), bool(self._p("rts")), bool(self._p("dtr")),
            on_message=self._on_message, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            reconnect_period=float(self._p("reconnect_period")), write_timeout=float(self._p("write_timeout")))
        self._link.start()
        self._state = "idle"
        self.get_logger().info(f"configured: port {self._link.port} at {self._link.baud} baud, "
                               f"feedback {self._feedback_mode}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = True
        result = super().on_activate(state)
        if bool(self._p("move_on_startup")):
            self._start_startup_move()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            self._stop_motion("driver deactivated")
            self._state = "idle"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            self._stop_motion("driver shut down")
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        if self._link is not None:
            port = self._link.port
            self._link.stop()  # a requested close: SerialLink does not report it as a lost link (no ERROR)
            self._link = None
            self.get_logger().info(f"serial link on {port} closed")
        for entity in self._entities:
            if hasattr(entity, "cancel"):
                entity.cancel()
                self.destroy_timer(entity)
            elif hasattr(entity, "topic_name"):
                self.destroy_subscription(entity)
            else:
                self.destroy_service(entity)
        self._entities = []
        if getattr(self, "_action_server", None) is not None:
            self._action_server.destroy()
            self._action_server = None
        if getattr(self, "_joint_pub", None) is not None:
            self.destroy_lifecycle_publisher(self._joint_pub)
            self._joint_pub = None
        if getattr(self, "_diag_pub", None) is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._state = "unconfigured"

    # ================================================================== serial callbacks (reader thread)
    def _on_connect(self, link: SerialLink) -> None:
        with self._lock:
            # The arm may have been moved, rebooted or re-powered: no stale target, no motion on reconnect.
            self._stop_motion("serial link reconnected")
            self._target = None
            self._measured = None
            self._feedback_time = None
        mode = proto.OUTPUT_STREAM if self._feedback_mode == "stream" else proto.OUTPUT_SILENT
        link.write(proto.encode(proto.output_mode(mode)))
        self._last_mode_set = time.monotonic()
        with self._lock:
            if self._estop.latched and self._estop_action == "torque_off":
                # Latched while the link was down (or the firmware rebooted with torque on): make it true now.
                link.write(proto.encode(proto.torque(False)))
                self._torque_on = False
        self.get_logger().info(f"serial link up on {link.port}: output mode {mode}")

    def _on_disconnect(self, reason: str) -> None:
        with self._lock:
            self._stop_motion(f"serial link lost ({reason})")
            self._counters["disconnects"] += 1
        self.get_logger().error(f"serial link lost: {reason}; retrying")

    def _on_message(self, receipt: float, message: dict[str, Any]) -> None:
        if message.get("T") != proto.T_FEEDBACK:
            self._counters[f"ignored_T{message.get('T')}"] += 1  # debug echoes (mode 1) and other replies
            return
        stamp = self.get_clock().now().to_msg()
        try:
            feedback = proto.parse_feedback(message)
        except proto.FeedbackError:
            self._counters["bad_feedback"] += 1
            return
        with self._lock:
            self._measured = feedback.positions
            self._loads = feedback.loads
            self._feedback_time = receipt
            self._feedback_times.append(receipt)
            active = self._active
        if self._feedback_mode == "request" and self._link is not None:
            self._last_request = time.monotonic()
            self._link.write(proto.encode(proto.feedback_request()))
        if active and self._joint_pub is not None:
            msg = JointState()
            msg.header.stamp = stamp
            msg.name = list(joints.JOINT_NAMES)
            msg.position = feedback.positions.tolist()
            msg.effort = (feedback.loads * self._effort_scale).tolist()
            self._joint_pub.publish(msg)

    # ================================================================== writing commands
    def _write_pose(self, q: np.ndarray) -> bool:
        link = self._link
        if link is None:
            return False
        ok = link.write(proto.encode(proto.joints_command(q, self._speed, self._acceleration)))
        if ok:
            self._target = np.array(q, dtype=float)
            self._maybe_target = None
            self._counters["setpoints_sent"] += 1
        else:
            self._counters["setpoints_lost"] += 1
            # A failed write may still have reached the arm: pyserial raises its write timeout after a COMPLETE
            # write when this thread was descheduled past write_timeout (seen on a loaded machine). Which of the
            # two poses the servos hold is unknown; with only the old one as reference the stream's next setpoint
            # (a step beyond the written one) was refused, and every later one. The next setpoint may be one
            # max_step from either (see _check_setpoint).
            self._maybe_target = np.array(q, dtype=float)
        return ok

    def _check_setpoint(self, names, positions, reference: np.ndarray):
        """check_command against the last commanded pose. A step refused only by max_step is accepted when it is
        within max_step of another pose the servos may hold: the pose of a write reported failed, or the arm's
        MEASURED pose. The rule bounds how far a setpoint asks a servo to jump; measuring it from a commanded pose
        the arm has not reached yet refused a controller that (re)starts from the measured pose after a hold
        (vla_policy: 17 refusals of 0.21 rad in a 2-episode policy demo). Unnamed joints keep the commanded pose."""
        try:
            return check_command(names, positions, reference, self._safety)
        except CommandRejected as exc:
            if exc.rule != "max_step" or self._target is None:
                raise
            with self._lock:  # an RLock: callers may hold it
                measured = None if self._measured is None else self._measured.copy()
            for alternative in (self._maybe_target, measured):
                if alternative is None:
                    continue
                try:
                    return check_command(names, positions, alternative, self._safety, base=reference)
                except CommandRejected as again:
                    if again.rule != "max_step":
                        raise
            raise exc

    def _reference(self) -> np.ndarray | None:
        """Pose the next command's step is measured from: the last commanded pose, else the measured one."""
        if self._target is not None:
            return self._target.copy()
        return None if self._measured is None else self._measured.copy()

    def _refuse(self, rule: str, message: str) -> str:
        self._rejections[rule] += 1
        self._last_reject = f"{rule}: {message}"
        self.get_logger().warning(f"command rejected ({rule}): {message}", throttle_duration_sec=1.0)
        return message

    def _precondition(self) -> str | None:
        """Why no command can run now (None: it can)."""
        if not self._active:
            return "inactive"
        if self._estop.latched:
            return "estop"
        if not self._torque_on:
            return "torque_off"
        if self._link is None or not self._link.connected:
            return "disconnected"
        if self._reference() is None:
            return "no_state"
        return None

    _PRECONDITION_TEXT = {
        "inactive": "driver is not active",
        "estop": "e-stop is latched: call reset_estop",
        "torque_off": "torque is off (hand-guiding): call set_torque true",
        "disconnected": "serial link to the arm is down",
        "no_state": "no feedback from the arm yet",
    }

    def _stop_motion(self, reason: str) -> None:
        """Stop streaming (the servos hold the last setpoint); the running move_joints goal ends with reason."""
        self._trajectory = None
        self._trajectory_owner = None
        self._watchdog.disarm()
        if self._current_goal is not None:
            self._goal_stop_reason = reason
            self._current_goal = None

    # ------------------------------------------------------------------ joint_trajectory topic
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        receipt = time.monotonic()
        with self._lock:
            why = self._precondition()
            if why is not None:
                self._refuse(why, self._PRECONDITION_TEXT[why])
                return
            if not msg.points:
                self._refuse("empty", "joint_trajectory without points")
                return
            reference = self._reference()
            try:
                if len(msg.points) == 1:
                    checked = self._check_setpoint(msg.joint_names, msg.points[0].positions, reference)
                    self._warn(checked.warnings)
                    self._stop_motion("preempted by a joint_trajectory setpoint")
                    if self._write_pose(checked.positions):
                        written = time.monotonic()
                        self._latencies.append(written - receipt)
                        self._watchdog.feed(written)
                        self._state = "streaming"
                        hook = self.command_written_hook
                    else:
                        hook = None
                else:
                    trajectory = self._build_trajectory(msg, reference)
                    self._stop_motion("preempted by a joint_trajectory")
                    self._trajectory = trajectory
                    self._trajectory_start = receipt
                    self._state = "trajectory"
                    hook = None
            except (CommandRejected, TrajectoryError) as exc:
                rule = exc.rule if isinstance(exc, CommandRejected) else "trajectory"
                self._refuse(rule, str(exc))
                return
        if hook is not None:
            hook(msg, receipt, written)

    def _build_trajectory(self, msg: JointTrajectory, reference: np.ndarray) -> Trajectory:
        times, poses = [], []
        base = reference
        for point in msg.points:
            q = merge_named(msg.joint_names, point.positions, base)
            checked = check_pose(q, self._safety)
            self._warn(checked.warnings)
            poses.append(checked.positions)
            base = checked.positions
            times.append(point.time_from_start.sec + point.time_from_start.nanosec * 1e-9)
        trajectory = Trajectory.from_start(reference, times, poses)
        self._check_trajectory_steps(trajectory, reference)
        return trajectory

    def _check_trajectory_steps(self, trajectory: Trajectory, reference: np.ndarray) -> None:
        max_step = self._safety.max_step
        if max_step <= 0:
            return
        steps = trajectory.max_step(self._command_rate, start=reference)
        if np.any(steps > max_step + 1e-9):
            worst = int(np.argmax(steps))
            raise CommandRejected(
                "max_step", f"trajectory needs {steps[worst]:.3f} rad per command on {joints.JOINT_NAMES[worst]} "
                f"at {self._command_rate:g} Hz (max_step {max_step:.3f}): slow it down")

    def _warn(self, warnings: list[str]) -> None:
        for w in warnings:
            self._counters["clamped"] += 1
            self.get_logger().warning(w, throttle_duration_sec=1.0)

    # ------------------------------------------------------------------ command timer
    def _on_command_tick(self) -> None:
        now = time.monotonic()
        link = self._link
        with self._lock:
            if self._trajectory is not None and self._active and link is not None and link.connected:
                elapsed = now - self._trajectory_start
                self._write_pose(self._trajectory.at(elapsed))
                if elapsed >= self._trajectory.duration:
                    self._trajectory = None
                    if self._trajectory_owner is None:
                        self._state = "idle"
            if self._watchdog.check(now):
                self._counters["watchdog_trips"] += 1
                self._state = "holding"
                if self._target is not None:
                    self._write_pose(self._target)  # re-assert the last pose: the arm holds there
                self.get_logger().warning(
                    f"no setpoint for {self._watchdog.timeout:g} s: holding the last pose")
        if link is None or not link.connected:
            return
        # Feedback keep-alive: a dropped reply (request mode) or a firmware reset into mode 0 (stream mode).
        last = self._feedback_time
        if self._feedback_mode == "request":
            if now - max(self._last_request, last or 0.0) > float(self._p("request_timeout")):
                self._last_request = now
                self._counters["feedback_rerequests"] += 1
                link.write(proto.encode(proto.feedback_request()))
        elif now - max(self._last_mode_set, last or 0.0) > float(self._p("feedback_timeout")):
            self._last_mode_set = now
            self._counters["stream_restarts"] += 1
            link.write(proto.encode(proto.output_mode(proto.OUTPUT_STREAM)))

    # ------------------------------------------------------------------ services
    def _on_set_torque(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            if not self._active or self._link is None or not self._link.connected:
                response.success, response.message = False, "driver is not active or the arm is not connected"
                return response
            if self._estop.latched:
                response.success, response.message = False, "e-stop is latched: call reset_estop"
                return response
            if request.data:
                self._enable_torque_here()
                response.message = "torque on, holding the present pose"
            else:
                self._stop_motion("torque switched off")
                self._link.write(proto.encode(proto.torque(False)))
                self._torque_on = False
                self._target = None
                self._state = "torque_off"
                response.message = "torque off: the arm can be moved by hand"
            response.success = True
        self.get_logger().info(response.message)
        return response

    def _enable_torque_here(self) -> None:
        """Torque on without a jump: first make the present (measured) pose the servos' goal."""
        if self._measured is not None:
            self._write_pose(self._measured)
        self._link.write(proto.encode(proto.torque(True)))
        self._torque_on = True
        self._state = "idle"

    def _on_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._estop.trigger("estop service")
            self._stop_motion("e-stop")
            link = self._link
            sent = False
            if link is not None and link.connected:
                if self._estop_action == "torque_off":
                    sent = link.write(proto.encode(proto.torque(False)))
                    self._torque_on = False
                    self._target = None
                elif self._measured is not None:
                    sent = self._write_pose(self._measured)  # stop where the arm is now
            self._state = "estop"
            response.success = True
            response.message = (f"e-stop latched ({self._estop_action}"
                                f"{'' if sent else '; arm not reachable now, commands refused'}); "
                                "call reset_estop to clear")
        self.get_logger().error(response.message)
        return response

    def _on_reset_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            if not self._estop.latched:
                response.success, response.message = False, "e-stop was not latched"
                return response
            if self._link is not None and self._link.connected and not self._torque_on:
                self._enable_torque_here()
            self._estop.reset()
            self._state = "idle" if self._torque_on else "torque_off"
            response.success, response.message = True, "e-stop cleared; commands accepted again"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ move_joints action
    def _on_goal(self, goal_request: MoveJoints.Goal) -> GoalResponse:
        with self._lock:
            why = self._precondition()
        if why is not None:
            self._refuse(why, f"move_joints goal refused: {self._PRECONDITION_TEXT[why]}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_goal_accepted(self, goal_handle: Any) -> None:
        with self._lock:
            self._stop_motion("preempted by a new move_joints goal")
            self._current_goal = goal_handle
            self._goal_stop_reason = ""
        goal_handle.execute()

    async def _sleep(self, seconds: float) -> None:
        """Executor-friendly sleep (works with single- and multi-threaded executors)."""
        future = Future()

        def done() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.create_timer(seconds, done)
        try:
            await future
        finally:
            try:
                self.destroy_timer(timer)
            except Exception:  # noqa: BLE001 - the node is being destroyed under a running goal
                pass

    async def _execute_move(self, goal_handle: Any) -> MoveJoints.Result:
        goal = goal_handle.request
        result = MoveJoints.Result()
        names = list(goal.joint_names)
        with self._lock:
            if self._current_goal is not goal_handle:
                goal_handle.abort()
                result.message = self._goal_stop_reason or "preempted"
                return result
            reference = self._reference()
            try:
                q_goal = check_pose(merge_named(names, goal.positions, reference), self._safety)
            except CommandRejected as exc:
                self._refuse(exc.rule, str(exc))
                self._current_goal = None
                goal_handle.abort()
                result.message = str(exc)
                return result
            self._warn(q_goal.warnings)
            target = q_goal.positions
            duration = max(float(goal.duration), min_duration(reference, target, self._max_velocity))
            if self._safety.max_step > 0:
                duration = max(duration, float(np.max(np.abs(target - reference)))
                               / (self._safety.max_step * self._command_rate))
            self._trajectory = linear_move(reference, target, duration) if duration > 0 else \
                Trajectory([0.0], [target])
            self._trajectory_start = time.monotonic()
            self._trajectory_owner = goal_handle
            self._state = "move_joints"
        index = [joints.JOINT_NAMES.index(n) for n in names]
        tolerance = float(goal.tolerance) if goal.tolerance > 0 else float(self._p("default_tolerance"))
        deadline = self._trajectory_start + duration + float(self._p("settle_timeout"))
        period = 1.0 / min(self._command_rate, 20.0)
        while True:
            await self._sleep(period)
            now = time.monotonic()
            with self._lock:
                measured = self._measured
                stopped = self._current_goal is not goal_handle
                reason = self._goal_stop_reason
                if goal_handle.is_cancel_requested and not stopped:
                    self._stop_motion("canceled")
                    self._state = "idle"
                    # stop here, not at the next setpoint
                    if measured is not None and self._active and self._link is not None and self._link.connected:
                        self._write_pose(measured)
            current = measured[index] if measured is not None else np.full(len(index), math.nan)
            error = float(np.max(np.abs(current - target[index]))) if measured is not None else math.inf
            result.final_positions = current.tolist()
            result.max_error = error
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.message = "canceled"
                return result
            if stopped:
                goal_handle.abort()
                result.message = reason or "stopped"
                return result
            feedback = MoveJoints.Feedback()
            feedback.current_positions = current.tolist()
            feedback.progress = min(1.0, (now - self._trajectory_start) / duration) if duration > 0 else 1.0
            feedback.max_error = error
            goal_handle.publish_feedback(feedback)
            if now - self._trajectory_start >= duration and error <= tolerance:
                with self._lock:
                    if self._current_goal is goal_handle:
                        self._current_goal = None
                        self._trajectory_owner = None
                        self._state = "idle"
                goal_handle.succeed()
                result.success = True
                result.message = f"reached within {tolerance:.3f} rad"
                return result
            if now > deadline:
                with self._lock:
                    if self._current_goal is goal_handle:
                        self._stop_motion("timeout")
                        self._state = "idle"
                goal_handle.abort()
                result.message = f"not within {tolerance:.3f} rad after {deadline - self._trajectory_start:.1f} s" \
                                 f" (error {error:.3f} rad)"
                return result

    def _start_startup_move(self) -> None:
        """move_on_startup: a slow linear move to startup_pose once the first feedback is in (own thread)."""
        def run() -> None:
            end = time.monotonic() + 5.0
            while time.monotonic() < end:
                with self._lock:
                    if self._precondition() is None:
                        reference = self._reference()
                        try:
                            target = check_pose(list(self._p("startup_pose")), self._safety).positions
                        except CommandRejected as exc:
                            self.get_logger().error(f"startup_pose refused: {exc}")
                            return
                        duration = max(min_duration(reference, target, self._max_velocity),
                                       float(np.max(np.abs(target - reference))) / max(
                                           1e-6, self._safety.max_step * self._command_rate))
                        self._trajectory = linear_move(reference, target, duration)
                        self._trajectory_start = time.monotonic()
                        self._state = "trajectory"
                        self.get_logger().info(f"moving to startup_pose in {duration:.1f} s")
                        return
                time.sleep(0.05)
            self.get_logger().error("move_on_startup: no feedback from the arm within 5 s; not moving")
        threading.Thread(target=run, name="startup-move", daemon=True).start()

    # ================================================================== diagnostics
    def feedback_rate(self, window: float = 1.0) -> float:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._feedback_times if now - t <= window]
        return len(recent) / window

    def snapshot(self) -> dict[str, Any]:
        """Everything diagnostics reports, as plain values (tests and benchmarks read it too)."""
        link = self._link
        with self._lock:
            lines = link.splitter.counts.as_dict() if link is not None else {}
            total_lines = sum(v for k, v in lines.items() if k not in ("bytes", "resynced"))
            line_bytes = lines.get("bytes", 0) / total_lines if total_lines else 0.0
            latencies = sorted(self._latencies)
            out: dict[str, Any] = {
                "state": self._state,
                "active": self._active,
                "port": link.port if link is not None else "",
                "connected": bool(link is not None and link.connected),
                "feedback_rate_hz": self.feedback_rate(),
                "line_rate_limit_hz": (int(self._p("baud")) / 10.0 / line_bytes) if line_bytes else 0.0,
                "mean_line_bytes": line_bytes,
                "torque_on": self._torque_on,
                "estop_latched": self._estop.latched,
                "watchdog_trips": self._watchdog.trips,
                "last_error": link.last_error if link is not None else "",
                "last_rejection": self._last_reject,
                "command_latency_median_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
            }
            out.update({f"lines_{k}": v for k, v in lines.items()})
            if link is not None:
                out.update({f"link_{k}": v for k, v in link.counters.items()})
            out.update(self._counters)
            out.update({f"rejected_{k}": v for k, v in self._rejections.items()})
        return out

    def _publish_diagnostics(self) -> None:
        snap = self.snapshot()
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: RoArm-M3 serial driver"
        status.hardware_id = snap["port"]
        if not snap["connected"]:
            status.level, status.message = DiagnosticStatus.ERROR, f"serial link down: {snap['last_error']}"
        elif snap["estop_latched"]:
            status.level, status.message = DiagnosticStatus.WARN, "e-stop latched"
        elif snap["feedback_rate_hz"] <= 0:
            status.level, status.message = DiagnosticStatus.WARN, "connected, no feedback"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"{snap['state']}, {snap['feedback_rate_hz']:.0f} Hz"
        status.values = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in snap.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        if self._diag_pub is not None:
            self._diag_pub.publish(msg)


def main(args=None) -> int:
    """Console script: standalone runs configure + activate (autostart); under launch, launch drives them."""
    return run_node(ArmDriverNode, args, lifecycle=True)


if __name__ == "__main__":
    main()
