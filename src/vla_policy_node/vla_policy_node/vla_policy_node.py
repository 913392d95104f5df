"""ROS 2 lifecycle node ``vla_policy``: SmolVLA on camera + joint states -> action chunks -> a steady command stream.

Thin layer over the ROS-free core (policy_runtime, chunk_scheduler, inference_worker):
- configure: loads the checkpoint once (slow); bad checkpoint / state size / camera key -> FAILURE with the reason
  in the log and in diagnostics.
- activate: the control timer starts commanding; deactivate: commands stop (the driver holds its last setpoint)
  and the plan is dropped.
- control tick (``control_rate`` Hz, never waits for the model): checks the observation's freshness, offers it to
  the inference thread when the queue runs low, and publishes the scheduler's current command on
  ``joint_trajectory`` (one point). Stale or missing input -> nothing is sent and diagnostics say why. Nothing is
  sent before the first chunk.
- every chunk: ``vla/action_chunk`` (roarm_interfaces/ActionChunk) and ``vla/predicted_trajectory``
  (JointTrajectory with time_from_start = k * step_period, stamped with the observation's stamp).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roarm_description.joints import JOINT_NAMES, LOWER_LIMITS, UPPER_LIMITS, order_by_names
from roarm_interfaces.msg import ActionChunk
from roarm_interfaces.srv import SetTask

from .chunk_scheduler import ChunkScheduler, MergeRule, SchedulerConfig
from .inference_worker import InferenceResult, InferenceWorker, Observation
from roarm_common.node_main import run_node

# name -> (default, description). Types follow the defaults. Documented again in the README and the YAML.
PARAMETERS: dict[str, tuple[object, str]] = {
    "checkpoint": ("", "LeRobot pretrained_model folder or hub id (e.g. lerobot/smolvla_base)"),
    "vlm_path": ("", "local SmolVLM folder replacing the checkpoint's vlm_model_name ('' = keep)"),
    "task": ("Pick up the white box", "task text the policy is conditioned on (vla/set_task changes it)"),
    "camera_key": ("observation.images.top", "the checkpoint's image feature fed with camera/image_raw"),
    "state_joint_names": (list(JOINT_NAMES), "URDF joint names in the checkpoint's state/action order"),
    "joint_units": ("auto", "checkpoint joint units: auto (roarm_vla_meta.json, else radians) | radians | degrees"),
    "precision": ("fp32", "fp32 | bf16 | fp16 (GPU) | int8 | int4 (GPU weight-only)"),
    "device": ("cpu", "torch device: cpu | cuda | cuda:N"),
    "num_threads": (0, "torch CPU threads for inference (0 = torch default)"),
    "control_rate": (30.0, "Hz of the command stream on joint_trajectory"),
    "action_fps": (0.0, "Hz of the chunk's steps (training data fps); 0 = from the checkpoint meta, else 30"),
    "queue_threshold": (0, "start an inference when fewer future steps remain (0 = half a chunk)"),
    "merge_rule": ("weighted_average", "overlapping steps: latest | weighted_average | temporal_ensemble"),
    "merge_old_weight": (0.3, "weighted_average: weight of the step already planned"),
    "merge_new_weight": (0.7, "weighted_average: weight of the new chunk's step"),
    "ensemble_decay": (0.01, "temporal_ensemble: m in exp(-m*j), j = 0 for the oldest prediction (ACT)"),
    "ema_alpha": (0.6, "EMA on commands: y += alpha * (target - y); 1 = no smoothing"),
    "max_joint_step": (0.08, "max change of any joint per command, rad (0.08 at 30 Hz = 2.4 rad/s)"),
    "rebase_when_idle": (True, "a chunk observed while the arm held still starts at its arrival (no stale drop)"),
    "observation_timeout_s": (0.5, "image or joint state older than this -> hold (send nothing new)"),
    "noise_seed": (-1, "flow-matching noise seed for every inference (-1 = random; >= 0 for comparisons)"),
    "rtc_enabled": (False, "LeRobot real-time chunking: guide each chunk towards the previous one's leftover"),
    "rtc_execution_horizon": (10, "RTC: steps of the previous chunk used for guidance"),
    "rtc_max_guidance_weight": (10.0, "RTC: clamp of the guidance weight"),
    "debug_extra_latency_s": (0.0, "testing only: sleep this long after each inference (a slow model)"),
    "diagnostics_period_s": (1.0, "period of the diagnostics message"),
    "autostart": (True, "main() only: configure and activate on start (launch files drive the lifecycle)"),
}

RELIABLE_10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _to_time_msg(seconds: float):
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()


def _duration(seconds: float) -> Duration:
    nanos = int(round(seconds * 1e9))
    return Duration(sec=nanos // 1_000_000_000, nanosec=nanos % 1_000_000_000)


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8) -> HxWx3 uint8 RGB copy; ValueError for other encodings."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"image encoding {msg.encoding!r} not supported (rgb8 or bgr8)")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    image = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    return (image[..., ::-1] if msg.encoding == "bgr8" else image).copy()  # writable, contiguous


class PeriodicThread:
    """Calls ``callback`` every ``period`` s on its own thread, on a fixed grid of deadlines (no drift); a late
    call does not cause a burst: missed deadlines are skipped. Exceptions are logged, the loop goes on."""

    def __init__(self, period: float, callback, name: str) -> None:
        if not period > 0:
            raise ValueError(f"period must be > 0, got {period}")
        self.period, self._callback = float(period), callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            try:
                self._callback()
            except Exception:  # noqa: BLE001 - keep ticking; the error is visible in the log
                import logging

                logging.getLogger(__name__).exception("periodic callback failed")
            deadline += self.period
            now = time.monotonic()
            if deadline < now:  # overran: skip the missed ticks instead of bursting
                deadline += math.ceil((now - deadline) / self.period) * self.period
            self._stop.wait(deadline - now)


class VlaPolicyNode(LifecycleNode):
    """SmolVLA policy as a lifecycle node; see the module docstring."""

    def __init__(self, node_name: str = "vla_policy", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self._lock = threading.Lock()
        self._runtime = None
        self._scheduler: ChunkScheduler | None = None
        self._worker: InferenceWorker | None = None
        self._active = False
        self._enabled = True
        self._task = str(self.get_parameter("task").value)
        self._image_msg: Image | None = None
        self._image_received = 0.0
        self._state: np.ndarray | None = None
        self._state_received = 0.0
        self._hold_reason = "not configured"
        self._status_level = DiagnosticStatus.WARN
        self._config_error = ""
        self._sequence = 0
        self._hold_ticks = 0
        self._discarded_chunks = 0
        self._last_tick: float | None = None
        self._periods: deque[float] = deque(maxlen=3000)
        self._latencies: deque[float] = deque(maxlen=5)  # observation stamp -> chunk placed, s
        self._last_model_chunk = None  # (obs stamp, model-space actions, latency) for RTC
        self._entities: list = []
        # Inputs and services in their own groups (a multi-threaded executor may run them side by side).
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._misc_group = MutuallyExclusiveCallbackGroup()
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        # The control tick and the diagnostics run on their own threads, not on executor timers: they keep their
        # rate whatever executor the node is spun in (rclpy's MultiThreadedExecutor is known to starve or stall
        # timers, ros2/rclpy#1223; measured here too: the 1 Hz diagnostics timer stopped once 30 Hz work began).
        self._control_loop: PeriodicThread | None = None
        self._diag_loop = PeriodicThread(float(self.get_parameter("diagnostics_period_s").value),
                                         self._publish_diagnostics, "vla_diagnostics")
        self._diag_loop.start()

    # ------------------------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from .policy_runtime import PolicyLoadError, PolicyRuntime, RuntimeConfig

        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._task = str(p["task"])
        try:
            runtime = PolicyRuntime(RuntimeConfig(
                checkpoint=str(p["checkpoint"]), camera_key=str(p["camera_key"]),
                state_joint_names=tuple(p["state_joint_names"]), joint_units=str(p["joint_units"]),
                precision=str(p["precision"]), device=str(p["device"]), vlm_path=str(p["vlm_path"]),
                num_threads=int(p["num_threads"]), rtc_enabled=bool(p["rtc_enabled"]),
                rtc_execution_horizon=int(p["rtc_execution_horizon"]),
                rtc_max_guidance_weight=float(p["rtc_max_guidance_weight"]),
            ))
            fps = float(p["action_fps"]) or (runtime.info.fps or 30.0)
            threshold = int(p["queue_threshold"]) or max(1, runtime.chunk_size // 2)
            scheduler = ChunkScheduler(SchedulerConfig(
                step_period=1.0 / fps, merge_rule=MergeRule.parse(str(p["merge_rule"])),
                old_weight=float(p["merge_old_weight"]), new_weight=float(p["merge_new_weight"]),
                ensemble_decay=float(p["ensemble_decay"]), ema_alpha=float(p["ema_alpha"]),
                max_joint_step=float(p["max_joint_step"]) if float(p["max_joint_step"]) > 0 else math.inf,
                queue_threshold=threshold, rebase_when_idle=bool(p["rebase_when_idle"]),
                lower_limits=LOWER_LIMITS, upper_limits=UPPER_LIMITS,
            ))
            if float(p["control_rate"]) <= 0:
                raise ValueError(f"control_rate must be > 0, got {p['control_rate']}")
            # Warm-up inference: the first call is much slower (allocations, lazy init); pay it here, not live.
            runtime.predict(np.zeros((64, 64, 3), np.uint8), np.zeros(len(JOINT_NAMES)), self._task, noise_seed=0)
        except (PolicyLoadError, ValueError) as exc:
            self._config_error = str(exc)
            self._hold_reason = f"configure failed: {exc}"
            self._status_level = DiagnosticStatus.ERROR
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._runtime, self._scheduler = runtime, scheduler
        self._params = p
        self._step_period = 1.0 / fps
        self._worker = InferenceWorker(self._predict, self._on_chunk, self._on_reject)
        self._worker.start()
        self._entities = [
            self.create_subscription(Image, "camera/image_raw", self._on_image, qos_profile_sensor_data,
                                     callback_group=self._input_group),
            self.create_subscription(JointState, "joint_states", self._on_joint_state, RELIABLE_10,
                                     callback_group=self._input_group),
            self.create_service(SetBool, "vla/enable", self._on_enable, callback_group=self._misc_group),
            self.create_service(SetTask, "vla/set_task", self._on_set_task, callback_group=self._misc_group),
        ]
        self._command_pub = self.create_publisher(JointTrajectory, "joint_trajectory", RELIABLE_10)
        self._chunk_pub = self.create_publisher(ActionChunk, "vla/action_chunk", RELIABLE_10)
        self._trajectory_pub = self.create_publisher(JointTrajectory, "vla/predicted_trajectory", RELIABLE_10)
        self._control_loop = PeriodicThread(1.0 / float(p["control_rate"]), self._control_tick, "vla_control")
        self._control_loop.start()
        self._config_error = ""
        self._hold_reason = "inactive"
        self._status_level = DiagnosticStatus.OK
        info = runtime.info
        self.get_logger().info(
            f"loaded {info.path} ({info.policy_type}, chunk {info.chunk_size} at {fps:g} Hz, units "
            f"{info.joint_units}, precision {runtime.precision_report.mode} on {p['device']})")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._scheduler.clear()
            self._scheduler.seed_command(None)
            self._last_model_chunk = None
            self._active = True
            self._last_tick = None
        self._hold_reason = "waiting for the first chunk"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            if self._scheduler is not None:
                self._scheduler.clear(self._now())
        self._hold_reason = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._hold_reason = "not configured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def _release(self) -> None:
        with self._lock:
            self._active = False
        if self._worker is not None:
            self._worker.stop(timeout=30.0)
            self._worker = None
        if self._control_loop is not None:
            self._control_loop.stop()
            self._control_loop = None
        for entity in self._entities:
            if hasattr(entity, "srv_type"):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._entities = []
        for name in ("_command_pub", "_chunk_pub", "_trajectory_pub"):
            pub = getattr(self, name, None)
            if pub is not None:
                self.destroy_publisher(pub)
                setattr(self, name, None)
        self._runtime = None

    def destroy_node(self) -> None:
        self._release()
        self._diag_loop.stop()
        super().destroy_node()

    # ------------------------------------------------------------------------------------------- inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, msg: Image) -> None:
        self._image_msg = msg
        self._image_received = self._now()

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            self._state = order_by_names(msg.name, msg.position)
            self._state_received = self._now()
        except ValueError as exc:
            self._hold_reason = f"bad joint_states: {exc}"

    def _observation_problem(self, now: float) -> str:
        """'' when image and state are fresh; otherwise why not."""
        limit = float(self._params["observation_timeout_s"])
        if self._image_msg is None:
            return "no image received on camera/image_raw"
        if self._state is None:
            return "no joint_states received"
        image_age = now - self._image_time()
        if now - self._image_received > limit or image_age > limit:
            return f"image stale ({max(image_age, now - self._image_received):.2f} s > {limit} s)"
        if now - self._state_received > limit:
            return f"joint_states stale ({now - self._state_received:.2f} s > {limit} s)"
        return ""

    def _image_time(self) -> float:
        stamp = _stamp_seconds(self._image_msg.header.stamp)
        return stamp if stamp > 0 else self._image_received  # unstamped images: their receipt time

    # ------------------------------------------------------------------------------------- control tick
    def _control_tick(self) -> None:
        tick = time.monotonic()
        if self._last_tick is not None:
            self._periods.append(tick - self._last_tick)
        self._last_tick = tick
        if not self._active:
            return
        if not self._enabled:
            self._hold_reason = "paused (vla/enable false)"
            return
        now = self._now()
        problem = self._observation_problem(now)
        command = None
        with self._lock:
            if problem:
                # Stale input: stop executing an open-loop plan; the driver holds the last setpoint.
                self._scheduler.clear(now)
                self._hold_ticks += 1
            else:
                if self._wants_inference(now) and not self._worker.busy:
                    try:
                        image = image_to_rgb(self._image_msg)
                    except ValueError as exc:
                        problem = str(exc)
                    else:
                        self._worker.submit(Observation(image=image, state=self._state.copy(),
                                                        stamp=self._image_time(), task=self._task))
                if not problem:
                    command = self._scheduler.next_command(now)
        if problem:
            self._hold_reason = problem
            return
        if command is None:
            if self._scheduler.counters.commands == 0:
                self._hold_reason = "waiting for the first chunk"
            else:
                self._hold_reason = "queue empty (inference slower than the chunk)"
            return
        self._hold_reason = ""
        msg = JointTrajectory()
        msg.header.stamp = _to_time_msg(now)
        msg.joint_names = list(JOINT_NAMES)
        msg.points = [JointTrajectoryPoint(positions=[float(x) for x in command], time_from_start=_duration(0.0))]
        self._command_pub.publish(msg)

    def _wants_inference(self, now: float) -> bool:
        """The scheduler's threshold, except for a model too slow for its own chunk. With latency L and chunk
        duration D, overlapping inference (start while the arm moves) executes D - L of every chunk, one chunk per
        L: a fraction min(1, (D - L) / L) of the time moving. Waiting for the plan to run out and observing the
        holding arm (the chunk is then rebased and used whole) moves D out of every D + L. The node picks the
        larger (the switch is near L = 0.62 D). Called with the lock held."""
        if not self._scheduler.needs_inference(now):
            return False
        rebase = self._scheduler.config.rebase_when_idle
        idle_since = self._scheduler.idle_since(now)
        if rebase and idle_since is not None and self._image_time() < idle_since:
            return False  # the plan just ran out: wait (one frame) for an image of the holding arm -> rebased
        if rebase and self._latencies:
            latency = float(np.median(self._latencies))
            duration = self._runtime.chunk_size * self._step_period
            overlap = min(1.0, max(0.0, duration - latency) / max(latency, 1e-6))
            if duration / (duration + latency) > overlap:
                return idle_since is not None  # stop-and-go: only once the plan has run out
        return True

    # ----------------------------------------------------------------------------------- inference side
    def _predict(self, observation: Observation):
        """Runs on the inference thread."""
        seed = int(self._params["noise_seed"])
        kwargs = {}
        if bool(self._params["rtc_enabled"]) and self._last_model_chunk is not None:
            prev_stamp, prev_actions, prev_latency = self._last_model_chunk
            done = int(round((observation.stamp - prev_stamp) / self._step_period))
            if 0 <= done < prev_actions.shape[1]:
                kwargs = {"prev_chunk_left_over": prev_actions[:, done:],
                          "inference_delay": int(math.ceil(prev_latency / self._step_period))}
        prediction = self._runtime.predict(observation.image, observation.state, observation.task,
                                           noise_seed=seed if seed >= 0 else None, **kwargs)
        extra = float(self._params["debug_extra_latency_s"])
        if extra > 0:
            time.sleep(extra)
        return prediction.actions, prediction.model_actions

    def _on_chunk(self, result: InferenceResult) -> None:
        """Runs on the inference thread: place the chunk, then publish it."""
        now = self._now()
        observation = result.observation
        with self._lock:
            if not self._active or not self._enabled or observation.task != self._task:
                self._discarded_chunks += 1  # paused, deactivated or task changed while it was computed
                return
            if self._scheduler.last_command is None or self._scheduler.idle_since(now) is not None:
                # Nothing planned: the arm holds where it is, possibly moved by someone else meanwhile (an episode
                # reset, a goal of the driver's move_joints). Start the EMA and the step limit from its measured
                # pose, not from our last command, so the first step is small for the driver too.
                measured = self._state if self._state is not None else observation.state
                self._scheduler.seed_command(measured)
            try:
                placed = self._scheduler.add_chunk(result.actions, observation.stamp, now)
            except ValueError as exc:
                self._discarded_chunks += 1
                self._hold_reason = f"chunk rejected: {exc}"
                return
            start = now if placed.rebased else observation.stamp  # when step 0 is executed
            self._last_model_chunk = (start, result.model_actions, now - observation.stamp)
            self._latencies.append(now - observation.stamp)
            sequence = self._sequence
            self._sequence += 1
        self._publish_chunk(result, sequence, now - observation.stamp, start)

    def _on_reject(self, reason: str) -> None:
        self._hold_reason = reason
        self.get_logger().warn(reason, throttle_duration_sec=5.0)

    def _publish_chunk(self, result: InferenceResult, sequence: int, latency: float, start: float) -> None:
        """ActionChunk stamped with the observation (the contract); the trajectory with the execution start (the
        observation's stamp, or the arrival when the chunk was rebased because the arm was holding)."""
        observation = result.observation
        stamp = _to_time_msg(observation.stamp)
        chunk = ActionChunk()
        chunk.header.stamp = stamp
        chunk.joint_names = list(JOINT_NAMES)
        chunk.step_period = float(self._step_period)
        chunk.num_steps = int(result.actions.shape[0])
        chunk.positions = [float(x) for x in result.actions.reshape(-1)]
        chunk.inference_latency = float(latency)
        chunk.sequence = sequence
        chunk.task = observation.task
        trajectory = JointTrajectory()
        trajectory.header.stamp = _to_time_msg(start)
        trajectory.joint_names = list(JOINT_NAMES)
        trajectory.points = [
            JointTrajectoryPoint(positions=[float(x) for x in row], time_from_start=_duration(k * self._step_period))
            for k, row in enumerate(result.actions)
        ]
        for pub, msg in ((self._chunk_pub, chunk), (self._trajectory_pub, trajectory)):
            if pub is not None:
                pub.publish(msg)

    # ------------------------------------------------------------------------------------------ services
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            self._enabled = bool(request.data)
            if not self._enabled:
                self._scheduler.clear(self._now())
        response.success = True
        response.message = "policy enabled" if request.data else "policy paused: no commands sent, driver holds"
        return response

    def _on_set_task(self, request: SetTask.Request, response: SetTask.Response) -> SetTask.Response:
        response.previous_task = self._task
        text = request.task.strip()
        if not text:
            response.success = False
            response.message = "task text is empty; the previous task stays in force"
            return response
        with self._lock:
            self._task = text
            self._scheduler.clear(self._now())  # chunks planned for the old task must not run
        response.success = True
        response.message = f"task set to {text!r}"
        return response

    # --------------------------------------------------------------------------------------- diagnostics
    def diagnostics_values(self) -> dict[str, str]:
        """The figures published on diagnostics (also handy in tests)."""
        values: dict[str, str] = {"task": self._task, "active": str(self._active), "enabled": str(self._enabled),
                                  "hold_reason": self._hold_reason or "none"}
        periods = np.array(self._periods) if self._periods else None
        if periods is not None and periods.size:
            values["control_period_p50_ms"] = f"{np.percentile(periods, 50) * 1e3:.2f}"
            values["control_period_p99_ms"] = f"{np.percentile(periods, 99) * 1e3:.2f}"
            nominal = 1.0 / float(self.get_parameter("control_rate").value)
            values["control_jitter_p99_ms"] = f"{np.percentile(np.abs(periods - nominal), 99) * 1e3:.2f}"
        if self._scheduler is not None:
            c = self._scheduler.counters
            with self._lock:
                depth = self._scheduler.queue_depth(self._now())
            values.update(queue_depth=str(depth), chunks=str(c.chunks_added), commands=str(c.commands),
                          dropped_stale_actions=str(c.dropped_stale), dropped_unsent_actions=str(c.dropped_unsent),
                          rebased_chunks=str(c.rebased_chunks),
                          empty_queue_ticks=str(c.empty_ticks), hold_ticks=str(self._hold_ticks),
                          discarded_chunks=str(self._discarded_chunks))
        if self._worker is not None:
            w = self._worker.counters
            lat = w.latencies_s
            values.update(inference_latency_last_s=f"{w.last_latency_s:.4f}",
                          inference_latency_median_s=f"{np.median(lat):.4f}" if lat else "nan",
                          inferences=str(w.completed), rejected_nonfinite_chunks=str(w.rejected_nonfinite),
                          inference_errors=str(w.errors))
        if self._runtime is not None:
            values.update(precision=self._runtime.precision_report.mode, checkpoint=self._runtime.info.path)
        if self._config_error:
            values["config_error"] = self._config_error
        return values

    def _publish_diagnostics(self) -> None:
        if not self.context.ok():
            return
        values = self.diagnostics_values()
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: policy"
        status.hardware_id = "roarm_m3"
        if self._config_error:
            status.level, status.message = DiagnosticStatus.ERROR, self._hold_reason
        elif self._active and self._enabled and self._hold_reason:
            status.level, status.message = DiagnosticStatus.WARN, f"holding: {self._hold_reason}"
        elif self._active and self._enabled:
            status.level, status.message = DiagnosticStatus.OK, "commanding"
        else:
            status.level, status.message = DiagnosticStatus.OK, self._hold_reason or "idle"
        rejected = values.get("rejected_nonfinite_chunks", "0")
        if rejected != "0":  # the model produced NaN/inf: never sent, always reported
            if status.level == DiagnosticStatus.OK:
                status.level = DiagnosticStatus.WARN
            status.message += f" ({rejected} NaN/inf chunks rejected, never sent)"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)


def main(args=None) -> int:
    """Console script: standalone runs configure + activate (autostart); under launch, launch drives them."""
    # Single-threaded on purpose: the control loop and inference have their own threads; a MultiThreadedExecutor
    # busy-waits and takes the GIL from the inference thread (measured: the command stream starved).
    return run_node(VlaPolicyNode, args, lifecycle=True)


if __name__ == "__main__":
    main()
