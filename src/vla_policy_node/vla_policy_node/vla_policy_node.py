"""ROS 2 lifecycle node ``vla_policy``: SmolVLA on camera + joint states -> action chunks -> timed plans for the driver.

The policy plans, the driver executes. Each accepted chunk is merged into the timeline (chunk_scheduler), the
merged steps are EMA-smoothed, step-limited and clamped into ONE plan (command_plan) and published as one
multi-point ``joint_trajectory`` (header stamp = the plan's start in ROS time, point k at ``k * step_period``,
URDF joint names). The driver executes it on its own steady clock at its ``command_rate``; a new plan replaces
the unexecuted part of the running one. The node runs no control loop of its own: inference is started from the
image callback when the inference gate says so (inference_gate), and a slow supervision timer holds the arm
(one-point trajectory = a streamed setpoint where the plan is now) when the input goes stale.

Clock convention (timebase): scheduling on the steady clock (``time.monotonic()``), stamps in ROS time (the
node's clock, sim-time aware); a message's stamp is turned into steady time once, when it is handled.

- configure: loads the checkpoint once (slow); bad checkpoint / state size / camera key -> FAILURE with the reason
  in the log and in diagnostics. The observation spec (joint order and units, image key and size) comes from the
  checkpoint's roarm_vla_meta.json, the parameters being the fallback (observation.py builds it the same way for
  the dataset converter).
- activate: inference and plans start; deactivate, vla/enable false, vla/set_task, stale input: the plan is
  dropped and the arm holds where the running plan is (nothing is sent when no plan runs).
- every chunk: ``vla/action_chunk`` (raw chunk, stamped with its observation) and ``vla/predicted_trajectory``
  (the smoothed plan sent to the driver, the same message as on ``joint_trajectory``).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roarm_common.node_main import run_node
from roarm_common.parameters import Param, declare_parameters
from roarm_description.joints import JOINT_NAMES, LOWER_LIMITS, UPPER_LIMITS
from roarm_interfaces.msg import ActionChunk
from roarm_interfaces.srv import SetTask

from .chunk_scheduler import ChunkScheduler, MergeRule, SchedulerConfig
from .command_plan import CommandPlanner, Plan, SmoothingConfig
from .freshness import InputTimes, observation_problem
from .inference_gate import GateConfig, InferenceGate
from .inference_worker import InferenceResult, InferenceWorker, Observation
from .observation import DEFAULT_IMAGE_KEY, ObservationSpec, image_to_rgb, state_from_joint_state
from .precision import PRECISION_MODES
from .rtc import PreviousChunk, rtc_arguments
from .timebase import ros_to_steady, steady_to_ros

PARAMETERS: tuple[Param, ...] = (
    Param("checkpoint", "", "LeRobot pretrained_model folder or hub id (e.g. lerobot/smolvla_base)"),
    Param("vlm_path", "", "local SmolVLM folder replacing the checkpoint's vlm_model_name ('' = keep)"),
    Param("task", "Pick up the white box", "task text the policy is conditioned on (vla/set_task changes it)"),
    Param("camera_key", DEFAULT_IMAGE_KEY,
          "the checkpoint's image feature fed with camera/image_raw (roarm_vla_meta.json's image_key wins)"),
    Param("state_joint_names", list(JOINT_NAMES),
          "URDF joint names in the checkpoint's state/action order (roarm_vla_meta.json's joint_names win)"),
    Param("joint_units", "auto", "checkpoint joint units: auto (roarm_vla_meta.json, else radians)",
          choices=("auto", "radians", "degrees")),
    Param("image_size", [0, 0], "[height, width] camera images are resized to when roarm_vla_meta.json has no "
          "image_size ([0, 0] = the camera's size)", range=(0, 8192)),
    Param("precision", "fp32", "inference precision mode (see the README)", choices=tuple(PRECISION_MODES)),
    Param("device", "cpu", "torch device: cpu | cuda | cuda:N"),
    Param("num_threads", 0, "torch CPU threads for inference (0 = torch default)", range=(0, 256)),
    Param("flow_steps", 0, "flow-matching (Euler) steps per chunk, SmolVLA's num_steps; 0 = the checkpoint's "
          "(10); fewer = faster and less exact", range=(0, 100)),
    Param("action_fps", 0.0, "Hz of the chunk's steps (training data fps); 0 = from the checkpoint meta, else 30",
          range=(0.0, 1000.0)),
    Param("inference_lead_steps", 0, "start the next inference when at most this many steps of plan are left "
          "(0 = half a chunk); the slowest recent latency + inference_latency_margin_s is used when longer",
          range=(0, 100000)),
    Param("inference_latency_margin_s", 0.1, "s added to the slowest recent inference latency for the lead",
          range=(0.0, 60.0)),
    Param("merge_rule", "weighted_average", "overlapping steps: latest | weighted_average | temporal_ensemble",
          choices=tuple(r.value for r in MergeRule)),
    Param("merge_old_weight", 0.3, "weighted_average: weight of the step already planned", range=(0.0, 1000.0)),
    Param("merge_new_weight", 0.7, "weighted_average: weight of the new chunk's step", range=(0.0, 1000.0)),
    Param("ensemble_decay", 0.01, "temporal_ensemble: m in exp(-m*j), j = 0 for the oldest prediction (ACT)",
          range=(0.0, 100.0)),
    Param("ema_alpha", 0.6, "EMA along the plan: y += alpha * (target - y); 1 = no smoothing", range=(0.01, 1.0)),
    Param("max_joint_step", 0.08, "max change of any joint per plan step, rad (0 = none)", range=(0.0, 6.3)),
    Param("rebase_when_idle", True, "a chunk observed while the arm held still starts at its arrival; allows "
          "stop-and-go for a model slower than its chunk"),
    Param("observation_timeout_s", 0.5, "image or joint state older than this -> hold and drop the plan",
          range=(0.01, 60.0)),
    Param("supervision_period_s", 0.1, "period of the freshness check that holds the arm when input goes stale",
          range=(0.01, 10.0)),
    Param("noise_seed", -1, "flow-matching noise seed for every inference (-1 = random; >= 0 for comparisons)",
          range=(-1, 2**31 - 1)),
    Param("rtc_enabled", False, "LeRobot real-time chunking: guide each chunk towards the previous one's leftover"),
    Param("rtc_execution_horizon", 10, "RTC: steps of the previous chunk used for guidance", range=(1, 10000)),
    Param("rtc_max_guidance_weight", 10.0, "RTC: clamp of the guidance weight", range=(0.0, 1000.0)),
    Param("debug_extra_latency_s", 0.0, "testing only: sleep this long after each inference (a slow model)",
          range=(0.0, 60.0)),
    Param("diagnostics_period_s", 1.0, "period of the diagnostics message", range=(0.05, 60.0)),
    Param("autostart", True, "main() only: configure and activate on start (launch files drive the lifecycle)"),
)

RELIABLE_10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
URDF_SPEC = ObservationSpec()  # the measured state as the arm speaks it: URDF order, radians


def _stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _time_msg(seconds: float):
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()


def _duration(seconds: float) -> Duration:
    nanos = int(round(seconds * 1e9))
    return Duration(sec=nanos // 1_000_000_000, nanosec=nanos % 1_000_000_000)


class VlaPolicyNode(LifecycleNode):
    """SmolVLA policy as a lifecycle node; see the module docstring."""

    def __init__(self, node_name: str = "vla_policy", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._params = declare_parameters(self, PARAMETERS)
        self._lock = threading.Lock()
        self._runtime = None
        self._scheduler: ChunkScheduler | None = None
        self._planner: CommandPlanner | None = None
        self._gate: InferenceGate | None = None
        self._worker: InferenceWorker | None = None
        self._active = False
        self._enabled = True
        self._task = str(self._params["task"])
        self._image_msg: Image | None = None
        self._image_times: InputTimes | None = None
        self._image_ros_stamp = 0.0
        self._state: np.ndarray | None = None
        self._state_times: InputTimes | None = None
        self._stale = False
        self._hold_reason = "not configured"
        self._gate_reason = ""
        self._config_error = ""
        self._sequence = 0
        self._discarded_chunks = 0
        self._holds_sent = 0
        self._previous_chunk: PreviousChunk | None = None
        self._step_period = 1.0 / 30.0
        self._entities: list = []
        self._command_pub = self._chunk_pub = self._trajectory_pub = None
        self._supervision_timer = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self._diag_timer = self.create_timer(float(self._params["diagnostics_period_s"]), self._publish_diagnostics)

    # ------------------------------------------------------------------------------------------------ clocks
    @staticmethod
    def _steady() -> float:
        return time.monotonic()

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from .policy_runtime import PolicyLoadError, PolicyRuntime, RuntimeConfig

        p = {param.name: self.get_parameter(param.name).value for param in PARAMETERS}
        self._params = p
        self._task = str(p["task"])
        try:
            runtime = PolicyRuntime(RuntimeConfig(
                checkpoint=str(p["checkpoint"]), camera_key=str(p["camera_key"]),
                state_joint_names=tuple(p["state_joint_names"]), joint_units=str(p["joint_units"]),
                precision=str(p["precision"]), device=str(p["device"]), vlm_path=str(p["vlm_path"]),
                num_threads=int(p["num_threads"]), flow_steps=int(p["flow_steps"]),
                rtc_enabled=bool(p["rtc_enabled"]),
                rtc_execution_horizon=int(p["rtc_execution_horizon"]),
                rtc_max_guidance_weight=float(p["rtc_max_guidance_weight"]),
            ))
            size = [int(v) for v in p["image_size"]]
            if len(size) != 2:
                raise ValueError(f"image_size must be [height, width], got {size}")
            spec = runtime.resolve_spec(tuple(size) if min(size) > 0 else None)
            fps = float(p["action_fps"]) or (runtime.info.fps or 30.0)
            step_period = 1.0 / fps
            scheduler = ChunkScheduler(SchedulerConfig(
                step_period=step_period, merge_rule=MergeRule.parse(str(p["merge_rule"])),
                old_weight=float(p["merge_old_weight"]), new_weight=float(p["merge_new_weight"]),
                ensemble_decay=float(p["ensemble_decay"]), rebase_when_idle=bool(p["rebase_when_idle"]),
            ))
            max_step = float(p["max_joint_step"])
            planner = CommandPlanner(step_period, SmoothingConfig(
                ema_alpha=float(p["ema_alpha"]), max_joint_step=max_step if max_step > 0 else math.inf,
                lower_limits=LOWER_LIMITS, upper_limits=UPPER_LIMITS))
            gate = InferenceGate(GateConfig(
                step_period=step_period, chunk_steps=runtime.chunk_size, lead_steps=int(p["inference_lead_steps"]),
                latency_margin_s=float(p["inference_latency_margin_s"]),
                rebase_when_idle=bool(p["rebase_when_idle"])))
            runtime.warm_up(self._task)  # the first inference's lazy init is paid here, not live
        except (PolicyLoadError, ValueError) as exc:
            self._config_error = str(exc)
            self._hold_reason = f"configure failed: {exc}"
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self._runtime, self._scheduler, self._planner, self._gate = runtime, scheduler, planner, gate
            self._step_period = step_period
        self._worker = InferenceWorker(self._predict, self._on_chunk, self._on_reject)
        self._worker.start()
        self._entities = [
            self.create_subscription(Image, "camera/image_raw", self._on_image, qos_profile_sensor_data),
            self.create_subscription(JointState, "joint_states", self._on_joint_state, RELIABLE_10),
            self.create_service(SetBool, "vla/enable", self._on_enable),
            self.create_service(SetTask, "vla/set_task", self._on_set_task),
        ]
        self._command_pub = self.create_publisher(JointTrajectory, "joint_trajectory", RELIABLE_10)
        self._chunk_pub = self.create_publisher(ActionChunk, "vla/action_chunk", RELIABLE_10)
        self._trajectory_pub = self.create_publisher(JointTrajectory, "vla/predicted_trajectory", RELIABLE_10)
        self._supervision_timer = self.create_timer(float(p["supervision_period_s"]), self._supervise)
        self._config_error = ""
        self._hold_reason = "inactive"
        info = runtime.info
        self.get_logger().info(
            f"loaded {info.path} ({info.policy_type}, chunk {info.chunk_size} at {fps:g} Hz, units "
            f"{spec.joint_units}, image {spec.image_size or 'camera size'}, precision "
            f"{runtime.precision_report.mode} on {p['device']})")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._scheduler.clear()
            self._planner.last = None
            self._previous_chunk = None
            self._stale = False
            self._active = True
        self._hold_reason = "waiting for the first chunk"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_plan("inactive")
        with self._lock:
            self._active = False
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
        if self._supervision_timer is not None:
            self.destroy_timer(self._supervision_timer)
            self._supervision_timer = None
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
        with self._lock:
            self._runtime = None

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()

    # ------------------------------------------------------------------------------------------- inputs
    def _on_image(self, msg: Image) -> None:
        steady, ros_now = self._steady(), self._ros_now()
        stamp = _stamp_seconds(msg.header.stamp)
        with self._lock:
            self._image_msg = msg
            self._image_ros_stamp = stamp if stamp > 0 else ros_now
            self._image_times = InputTimes(received=steady, stamp=ros_to_steady(stamp, ros_now, steady))
            self._maybe_start_inference(steady)

    def _on_joint_state(self, msg: JointState) -> None:
        steady, ros_now = self._steady(), self._ros_now()
        try:
            measured = state_from_joint_state(msg, URDF_SPEC).astype(float)
        except ValueError as exc:
            self._hold_reason = f"bad joint_states: {exc}"
            return
        with self._lock:
            self._state = measured
            self._state_times = InputTimes(received=steady,
                                           stamp=ros_to_steady(_stamp_seconds(msg.header.stamp), ros_now, steady))

    def _maybe_start_inference(self, now: float) -> None:
        """On every image: offer the observation to the inference thread when the gate says so (lock held)."""
        if not self._active or not self._enabled or self._worker is None or self._worker.busy:
            return
        if observation_problem(now, self._image_times, self._state_times, self._timeout()):
            return  # the supervision timer holds and reports
        decision = self._gate.decide(now, self._scheduler.plan_end(now), self._scheduler.idle_since(now),
                                     self._image_times.stamp)
        self._gate_reason = decision.reason
        if decision.start:
            self._worker.submit(Observation(image=self._image_msg, state=self._state.copy(),
                                            stamp=self._image_times.stamp, task=self._task,
                                            ros_stamp=self._image_ros_stamp))

    def _timeout(self) -> float:
        return float(self._params["observation_timeout_s"])

    def _supervise(self) -> None:
        """Freshness check: stale or missing input -> hold where the plan is, drop the plan (once per episode of
        staleness); fresh again -> inference resumes from the next image."""
        if not self._active or not self._enabled:
            return
        now = self._steady()
        with self._lock:
            problem = observation_problem(now, self._image_times, self._state_times, self._timeout())
            became_stale = bool(problem) and not self._stale
            self._stale = bool(problem)
        if problem:
            self._hold_reason = problem
            if became_stale:
                self._stop_plan(problem)
        elif self._hold_reason.startswith(("image stale", "joint_states stale", "no image", "no joint_states")):
            self._hold_reason = "waiting for the next chunk"

    def _stop_plan(self, reason: str) -> None:
        """Drop the plan and hold the arm where the running plan is now (nothing sent when none runs)."""
        now = self._steady()
        with self._lock:
            if self._scheduler is None:
                return
            pose = self._planner.hold(now)
            self._scheduler.clear(now)
            self._previous_chunk = None
        self._hold_reason = reason
        if pose is not None and self._command_pub is not None:
            msg = JointTrajectory()
            msg.header.stamp = _time_msg(self._ros_now())
            msg.joint_names = list(JOINT_NAMES)
            msg.points = [JointTrajectoryPoint(positions=[float(x) for x in pose], time_from_start=_duration(0.0))]
            self._command_pub.publish(msg)
            self._holds_sent += 1

    # ----------------------------------------------------------------------------------- inference side
    def _predict(self, observation: Observation):
        """Runs on the inference thread: the image message is converted here, not in the executor."""
        seed = int(self._params["noise_seed"])
        kwargs = {}
        if bool(self._params["rtc_enabled"]):
            with self._lock:
                kwargs = rtc_arguments(self._previous_chunk, observation.stamp, self._step_period)
        image = observation.image if isinstance(observation.image, np.ndarray) else image_to_rgb(observation.image)
        prediction = self._runtime.predict(image, observation.state, observation.task,
                                           noise_seed=seed if seed >= 0 else None, **kwargs)
        extra = float(self._params["debug_extra_latency_s"])
        if extra > 0:
            time.sleep(extra)
        return prediction.actions, prediction.model_actions

    def _on_chunk(self, result: InferenceResult) -> None:
        """Runs on the inference thread: merge the chunk, build the plan, publish."""
        observation = result.observation
        with self._lock:
            now = self._steady()
            if not self._active or not self._enabled or self._stale or observation.task != self._task:
                self._discarded_chunks += 1  # paused, deactivated, stale or task changed while it was computed
                return
            try:
                placed = self._scheduler.add_chunk(result.actions, observation.stamp, now)
            except ValueError as exc:
                self._discarded_chunks += 1
                self._hold_reason = f"chunk rejected: {exc}"
                return
            latency = now - observation.stamp
            start = now if placed.rebased else observation.stamp  # when the chunk's step 0 runs
            self._previous_chunk = PreviousChunk(start=start, model_actions=result.model_actions, latency=latency)
            self._gate.record_latency(latency)
            plan = self._planner.build(self._scheduler.planned(now), now, self._state)
            sequence = self._sequence
            self._sequence += 1
            ros_now = self._ros_now()
        self._hold_reason = "" if plan is not None else "chunk too short to plan (all but one step stale)"
        self._publish_chunk(result, sequence, latency)
        if plan is not None:
            trajectory = self._trajectory(plan, steady_to_ros(plan.start, now, ros_now))
            for pub in (self._command_pub, self._trajectory_pub):
                if pub is not None:
                    pub.publish(trajectory)

    def _on_reject(self, reason: str) -> None:
        self._hold_reason = reason
        self.get_logger().warn(reason, throttle_duration_sec=5.0)

    @staticmethod
    def _trajectory(plan: Plan, start_ros: float) -> JointTrajectory:
        msg = JointTrajectory()
        msg.header.stamp = _time_msg(start_ros)
        msg.joint_names = list(JOINT_NAMES)
        msg.points = [JointTrajectoryPoint(positions=[float(x) for x in row],
                                           time_from_start=_duration(k * plan.step_period))
                      for k, row in enumerate(plan.points)]
        return msg

    def _publish_chunk(self, result: InferenceResult, sequence: int, latency: float) -> None:
        """The raw chunk, stamped with its observation (the ActionChunk contract)."""
        observation = result.observation
        chunk = ActionChunk()
        chunk.header.stamp = _time_msg(observation.ros_stamp)
        chunk.joint_names = list(JOINT_NAMES)
        chunk.step_period = float(self._step_period)
        chunk.num_steps = int(result.actions.shape[0])
        chunk.positions = [float(x) for x in result.actions.reshape(-1)]
        chunk.inference_latency = float(latency)
        chunk.sequence = sequence
        chunk.task = observation.task
        if self._chunk_pub is not None:
            self._chunk_pub.publish(chunk)

    # ------------------------------------------------------------------------------------------ services
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if not request.data:
            self._stop_plan("paused (vla/enable false)")
        with self._lock:
            self._enabled = bool(request.data)
            self._stale = False
        if request.data and self._hold_reason.startswith("paused"):
            self._hold_reason = "waiting for the next chunk"
        response.success = True
        response.message = "policy enabled" if request.data else "policy paused: the arm holds where the plan was"
        return response

    def _on_set_task(self, request: SetTask.Request, response: SetTask.Response) -> SetTask.Response:
        response.previous_task = self._task
        text = request.task.strip()
        if not text:
            response.success = False
            response.message = "task text is empty; the previous task stays in force"
            return response
        self._stop_plan(f"task changed to {text!r}")  # chunks planned for the old task must not run
        with self._lock:
            self._task = text
        response.success = True
        response.message = f"task set to {text!r}"
        return response

    # --------------------------------------------------------------------------------------- diagnostics
    def diagnostics_values(self) -> dict[str, str]:
        """The figures published on diagnostics (also handy in tests)."""
        values: dict[str, str] = {"task": self._task, "active": str(self._active), "enabled": str(self._enabled),
                                  "hold_reason": self._hold_reason or "none"}
        with self._lock:
            if self._scheduler is not None:
                now = self._steady()
                c, pc = self._scheduler.counters, self._planner.counters
                end = self._scheduler.plan_end(now)
                values.update(
                    queue_depth=str(self._scheduler.queue_depth(now)),
                    plan_left_s=f"{max(0.0, end - now):.3f}" if end is not None else "0.000",
                    chunks=str(c.chunks_added), plans=str(pc.plans), holds=str(self._holds_sent),
                    plans_too_short=str(pc.too_short), seeded_from_measured=str(pc.seeded_from_measured),
                    dropped_stale_actions=str(c.dropped_stale), rebased_chunks=str(c.rebased_chunks),
                    merged_steps=str(c.merged_steps), discarded_chunks=str(self._discarded_chunks),
                    gate_mode=self._gate.mode(), gate=self._gate_reason or "none",
                    inference_lead_s=f"{self._gate.lead():.3f}")
            if self._runtime is not None:
                spec = self._runtime.spec
                values.update(precision=self._runtime.precision_report.mode, checkpoint=self._runtime.info.path,
                              image_size="x".join(map(str, spec.image_size)) if spec.image_size else "camera",
                              joint_units=spec.joint_units)
                flow_steps = getattr(self._runtime.policy.config, "num_steps", None)  # what sample_actions uses
                if flow_steps is not None:
                    values["flow_steps"] = str(flow_steps)
        if self._worker is not None:
            w = self._worker.counters
            lat = w.latencies_s
            values.update(inference_latency_last_s=f"{w.last_latency_s:.4f}",
                          inference_latency_median_s=f"{np.median(lat):.4f}" if lat else "nan",
                          inferences=str(w.completed), rejected_nonfinite_chunks=str(w.rejected_nonfinite),
                          inference_errors=str(w.errors))
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
            status.level, status.message = DiagnosticStatus.OK, "planning"
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
    # Single-threaded: inference has its own thread; the executor only handles inputs, services and two timers.
    return run_node(VlaPolicyNode, args, lifecycle=True)


if __name__ == "__main__":
    main()
