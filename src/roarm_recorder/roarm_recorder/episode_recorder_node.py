"""``episode_recorder``: demonstrations to rosbag2, one bag per episode (lifecycle node).

configure  declares nothing new: creates one raw subscription per recorded topic (``raw=True``: the CDR bytes as
           they arrived, written without re-serialising), the ``record_episode`` action, the ``stop_episode``
           service (StopEpisode: keep = stop and keep, false = discard) and diagnostics. A missing or unwritable
           output folder is reported at once as an ERROR diagnostic (and fails every goal until fixed).
activate   accepts goals. One goal = one episode: the bag is created when the goal starts, its metadata
           (roarm_interfaces' episode bag contract, see episode_bag.py) written when it ends.
deactivate ends a running episode and keeps it; cleanup destroys the entities.

An episode ends by: stop_episode (keep / discard), a goal cancel (discard), max_duration (kept), the simulated
world's outcome with ``stop_on_outcome`` (kept, outcome stored), or a write error (disk full: what was written is
closed if possible, else the directory stays marked incomplete; ERROR diagnostic, aborted goal).

Subscriptions use QoS compatible with the publishers: sensor-data QoS (best effort) for ``sensor_qos_topics``
(images), reliable KEEP_LAST(100) otherwise (a reliable subscription with depth keeps up with a 50 Hz stream when the
writer stalls briefly). The publishers' own QoS profiles go into the bag as offered_qos_profiles (what
``ros2 bag play`` re-offers).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState

from roarm_common.node_main import run_node
from roarm_common.parameters import Param, declare_parameters
from roarm_common.service_call import call_service
from roarm_description import joints
from roarm_interfaces.action import RecordEpisode
from roarm_interfaces.msg import EpisodeOutcome
from roarm_interfaces.srv import StopEpisode
from roarm_recorder.episode_bag import (
    COMPRESSIONS,
    STORAGES,
    TELEOP_MODES,
    EpisodeBag,
    EpisodeMetadata,
    RecordingError,
    TopicRecord,
    action_source_for,
    check_output_folder,
    episode_dir_name,
    next_episode_index,
    typestore_for,
)
from roarm_recorder.recorder_core import OutcomeTracker, TopicActivity, end_reason

PARAMETERS: tuple[Param, ...] = (
    Param("output_dir", "outputs/episodes", "folder receiving one rosbag2 directory per episode; must exist"),
    Param("storage", "mcap", "rosbag2 storage of each bag: mcap or sqlite3", choices=STORAGES),
    Param("compression", "zstd", "zstd (MCAP: its chunks, as ros2 bag record -s mcap does by default; sqlite3: each "
          "message) or none", choices=COMPRESSIONS),
    Param("topics", ["camera/image_raw", "joint_states", "joint_trajectory"], "topics recorded"),
    Param("topic_types", ["sensor_msgs/msg/Image", "sensor_msgs/msg/JointState",
                          "trajectory_msgs/msg/JointTrajectory"], "message type of each topic, in `topics` order"),
    Param("sensor_qos_topics", ["camera/image_raw", "camera/image_raw/compressed"],
          "topics subscribed with sensor-data QoS (best effort: what camera publishers offer)"),
    Param("frame_topic", "camera/image_raw", "topic whose message count is the episode's frame count"),
    Param("state_topic", "joint_states", "measured joints; the first message of an episode is its start_pose"),
    Param("command_topic", "joint_trajectory", "the COMMAND stream: action_source command:<topic>"),
    Param("teleop_mode", "leader_follower", "how the demonstration is driven (stored; hand_guiding => "
          "action_source next_state)", choices=TELEOP_MODES),
    Param("fps", 30.0, "intended frame rate of the dataset made from these bags, Hz (stored)", range=(1.0, 1000.0)),
    Param("default_max_duration", 120.0, "s: an episode whose goal gives max_duration 0 ends (kept) after this",
          range=(1.0, 3600.0)),
    Param("outcome_topic", "", "sim/episode_outcome in simulation: seed and outcome of the episode come from it "
          "('' = none: outcome 'unknown')"),
    Param("stop_on_outcome", False, "end and keep the episode when outcome_topic reports SUCCESS or TIMEOUT"),
    Param("keep_failed", True, "stop_on_outcome: keep an episode whose outcome is TIMEOUT (false: discard it, as "
          "roarm-vla-record-expert does)"),
    Param("torque_service", "set_torque", "hand_guiding: called with false when an episode starts and true when "
          "it ends ('' = leave the torque alone)"),
    Param("parameter_nodes", ["arm_driver", "leader_arm_driver", "teleop_relay", "camera_publisher", "sim_world",
                              "scripted_expert", "vla_policy"],
          "nodes whose parameter values are stored in the bag (roarm_vla.parameters); absent ones are skipped"),
    Param("silence_timeout", 1.0, "s without a message on a recorded topic before it is reported silent",
          range=(0.05, 60.0)),
    Param("min_free_bytes", 1_000_000_000, "diagnostics WARN when the output folder's file system has less free "
          "space than this, bytes", range=(0, 10**15)),
    Param("diagnostics_period", 1.0, "s between diagnostics messages", range=(0.05, 60.0)),
    Param("autostart", True, "main() only: configure and activate on start (launch files drive the lifecycle)"),
)

FEEDBACK_PERIOD_S = 0.25


def message_class(type_name: str):
    import importlib

    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def qos_to_dict(qos) -> dict[str, Any]:
    """rclpy QoSProfile -> the plain dict episode_bag turns into rosbag2's offered_qos_profiles."""
    def duration(d) -> tuple[int, int]:
        ns = int(d.nanoseconds)
        return divmod(ns, 1_000_000_000)

    return {
        "history": qos.history.name.lower(), "depth": int(qos.depth),
        "reliability": qos.reliability.name.lower(), "durability": qos.durability.name.lower(),
        "deadline": duration(qos.deadline), "lifespan": duration(qos.lifespan),
        "liveliness": qos.liveliness.name.lower(),
        "liveliness_lease_duration": duration(qos.liveliness_lease_duration),
        "avoid_ros_namespace_conventions": bool(qos.avoid_ros_namespace_conventions),
    }


