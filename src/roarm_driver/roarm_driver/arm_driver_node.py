"""``arm_driver``: the RoArm-M3 serial driver as a lifecycle node. Wiring only; the logic is
:class:`roarm_driver.driver_core.DriverCore` (plain Python, steady clock passed in).

configure  opens the serial link (reader thread; retries forever), sets the firmware output mode, flushes stale
           input; publishes diagnostics. Nothing is written that could move the arm.
activate   publishes ``joint_states`` and accepts commands: ``joint_trajectory`` (1 point = streamed setpoint,
           several = a timed plan executed on the driver's steady clock at ``command_rate``), the ``move_joints``
           action, the ``set_torque`` / ``estop`` / ``reset_estop`` services.
deactivate stops the plan; the servos keep holding the last pose written.
cleanup    closes the port.

Clock convention: scheduling on the steady clock (``time.monotonic``); stamps in ROS time (``self.get_clock()``,
sim-time aware). A trajectory's stamp becomes steady time once, at receipt (see trajectory_executor).
Threads: the serial reader thread (decodes, checks and publishes joint_states stamped at receipt); executor
callbacks for commands, the command timer and services. One lock around the core.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from roarm_common.node_main import run_node
from roarm_common.parameters import Param, declare_parameters
from roarm_description import joints
from roarm_driver.driver_core import ESTOP_ACTIONS, FEEDBACK_MODES, DriverConfig, DriverCore, velocity_limits_from
from roarm_driver.safety import LIMIT_MODES, STEP_MODES, CommandRejected, SafetyConfig, check_pose
from roarm_driver.serial_link import SerialLink, open_failure_hint
from roarm_interfaces.action import MoveJoints

PARAMETERS: tuple[Param, ...] = (
    Param("port", "/dev/ttyUSB0", "serial device of the arm (or the firmware simulator's pty link)"),
    Param("baud", 115200, "serial baud rate, 8N1", range=(1200, 4000000)),
    Param("rts", False, "RTS level held while the port opens and after (toggling can reset the ESP32)"),
    Param("dtr", False, "DTR level held while the port opens and after (toggling can reset the ESP32)"),
    Param("feedback_mode", "stream", "stream: T:605 cmd 2, the firmware streams T:1051 at line rate; "
          "request: T:605 cmd 0 and one T:105 per reply (polling)", choices=FEEDBACK_MODES),
    Param("request_timeout", 0.1, "request mode: seconds without a reply before T:105 is sent again",
          range=(0.01, 10.0)),
    Param("feedback_timeout", 0.5, "stream mode: seconds without feedback before the output mode is set again",
          range=(0.05, 60.0)),
    Param("feedback_margin", 0.35, "rad beyond the URDF joint limits a T:1051 position may read; a line beyond it "
          "(or with a non-number) is counted and dropped", range=(0.0, 3.0)),
    Param("reconnect_period", 0.25, "seconds between attempts to reopen a lost port", range=(0.01, 60.0)),
    Param("open_error_log_period", 30.0, "s: a port that cannot be opened is logged at ERROR once, then at most "
          "this often", range=(1.0, 3600.0)),
    Param("write_timeout", 0.05, "seconds a serial write may block before it is dropped and counted",
          range=(0.001, 5.0)),
    Param("command_rate", 50.0, "Hz at which plans (trajectories, move_joints goals) are sampled and written as "
          "T:102", range=(1.0, 500.0)),
    Param("speed", 0, "T:102 spd: servo steps/s (4096 per turn), 0 = servo maximum", range=(0, 4096)),
    Param("acceleration", 0, "T:102 acc: servo acceleration 0..254 (x100 steps/s^2), 0 = servo maximum",
          range=(0, 254)),
    Param("limit_mode", "clamp", "commands outside the URDF joint limits: clamp (logged) or reject",
          choices=LIMIT_MODES),
    Param("max_step", 0.2, "rad: the most any joint may change between two T:102 writes, and the step limit of "
          "streamed setpoints (0 disables)", range=(0.0, 6.3)),
    Param("step_mode", "reject", "a streamed setpoint beyond max_step: reject it, or clamp it to max_step",
          choices=STEP_MODES),
    Param("velocity_limits", [0.0] * joints.NUM_JOINTS, "rad/s per joint (JOINT_NAMES order) enforced between "
          "T:102 writes; 0 = the URDF's <limit velocity>", range=(0.0, 50.0)),
    Param("max_command_age", 1.0, "s: a joint_trajectory whose header stamp is older than this is refused "
          "(a zero stamp means now)", range=(0.01, 60.0)),
    Param("watchdog_timeout", 0.5, "s: a setpoint stream silent this long is stopped and the arm holds (0 = off)",
          range=(0.0, 60.0)),
    Param("estop_action", "torque_off", "e-stop: torque_off (servos limp) or hold (stop where the arm is)",
          choices=ESTOP_ACTIONS),
    Param("max_velocity", 1.0, "rad/s: speed of move_joints goals with duration 0, and the cap of any goal",
          range=(0.01, 50.0)),
    Param("default_tolerance", 0.03, "rad: move_joints success tolerance when the goal gives 0",
          range=(0.001, 1.0)),
    Param("settle_timeout", 2.0, "s after a move_joints trajectory ends to reach the tolerance before aborting",
          range=(0.0, 60.0)),
    Param("move_on_startup", False, "on activate, move to startup_pose (otherwise nothing moves at start-up)"),
    Param("startup_pose", [0.0, 0.0, math.pi / 2, 0.0, 0.0, 0.0],
          "URDF radians, JOINT_NAMES order, for move_on_startup", range=(-math.pi, math.pi)),
    Param("effort_scale", 0.001, "joint_states effort = servo load (0.1 % of stall torque) x this: "
          "0.001 -> fraction", range=(0.0, 1000.0)),
    Param("diagnostics_period", 1.0, "s between diagnostics messages", range=(0.05, 60.0)),
    Param("autostart", True, "main() only: configure and activate on start (launch files drive the lifecycle)"),
)

# Streamed setpoints: only the newest matters; a stalled executor must never replay a backlog.
SETPOINT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)


class ArmDriverNode(LifecycleNode):
    # The move_joints execute callback loops until the move ends while joint_trajectory, timers and services
    # must go on (roarm_common.node_main.executor_threads).
    EXECUTOR_THREADS = 4

    def __init__(self, node_name: str = "arm_driver", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._params = declare_parameters(self, PARAMETERS)
        self._lock = threading.RLock()
        self._link: SerialLink | None = None
        self._core: DriverCore | None = None
        # Hook for benchmarks/tests: hook(msg, receipt_monotonic, written_monotonic) after a streamed setpoint
        # reached the OS (serial write returned).
        self.command_written_hook: Callable[[JointTrajectory, float, float], None] | None = None
        self._entities: list[Any] = []
        self._joint_pub = None
        self._diag_pub = None
        self._action_server: ActionServer | None = None
        self._open_failures_reported = 0
        self._last_open_log: float | None = None

    # ================================================================== parameters
    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _config(self) -> DriverConfig:
        startup = list(self._p("startup_pose"))
        if len(startup) != joints.NUM_JOINTS:
            raise ValueError(f"startup_pose needs {joints.NUM_JOINTS} values, got {startup}")
        return DriverConfig(
            feedback_mode=str(self._p("feedback_mode")),
            estop_action=str(self._p("estop_action")),
            command_rate=float(self._p("command_rate")),
            speed=int(self._p("speed")),
            acceleration=int(self._p("acceleration")),
            safety=SafetyConfig(limit_mode=str(self._p("limit_mode")), max_step=float(self._p("max_step")),
                                step_mode=str(self._p("step_mode"))),
            velocity_limits=velocity_limits_from(self._p("velocity_limits")),
            max_velocity=float(self._p("max_velocity")),
            watchdog_timeout=float(self._p("watchdog_timeout")),
            max_command_age=float(self._p("max_command_age")),
            feedback_margin=float(self._p("feedback_margin")),
            request_timeout=float(self._p("request_timeout")),
            feedback_timeout=float(self._p("feedback_timeout")),
        )

    def _log(self, level: str, text: str) -> None:
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warn":
            logger.warning(text, throttle_duration_sec=1.0)
        else:
            logger.info(text)

    def _send(self, data: bytes) -> bool:
        link = self._link
        return link.write(data) if link is not None else False

    # ================================================================== lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = self._config()
        except (ValueError, CommandRejected) as exc:
            self.get_logger().error(f"bad parameter: {exc}")
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self._core = DriverCore(config, time.monotonic, self._send, self._log)
        sensor_group = MutuallyExclusiveCallbackGroup()
        self._joint_pub = self.create_lifecycle_publisher(JointState, "joint_states", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self._entities = [
            self.create_subscription(JointTrajectory, "joint_trajectory", self._on_trajectory, SETPOINT_QOS,
                                     callback_group=sensor_group),
            self.create_service(SetBool, "set_torque", self._on_set_torque),
            self.create_service(Trigger, "estop", self._on_estop),
            self.create_service(Trigger, "reset_estop", self._on_reset_estop),
            self.create_timer(1.0 / config.command_rate, self._on_command_tick),
            self.create_timer(float(self._p("diagnostics_period")), self._publish_diagnostics),
        ]
        self._action_server = ActionServer(
            self, MoveJoints, "move_joints", execute_callback=self._execute_move,
            goal_callback=self._on_goal, cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            handle_accepted_callback=self._on_goal_accepted, callback_group=ReentrantCallbackGroup())
        self._open_failures_reported = 0
        self._last_open_log = None
        self._link = SerialLink(
            str(self._p("port")), int(self._p("baud")), bool(self._p("rts")), bool(self._p("dtr")),
            on_message=self._on_message, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            on_open_failed=self._on_open_failed,
            reconnect_period=float(self._p("reconnect_period")), write_timeout=float(self._p("write_timeout")))
        self._link.start()
        self.get_logger().info(f"configured: port {self._link.port} at {self._link.baud} baud, "
                               f"feedback {config.feedback_mode}, line limits {list(config.velocity_limits)} rad/s "
                               f"and max_step {config.safety.max_step:g} rad per write")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._core.set_active(True)
        result = super().on_activate(state)
        if bool(self._p("move_on_startup")):
            self._start_startup_move()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._core.set_active(False)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            if self._core is not None:
                self._core.set_active(False)
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
        if self._action_server is not None:
            self._action_server.destroy()
            self._action_server = None
        if self._joint_pub is not None:
            self.destroy_lifecycle_publisher(self._joint_pub)
            self._joint_pub = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    # ================================================================== serial callbacks (reader thread)
    def _on_connect(self, link: SerialLink) -> None:
        with self._lock:
            self._core.link_up()
        self._open_failures_reported = 0
        self._last_open_log = None
        self.get_logger().info(f"serial link up on {link.port}: output mode set "
                               f"({self._core.config.feedback_mode})")

    def _on_disconnect(self, reason: str) -> None:
        with self._lock:
            self._core.link_down(reason)
        self.get_logger().error(f"serial link lost: {reason}; retrying every {self._p('reconnect_period'):g} s")

    def _on_open_failed(self, port: str, error: Exception) -> None:
        """Once at ERROR with the reason and what to check, then at most every open_error_log_period s."""
        now = time.monotonic()
        period = float(self._p("open_error_log_period"))
        self._open_failures_reported += 1
        if self._last_open_log is not None and now - self._last_open_log < period:
            return
        self._last_open_log = now
        count = self._open_failures_reported
        again = "" if count == 1 else f" (still failing: {count} attempts)"
        self.get_logger().error(f"cannot open serial port {port}: {error}{again}. {open_failure_hint(port, error)} "
                                f"Retrying every {self._p('reconnect_period'):g} s.")

    def _on_message(self, receipt: float, message: dict[str, Any]) -> None:
        stamp = self.get_clock().now().to_msg()
        with self._lock:
            feedback = self._core.on_message(receipt, message)
        if feedback is not None and self._joint_pub is not None:
            msg = JointState()
            msg.header.stamp = stamp
            msg.name = list(joints.JOINT_NAMES)
            msg.position = feedback.positions.tolist()
            msg.effort = (feedback.loads * float(self._p("effort_scale"))).tolist()
            self._joint_pub.publish(msg)

    # ================================================================== joint_trajectory topic
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        age = None if stamp == 0.0 else self.get_clock().now().nanoseconds * 1e-9 - stamp
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        positions = [list(p.positions) for p in msg.points]
        with self._lock:
            receipt = time.monotonic()
            written = self._core.on_trajectory(list(msg.joint_names), times, positions, age)
            done = time.monotonic()
        hook = self.command_written_hook
        if written and len(positions) == 1 and hook is not None:
            hook(msg, receipt, done)

    def _on_command_tick(self) -> None:
        with self._lock:
            if self._core is not None:
                self._core.tick()

    # ================================================================== services
    def _on_set_torque(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            response.success, response.message = self._core.set_torque(bool(request.data))
        self.get_logger().info(response.message)
        return response

    def _on_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            response.message = self._core.estop()
            response.success = True
        self.get_logger().error(response.message)
        return response

    def _on_reset_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            response.success, response.message = self._core.reset_estop()
        self.get_logger().info(response.message)
        return response

    # ================================================================== move_joints action
    def _on_goal(self, goal_request: MoveJoints.Goal) -> GoalResponse:
        with self._lock:
            why = self._core.precondition()
            if why is not None:
                from roarm_driver.driver_core import PRECONDITION_TEXT
                self._core.refuse(why, f"move_joints goal refused: {PRECONDITION_TEXT[why]}")
                return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_goal_accepted(self, goal_handle: Any) -> None:
        with self._lock:
            self._core.stop_motion("preempted by a new move_joints goal")
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
        core = self._core
        with self._lock:
            try:
                target, duration, start = core.plan_move(names, list(goal.positions), float(goal.duration),
                                                         owner=goal_handle)
            except (CommandRejected, ValueError) as exc:
                rule = exc.rule if isinstance(exc, CommandRejected) else "names"
                core.refuse(rule, str(exc))
                goal_handle.abort()
                result.message = str(exc)
                return result
        index = [joints.JOINT_NAMES.index(n) for n in names]
        tolerance = float(goal.tolerance) if goal.tolerance > 0 else float(self._p("default_tolerance"))
        deadline = start + duration + float(self._p("settle_timeout"))
        period = 1.0 / min(core.config.command_rate, 20.0)
        while True:
            await self._sleep(period)
            now = time.monotonic()
            with self._lock:
                measured = core.measured
                stopped = core.move_owner is not goal_handle
                reason = core.move_stop_reason
                if goal_handle.is_cancel_requested and not stopped:
                    # The servos hold the last pose written, one step ahead of the arm at most; writing the
                    # measured pose instead would pull the arm back by the feedback's age times its speed.
                    core.end_move(goal_handle, "canceled")
            current = [float(measured[i]) for i in index] if measured is not None else [math.nan] * len(index)
            error = max(abs(c - float(target[i])) for c, i in zip(current, index)) if measured is not None \
                else math.inf
            result.final_positions = current
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
            feedback.current_positions = current
            feedback.progress = min(1.0, (now - start) / duration) if duration > 0 else 1.0
            feedback.max_error = error
            goal_handle.publish_feedback(feedback)
            if now - start >= duration and error <= tolerance:
                with self._lock:
                    core.end_move(goal_handle, "succeeded")
                goal_handle.succeed()
                result.success = True
                result.message = f"reached within {tolerance:.3f} rad"
                return result
            if now > deadline:
                with self._lock:
                    core.end_move(goal_handle, "timeout")
                goal_handle.abort()
                result.message = f"not within {tolerance:.3f} rad after {deadline - start:.1f} s " \
                                 f"(error {error:.3f} rad)"
                return result

    def _start_startup_move(self) -> None:
        """move_on_startup: a slow straight move to startup_pose once the first feedback is in (own thread)."""
        def run() -> None:
            end = time.monotonic() + 5.0
            while time.monotonic() < end:
                with self._lock:
                    core = self._core
                    if core is None:
                        return
                    if core.precondition() is None:
                        try:
                            check_pose(list(self._p("startup_pose")), core.config.safety)
                            _, duration, _ = core.plan_move(list(joints.JOINT_NAMES), list(self._p("startup_pose")),
                                                            0.0, owner=None)
                        except CommandRejected as exc:
                            self.get_logger().error(f"startup_pose refused: {exc}")
                            return
                        self.get_logger().info(f"moving to startup_pose in {duration:.1f} s")
                        return
                time.sleep(0.05)
            self.get_logger().error("move_on_startup: no feedback from the arm within 5 s; not moving")
        threading.Thread(target=run, name="startup-move", daemon=True).start()

    # ================================================================== diagnostics
    def feedback_rate(self, window: float = 1.0) -> float:
        with self._lock:
            return self._core.feedback_rate(window) if self._core is not None else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Everything diagnostics reports, as plain values (tests and benchmarks read it too)."""
        link = self._link
        with self._lock:
            core = self._core
            lines = link.splitter.counts.as_dict() if link is not None else {}
            total_lines = sum(v for k, v in lines.items() if k not in ("bytes", "resynced"))
            line_bytes = lines.get("bytes", 0) / total_lines if total_lines else 0.0
            connected = bool(link is not None and link.connected)
            out: dict[str, Any] = {
                "state": core.state if core is not None else "unconfigured",
                "active": bool(core is not None and core.active),
                "port": link.port if link is not None else "",
                "connected": connected,
                "line_rate_limit_hz": (int(self._p("baud")) / 10.0 / line_bytes) if line_bytes else 0.0,
                "mean_line_bytes": line_bytes,
                # A link that is up has no current error; the last one stays visible as link_last_fault.
                "last_error": "" if connected or link is None else link.last_error,
                "link_last_fault": link.last_error if link is not None else "",
                "feedback_suspect": bool(core is not None and core.feedback_suspect()),
            }
            if core is not None:
                out.update(core.snapshot())
            out.update({f"lines_{k}": v for k, v in lines.items()})
            if link is not None:
                out.update({f"link_{k}": v for k, v in link.counters.items()})
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
        elif snap["feedback_suspect"]:
            status.level, status.message = DiagnosticStatus.WARN, \
                f"feedback lines dropped ({snap.get('bad_feedback', 0)}): {snap['last_bad_feedback']}"
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
    raise SystemExit(main())