class _Episode:
    """The running episode: its bag, activity, outcome tracker and end request (all under the node's lock)."""

    def __init__(self, bag: EpisodeBag, index: int, task: str, max_duration: float, topics: list[str],
                 started_monotonic: float):
        self.bag = bag
        self.index = index
        self.task = task
        self.max_duration = max_duration
        self.activity = TopicActivity(topics, started_monotonic)
        self.started = started_monotonic
        self.outcome = OutcomeTracker()
        self.stop_request: bool | None = None
        self.error = ""
        self.start_pose: list[float] | None = None
        self.parameters: dict[str, Any] = {}
        self.done = threading.Event()
        self.result: RecordEpisode.Result | None = None


class EpisodeRecorderNode(LifecycleNode):
    # The record_episode execute callback runs for the whole episode while subscriptions, the stop service and
    # the diagnostics timer go on (roarm_common.node_main.executor_threads).
    EXECUTOR_THREADS = 4

    def __init__(self, node_name: str = "episode_recorder", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, PARAMETERS)
        self._lock = threading.RLock()
        self._episode: _Episode | None = None
        # A goal is accepted before its execute callback creates the episode: this reservation, taken under the
        # lock at acceptance and released when that goal ends, refuses a second goal arriving in between.
        self._goal_reserved = False
        self._active = False
        self._entities: list[Any] = []
        self._action_server: ActionServer | None = None
        self._diag_pub = None
        self._error = ""  # last error; ERROR diagnostic until an episode starts cleanly
        self._episodes_kept = 0
        self._episodes_discarded = 0
        self._topics: list[str] = []  # as configured (relative)
        self._names: dict[str, str] = {}  # configured topic -> absolute name recorded in the bag
        self._types: dict[str, str] = {}
        self._sub_qos: dict[str, QoSProfile] = {}

    # ---------------------------------------------------------------------------------------------- lifecycle
    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        topics, types = list(self._p("topics")), list(self._p("topic_types"))
        if len(topics) != len(types) or not topics:
            self.get_logger().error(f"topics ({len(topics)}) and topic_types ({len(types)}) must be non-empty lists "
                                    "of the same length")
            return TransitionCallbackReturn.FAILURE
        try:
            typestore_for(types)
            classes = [message_class(t) for t in types]
        except (RecordingError, ImportError, AttributeError, ValueError) as exc:
            self.get_logger().error(f"unknown message type among {types}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._topics = topics
        self._types = dict(zip(topics, types))
        sensor = set(self._p("sensor_qos_topics"))
        writer_group = MutuallyExclusiveCallbackGroup()  # one writer at a time, in arrival order
        service_group = ReentrantCallbackGroup()
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self._entities = [self.create_timer(float(self._p("diagnostics_period")), self._publish_diagnostics)]
        for topic, cls in zip(topics, classes):
            qos = qos_profile_sensor_data if topic in sensor else QoSProfile(
                depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
            self._sub_qos[topic] = qos
            sub = self.create_subscription(cls, topic, lambda data, t=topic: self._on_message(t, data), qos,
                                           callback_group=writer_group, raw=True)
            self._names[topic] = sub.topic_name
            self._entities.append(sub)
        if self._p("outcome_topic"):
            self._entities.append(self.create_subscription(EpisodeOutcome, str(self._p("outcome_topic")),
                                                           self._on_outcome, 10, callback_group=service_group))
        self._entities.append(self.create_service(StopEpisode, "stop_episode", self._on_stop,
                                                  callback_group=service_group))
        self._action_server = ActionServer(
            self, RecordEpisode, "record_episode", execute_callback=self._execute, goal_callback=self._on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT, callback_group=ReentrantCallbackGroup())
        self._torque_client = None
        if self._p("teleop_mode") == "hand_guiding" and self._p("torque_service"):
            from std_srvs.srv import SetBool

            self._torque_client = self.create_client(SetBool, str(self._p("torque_service")),
                                                     callback_group=service_group)
        self._param_clients = self._make_parameter_clients(service_group)
        try:
            check_output_folder(self._output_dir())
        except RecordingError as exc:
            self._set_error(str(exc))
        self.get_logger().info(f"configured: {len(topics)} topics -> {self._output_dir()} ({self._p('storage')}, "
                               f"compression {self._p('compression')}), "
                               f"teleop_mode {self._p('teleop_mode')}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            episode = self._episode
        if episode is not None:
            self._request_stop(True)
            episode.done.wait(10.0)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            episode = self._episode
        if episode is not None:
            self._finish(episode, "stopped", True)
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        for entity in self._entities:
            try:
                if hasattr(entity, "cancel"):
                    entity.cancel()
                    self.destroy_timer(entity)
                elif hasattr(entity, "topic_name"):
                    self.destroy_subscription(entity)
                else:
                    self.destroy_service(entity)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._entities = []
        if self._action_server is not None:
            self._action_server.destroy()
            self._action_server = None

    def _output_dir(self) -> Path:
        return Path(str(self._p("output_dir"))).expanduser().resolve()

    def _set_error(self, message: str) -> None:
        self._error = message
        self.get_logger().error(message)

    # ---------------------------------------------------------------------------------------------- recording
    def _on_message(self, topic: str, data: bytes) -> None:
        receive_ns = self.get_clock().now().nanoseconds
        with self._lock:
            episode = self._episode
            if episode is None or episode.error or episode.done.is_set():
                return
            try:
                episode.bag.write(self._names[topic], receive_ns, data)
            except RecordingError as exc:
                episode.error = str(exc)
                return
            episode.activity.seen(topic, time.monotonic())
            if topic == self._p("state_topic") and episode.start_pose is None:
                episode.start_pose = self._joint_positions(data)

    def _joint_positions(self, data: bytes) -> list[float] | None:
        msg = deserialize_message(data, JointState)
        by_name = dict(zip(msg.name, msg.position))
        if not all(n in by_name for n in joints.JOINT_NAMES):
            return None
        return [float(by_name[n]) for n in joints.JOINT_NAMES]

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        with self._lock:
            if self._episode is not None:
                self._episode.outcome.update(msg.episode_index, msg.seed, msg.status)

    def _on_goal(self, goal: RecordEpisode.Goal) -> GoalResponse:
        with self._lock:
            if not self._active:
                self.get_logger().warning("record_episode refused: the recorder is not active")
                return GoalResponse.REJECT
            if self._episode is not None or self._goal_reserved:
                self.get_logger().warning("record_episode refused: an episode is being recorded")
                return GoalResponse.REJECT
            if not goal.task.strip():
                self.get_logger().warning("record_episode refused: the task text is empty")
                return GoalResponse.REJECT
            if goal.max_duration < 0:
                return GoalResponse.REJECT
            self._goal_reserved = True
            return GoalResponse.ACCEPT

    def _offered_qos(self, topic: str) -> tuple[dict, ...]:
        infos = self.get_publishers_info_by_topic(self._names[topic])
        profiles = tuple(qos_to_dict(i.qos_profile) for i in infos)
        # No publisher yet: store the profile this recorder subscribed with, so `ros2 bag play` offers something
        # any of our subscribers accepts.
        return profiles or (qos_to_dict(self._sub_qos[topic]),)

    def _start(self, task: str, max_duration: float) -> _Episode:
        folder = self._output_dir()
        check_output_folder(folder)
        index = next_episode_index(folder)
        bag = EpisodeBag(folder, episode_dir_name(index, time.time()), str(self._p("storage")),
                         str(self._p("compression")))
        records = [TopicRecord(self._names[t], self._types[t], self._offered_qos(t)) for t in self._topics]
        bag.open(records)
        episode = _Episode(bag, index, task, max_duration, self._topics, time.monotonic())
        with self._lock:
            self._episode = episode
        self._error = ""
        self._set_torque(False)
        episode.parameters = self._collect_parameters()
        self.get_logger().info(f"episode {index} recording to {bag.path}: {task!r}")
        return episode

    def _execute(self, goal_handle) -> RecordEpisode.Result:
        try:
            return self._record(goal_handle)
        finally:
            with self._lock:
                self._goal_reserved = False

    def _record(self, goal_handle) -> RecordEpisode.Result:
        goal = goal_handle.request
        max_duration = goal.max_duration if goal.max_duration > 0 else float(self._p("default_max_duration"))
        try:
            episode = self._start(goal.task.strip(), max_duration)
        except RecordingError as exc:
            self._set_error(f"episode not started: {exc}")
            goal_handle.abort()
            return RecordEpisode.Result(kept=False, end_reason="error", message=str(exc))
        feedback_due = 0.0
        while True:
            now = time.monotonic()
            with self._lock:
                decision = end_reason(
                    elapsed=now - episode.started, max_duration=episode.max_duration,
                    stop_request=episode.stop_request, cancelled=goal_handle.is_cancel_requested,
                    error=episode.error, outcome_finished=episode.outcome.finished,
                    stop_on_outcome=bool(self._p("stop_on_outcome")), outcome=episode.outcome.outcome,
                    keep_failed=bool(self._p("keep_failed")))
            if decision is not None:
                break
            if now >= feedback_due:
                feedback_due = now + FEEDBACK_PERIOD_S
                goal_handle.publish_feedback(self._feedback(episode, now))
            time.sleep(0.02)
        reason, keep = decision
        result = self._finish(episode, reason, keep)
        if reason == "cancelled":
            goal_handle.canceled()
        elif reason == "error" or (keep and not result.kept):
            goal_handle.abort()
        else:
            goal_handle.succeed()
        return result

    def _feedback(self, episode: _Episode, now: float) -> RecordEpisode.Feedback:
        with self._lock:
            return RecordEpisode.Feedback(
                episode_index=episode.index, elapsed=now - episode.started, topics=list(episode.activity.topics),
                counts=[episode.activity.counts[t] for t in episode.activity.topics],
                silent_for=episode.activity.silent_for(now), bag_path=str(episode.bag.path))

    def _finish(self, episode: _Episode, reason: str, keep: bool) -> RecordEpisode.Result:
        """Close (keep) or delete (discard) the bag; the result says what happened. Runs once per episode."""
        with self._lock:
            if episode.done.is_set():
                return episode.result
            duration = time.monotonic() - episode.started
            counts = dict(episode.activity.counts)
            result = RecordEpisode.Result(
                episode_index=episode.index, end_reason=reason, duration=duration,
                outcome=episode.outcome.outcome, topics=list(counts), counts=[counts[t] for t in counts],
                frame_count=counts.get(str(self._p("frame_topic")), 0))
            try:
                if keep:
                    metadata = EpisodeMetadata(
                        task=episode.task, joint_names=joints.JOINT_NAMES, fps=float(self._p("fps")),
                        teleop_mode=str(self._p("teleop_mode")),
                        action_source=action_source_for(str(self._p("teleop_mode")), self._command_name()),
                        episode_index=episode.index, parameters=episode.parameters, seed=episode.outcome.seed,
                        start_pose=episode.start_pose, outcome=episode.outcome.outcome)
                    result.bag_path = str(episode.bag.close(metadata))
                    result.kept = True
                    self._episodes_kept += 1
                else:
                    episode.bag.discard()
                    self._episodes_discarded += 1
            except RecordingError as exc:
                episode.error = episode.error or str(exc)
            if episode.error:
                result.kept = False
                result.end_reason = "error"
                result.bag_path = str(episode.bag.path) if episode.bag.path.exists() else ""
                result.message = (f"episode {episode.index} failed: {episode.error}"
                                  + (f" (left marked incomplete in {episode.bag.path})" if result.bag_path else ""))
                self._set_error(result.message)
            elif result.kept:
                result.message = (f"episode {episode.index} kept: {result.frame_count} frames, "
                                  f"{sum(counts.values())} messages in {duration:.1f} s -> {result.bag_path}")
            else:
                why = f"outcome {episode.outcome.outcome}" if reason == "outcome" else reason
                result.message = f"episode {episode.index} discarded ({why})"
            episode.result = result
            self._episode = None
            episode.done.set()
        self._set_torque(True)
        if not episode.error:  # an error was logged by _set_error (rclpy refuses two severities at one call site)
            self.get_logger().info(result.message)
        return result

    def _command_name(self) -> str:
        """The command topic as the bag names it (absolute, e.g. /joint_trajectory)."""
        topic = str(self._p("command_topic"))
        return self._names.get(topic, topic if topic.startswith("/") else "/" + topic)

    def _request_stop(self, keep: bool) -> _Episode | None:
        with self._lock:
            episode = self._episode
            if episode is not None and episode.stop_request is None:
                episode.stop_request = bool(keep)
            return episode

    def _on_stop(self, request: StopEpisode.Request, response: StopEpisode.Response) -> StopEpisode.Response:
        episode = self._request_stop(request.keep)
        if episode is None:
            response.success = False
            response.message = "no episode is being recorded"
            return response
        if not episode.done.wait(30.0):
            response.success = False
            response.message = f"episode {episode.index} did not finish within 30 s"
            return response
        result = episode.result
        response.success = result.kept == bool(request.keep) and result.end_reason != "error"
        response.message = result.message
        response.episode_index = episode.index
        response.duration = result.duration
        response.message_count = sum(result.counts) if result.kept else 0
        return response

    # ---------------------------------------------------------------------------------------------- helpers
    def _set_torque(self, on: bool) -> None:
        """hand_guiding: torque off while the person moves the arm, back on (holding the pose) afterwards."""
        client = getattr(self, "_torque_client", None)
        if client is None:
            return
        from std_srvs.srv import SetBool

        try:
            reply = call_service(client, SetBool.Request(data=on), timeout=3.0, resend_after=1.0)
        except TimeoutError as exc:
            self.get_logger().warning(f"set torque {'on' if on else 'off'} failed: {exc}; torque left as it is")
            return
        if not reply.success:
            self.get_logger().warning(f"set torque {'on' if on else 'off'} failed: {reply.message}")

    def _make_parameter_clients(self, group) -> dict[str, tuple[Any, Any]]:
        from rcl_interfaces.srv import GetParameters, ListParameters

        clients = {}
        for name in self._p("parameter_nodes"):
            if not name:
                continue
            clients[name] = (self.create_client(ListParameters, f"/{name}/list_parameters", callback_group=group),
                             self.create_client(GetParameters, f"/{name}/get_parameters", callback_group=group))
        return clients

    def _collect_parameters(self, timeout: float = 5.0) -> dict[str, Any]:
        """{node: {parameter: value}} of the graph's nodes, plus this recorder's own.

        The nodes of ``parameter_nodes`` that run (in the ROS graph, or whose services answer) are asked at once and
        waited for up to ``timeout`` in all; the episode is already recording meanwhile. A running node that does not
        answer in time is named in a WARN (its values are missing from the bag's metadata); one that does not run
        is skipped."""
        from rcl_interfaces.srv import GetParameters, ListParameters
        from rclpy.parameter import parameter_value_to_python

        values: dict[str, Any] = {self.get_name(): {p.name: self._p(p.name) for p in PARAMETERS}}
        end = time.monotonic() + timeout
        running = set(self.get_node_names())
        asked = {name: clients for name, clients in self._param_clients.items()
                 if name in running or all(c.service_is_ready() for c in clients)}

        def answers(futures: dict[str, Any]) -> dict[str, Any]:
            while not all(f.done() for f in futures.values()) and time.monotonic() < end:
                time.sleep(0.005)
            return {name: f.result() for name, f in futures.items() if f.done() and f.result() is not None}

        while not all(c.service_is_ready() for cs in asked.values() for c in cs) and time.monotonic() < end:
            time.sleep(0.01)
        ready = {name: cs for name, cs in asked.items() if all(c.service_is_ready() for c in cs)}
        listed = answers({name: cs[0].call_async(ListParameters.Request()) for name, cs in ready.items()})
        names = {name: [n for n in reply.result.names if n != "use_sim_time"] for name, reply in listed.items()}
        got = answers({name: ready[name][1].call_async(GetParameters.Request(names=names[name]))
                       for name in listed})
        for name, reply in got.items():
            values[name] = {n: parameter_value_to_python(v) for n, v in zip(names[name], reply.values)}
        silent = sorted(set(asked) - set(values))
        if silent:
            self.get_logger().warn(f"no parameter values from {silent} within {timeout:.0f} s: the bag's "
                                   "roarm_vla.parameters lacks them")
        return json.loads(json.dumps(values, default=str))

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        status = DiagnosticStatus(name=f"{self.get_name()}: recording", hardware_id="episode_recorder")
        level, message = DiagnosticStatus.OK, "idle"
        values = {"output_dir": str(self._output_dir()), "storage": str(self._p("storage")),
                  "compression": str(self._p("compression")),
                  "teleop_mode": str(self._p("teleop_mode")), "episodes_kept": str(self._episodes_kept),
                  "episodes_discarded": str(self._episodes_discarded)}
        try:
            free = shutil.disk_usage(self._output_dir()).free
            values["free_bytes"] = str(free)
            if free < int(self._p("min_free_bytes")):
                level, message = DiagnosticStatus.WARN, f"only {free / 1e9:.2f} GB free in {self._output_dir()}"
        except OSError:
            pass
        with self._lock:
            episode = self._episode
            if episode is not None:
                message = f"recording episode {episode.index} ({now - episode.started:.0f} s)"
                for topic, count in episode.activity.counts.items():
                    values[f"count {topic}"] = str(count)
                silent = episode.activity.silent_topics(now, float(self._p("silence_timeout")))
                if silent:
                    level, message = DiagnosticStatus.WARN, f"{message}; silent: {', '.join(silent)}"
        if self._error:
            level, message = DiagnosticStatus.ERROR, self._error
        status.level, status.message = level, message
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    return run_node(EpisodeRecorderNode, args, lifecycle=True)


if __name__ == "__main__":
    raise SystemExit(main())
