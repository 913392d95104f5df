"""sim_world: the simulated tabletop (white box, rendered camera, episode outcome) as a ROS 2 node.

The arm's joints come ONLY from ``joint_states`` (the arm_driver talking to the firmware simulator); a reset moves
the arm to the episode's start pose through the driver's ``move_joints`` action. See README.md for the contract.
"""

from __future__ import annotations

import array
import math
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState

from roarm_common.action_client import ActionClient  # rclpy 7's can lose an answer
from roarm_description import joints
from roarm_interfaces.action import MoveJoints
from roarm_interfaces.msg import EpisodeOutcome
from roarm_interfaces.srv import GetEpisodeOutcome, ResetEpisode

from .box_physics import GraspTolerance
from .outcome import STATUS_NAMES, OutcomeRules
from .scene import CameraModel, SceneConfig
from .world import SimWorld
from roarm_common.node_main import run_node
from roarm_common.parameters import Param, declare_parameters

POSITIVE = (1e-3, 1e6)
PARAMETERS = (
    Param("image_width", 640, "rendered image width, px", range=(16, 4096)),
    Param("image_height", 480, "rendered image height, px", range=(16, 4096)),
    Param("camera_rate", 30.0, "camera/image_raw and camera/camera_info rate, Hz", range=(0.1, 200.0)),
    Param("horizontal_fov_deg", 64.0, "camera horizontal field of view, degrees", range=(1.0, 170.0)),
    Param("camera_position", [0.58, -0.40, 0.46], "camera centre in base_link, m", range=(-10.0, 10.0)),
    Param("camera_look_at", [0.13, 0.0, 0.07], "point in base_link on the camera's optical axis, m",
          range=(-10.0, 10.0)),
    Param("camera_frame_id", "camera_optical_frame", "frame_id of the images (REP-103 optical frame)"),
    Param("base_frame_id", "base_link", "frame of sim/box_pose"),
    Param("physics_rate", 50.0, "box physics + outcome judging rate, Hz", range=(1.0, 1000.0)),
    Param("state_rate", 20.0, "sim/box_pose and sim/episode_outcome publishing rate, Hz", range=(0.1, 200.0)),
    Param("seed", 0, "first episode seed of the world's own sequence (a reset with seed < 0 takes the next one)",
          range=(0, 2**31 - 1)),
    Param("random_start_pose", True, "draw the arm's start pose per episode (false: home); see learning_notes.md"),
    Param("box_radius", [0.15, 0.27], "min, max distance of the box centre from the base axis, m", range=(0.0, 1.0)),
    Param("box_azimuth_deg", [-55.0, 55.0], "min, max bearing of the box from the arm's front, degrees",
          range=(-180.0, 180.0)),
    Param("box_size", [0.025, 0.04], "min, max edge of the box's square footprint, m", range=(0.005, 0.2)),
    Param("box_height", [0.025, 0.04], "min, max box height, m", range=(0.005, 0.2)),
    Param("lift_height", 0.05, "success: box bottom at least this far above the table, m", range=(0.0, 1.0)),
    Param("hold_time", 0.3, "success: ... held grasped that high for this long, s", range=(0.0, 60.0)),
    Param("time_limit", 30.0, "episode fails with TIMEOUT after this long, s", range=POSITIVE),
    Param("grasp_axial_tolerance", 0.015, "grasp: box centre within this of the jaws' clamp point along the tool, m",
          range=(0.0, 0.2)),
    Param("grasp_lateral_tolerance", 0.012, "grasp: ... and within this across the tool, m", range=(0.0, 0.2)),
    Param("reset_move_arm", True, "reset sends the arm to the start pose via move_joints (false: leave the arm)"),
    Param("reset_move_duration", 2.5, "seconds the move_joints to the start pose should take", range=(0.01, 60.0)),
    Param("reset_timeout", 20.0, "give up a reset when the arm has not reached the start pose after this long, s",
          range=POSITIVE),
    Param("auto_start", True, "start the first episode (seed parameter) by itself once joint_states arrive"),
    Param("joint_states_timeout", 0.5, "joint_states older than this are reported stale in diagnostics, s",
          range=(0.01, 60.0)),
    Param("fault_camera_dropout_s", 0.0, "FAULT INJECTION, off by default (bench/soak.py): set at run time to N > 0 "
                                         "to stop camera/image_raw and camera_info for N s (a camera drop-out), s",
          range=(0.0, 60.0)),
)


class SimWorldNode(Node):
    # The reset service waits for the driver's move_joints result, which arrives through this node's own action
    # client callbacks (roarm_common.node_main.executor_threads).
    EXECUTOR_THREADS = 3

    def __init__(self, node_name: str = "sim_world", **kwargs):
        super().__init__(node_name, **kwargs)
        p = declare_parameters(self, PARAMETERS)
        self.params = p
        try:
            scene = SceneConfig(box_radius=_pair(p, "box_radius"), box_azimuth_deg=_pair(p, "box_azimuth_deg"),
                                box_size=_pair(p, "box_size"), box_height=_pair(p, "box_height"),
                                random_start_pose=bool(p["random_start_pose"]))
            camera = CameraModel(width=int(p["image_width"]), height=int(p["image_height"]),
                                 horizontal_fov_deg=float(p["horizontal_fov_deg"]),
                                 position=tuple(float(v) for v in p["camera_position"]),
                                 look_at=tuple(float(v) for v in p["camera_look_at"]))
            rules = OutcomeRules(float(p["lift_height"]), float(p["hold_time"]), float(p["time_limit"]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"sim_world: bad parameter: {exc}") from exc
        tolerance = GraspTolerance(axial=float(p["grasp_axial_tolerance"]),
                                   lateral=float(p["grasp_lateral_tolerance"]))
        self.world = SimWorld(scene, camera, rules, tolerance)
        self._lock = threading.Lock()
        self._next_seed = int(p["seed"])
        self.world.new_episode(self._next_seed)  # something on the table before the first reset
        self._seed = self._next_seed
        self._live = False  # an episode's clock is running (between a finished reset and the next reset)
        self._resetting = False
        self._q: np.ndarray | None = None
        self._q_time = 0.0
        self._frames = 0
        self._render_ms = 0.0
        self._auto_started = not bool(p["auto_start"])
        self._camera_paused_until = 0.0  # fault_camera_dropout_s: no images before this steady time
        self.add_post_set_parameters_callback(self._on_parameters_set)

        reentrant = ReentrantCallbackGroup()
        # The high-rate callbacks (joint_states 50 Hz, physics 50 Hz, state 20 Hz) share a reentrant group: their
        # bodies hold self._lock for the shared state. In the node's default (mutually exclusive) group they kept
        # it busy most of the time, and rclpy's MultiThreadedExecutor busy-waits while a ready entity's group is
        # busy (its wait set returns at once): one core spent spinning, the graph starved under the GIL.
        fast = ReentrantCallbackGroup()
        self.create_subscription(JointState, "joint_states", self._on_joint_states, 10, callback_group=fast)
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos_profile_sensor_data)
        self.box_pub = self.create_publisher(PoseStamped, "sim/box_pose", 10)
        self.outcome_pub = self.create_publisher(EpisodeOutcome, "sim/episode_outcome", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.create_service(ResetEpisode, "sim/reset_episode", self._on_reset, callback_group=reentrant)
        self.create_service(GetEpisodeOutcome, "sim/get_outcome", self._on_get_outcome)
        self.move_client = ActionClient(self, MoveJoints, "move_joints", callback_group=reentrant)
        self.create_timer(1.0 / float(p["camera_rate"]), skip_if_running(self._publish_camera), callback_group=fast)
        # Timers in a mutually exclusive group make the executor spin while their callback overruns the period;
        # skip_if_running() gives one-at-a-time without that: an overrun tick is dropped, not queued.
        self.create_timer(1.0 / float(p["physics_rate"]), skip_if_running(self._step_physics), callback_group=fast)
        self.create_timer(1.0 / float(p["state_rate"]), self._publish_state, callback_group=fast)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=fast)
        self.create_timer(0.5, self._maybe_auto_start, callback_group=reentrant)
        self._camera_info = self._make_camera_info(camera)

    # --- inputs ---------------------------------------------------------------------------------------------
    def _on_joint_states(self, msg: JointState) -> None:
        try:
            q = joints.order_by_names(msg.name, msg.position)
        except ValueError as exc:
            self.get_logger().warn(f"ignoring joint_states: {exc}", throttle_duration_sec=5.0)
            return
        with self._lock:
            self._q = q
            self._q_time = time.monotonic()

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- periodic work --------------------------------------------------------------------------------------
    def _step_physics(self) -> None:
        with self._lock:
            if self._q is None or not self._live:
                return  # the box stays put while no episode runs (e.g. while a reset moves the arm)
            self.world.step(self._q, self._now())  # a finished episode's outcome stays latched

    def _publish_camera(self) -> None:
        with self._lock:
            q = None if self._q is None else self._q.copy()
        if q is None:
            return  # no arm state yet: a camera without a picture is better than a made-up arm
        if time.monotonic() < self._camera_paused_until:
            return  # an injected camera drop-out (fault_camera_dropout_s)
        stamp = self.get_clock().now().to_msg()  # capture time, like a real camera driver
        started = time.perf_counter()
        with self._lock:
            image = self.world.render(q)
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = self.params["camera_frame_id"]
        msg.height, msg.width = image.shape[:2]
        msg.encoding = "rgb8"
        msg.is_bigendian = 0
        msg.step = msg.width * 3
        msg.data = array.array("B", image.tobytes())  # array.array: rclpy's fast path for uint8[]
        self.image_pub.publish(msg)
        self._camera_info.header.stamp = stamp
        self.info_pub.publish(self._camera_info)
        self._frames += 1
        self._render_ms = 1000.0 * (time.perf_counter() - started)

    def _publish_state(self) -> None:
        now = self.get_clock().now().to_msg()
        with self._lock:
            box = self.world.box
            outcome = self._outcome_msg() if self._live or self.world.judge.done else None
        pose = PoseStamped()
        pose.header.stamp = now
        pose.header.frame_id = self.params["base_frame_id"]
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in box.position)
        pose.pose.orientation.z = math.sin(box.yaw / 2)
        pose.pose.orientation.w = math.cos(box.yaw / 2)
        self.box_pub.publish(pose)
        if outcome is not None and not self._resetting:
            self.outcome_pub.publish(outcome)

    def _outcome_msg(self) -> EpisodeOutcome:
        state = self.world.judge.state
        msg = EpisodeOutcome()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.params["base_frame_id"]
        msg.episode_index = max(self.world.episode_index, 0)
        msg.seed = int(self._seed)
        msg.status = int(state.status)
        msg.elapsed = float(state.elapsed)
        msg.time_limit = float(self.world.judge.rules.time_limit)
        msg.box_height = float(self.world.physics.box_bottom_height)
        msg.grasped = bool(self.world.physics.grasped)
        msg.detail = state.detail if self._live or self.world.judge.done else "no episode running (call sim/reset_episode)"
        return msg

    def _publish_diagnostics(self) -> None:
        with self._lock:
            age = time.monotonic() - self._q_time if self._q is not None else math.inf
            state = self.world.judge.state
            values = {"episode_index": self.world.episode_index, "seed": self._seed,
                      "status": STATUS_NAMES[state.status] if self._live or self.world.judge.done else "IDLE",
                      "elapsed_s": f"{state.elapsed:.2f}", "grasped": self.world.physics.grasped,
                      "frames_published": self._frames, "render_ms": f"{self._render_ms:.2f}",
                      "joint_states_age_s": f"{age:.3f}", "resetting": self._resetting}
        status = DiagnosticStatus(name=f"{self.get_name()}: sim world", hardware_id="sim")
        if age > float(self.params["joint_states_timeout"]):
            status.level, status.message = DiagnosticStatus.WARN, "no fresh joint_states: camera and physics paused"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.diag_pub.publish(array)

    def _on_parameters_set(self, parameters) -> None:
        for param in parameters:
            if param.name == "fault_camera_dropout_s" and float(param.value) > 0:
                self._camera_paused_until = time.monotonic() + float(param.value)
                self.get_logger().warn(f"fault injection: camera drop-out for {float(param.value):g} s")

    # --- services ---------------------------------------------------------------------------------------------
    def _on_get_outcome(self, request, response):
        with self._lock:
            response.outcome = self._outcome_msg()
        return response

    def _maybe_auto_start(self) -> None:
        if self._auto_started or self._q is None or self._resetting:
            return
        self._auto_started = True
        request = ResetEpisode.Request()
        request.seed = int(self.params["seed"])
        response = self._on_reset(request, ResetEpisode.Response())
        log = self.get_logger().info if response.success else self.get_logger().error
        log(f"auto start: {response.message}")

    def _on_reset(self, request, response):
        with self._lock:
            if self._resetting:
                response.success, response.message = False, "a reset is already in progress"
                return response
            self._resetting = True
            self._live = False
            seed = int(request.seed) if request.seed >= 0 else self._next_seed
            self._next_seed = seed + 1
            episode = self.world.new_episode(seed)
            self._seed = seed
        self._auto_started = True
        try:
            ok, message = self._move_arm(episode.start_pose) if self.params["reset_move_arm"] else (True, "arm left")
            with self._lock:
                if ok:
                    self.world.start_clock(self._now())
                    self._live = True
                response.success = ok
                response.episode_index = max(self.world.episode_index, 0)
                response.seed_used = seed
                response.box_pose.header.stamp = self.get_clock().now().to_msg()
                response.box_pose.header.frame_id = self.params["base_frame_id"]
                b = episode.box
                response.box_pose.pose.position.x, response.box_pose.pose.position.y = float(b.x), float(b.y)
                response.box_pose.pose.position.z = float(b.z)
                response.box_pose.pose.orientation.z = math.sin(b.yaw / 2)
                response.box_pose.pose.orientation.w = math.cos(b.yaw / 2)
                response.message = (f"episode {response.episode_index} seed {seed}: box at "
                                    f"({b.x:.3f}, {b.y:.3f}) m, {message}" if ok else f"reset failed: {message}")
        finally:
            self._resetting = False
        return response

    def _move_arm(self, q_start: np.ndarray) -> tuple[bool, str]:
        """Send the arm to the start pose through the driver's move_joints action; wait for the result."""
        timeout = float(self.params["reset_timeout"])
        if not self.move_client.wait_for_server(timeout_sec=min(timeout, 10.0)):
            return False, "move_joints action server (arm_driver) not available"
        goal = MoveJoints.Goal()
        goal.joint_names = list(joints.JOINT_NAMES)
        goal.positions = [float(v) for v in q_start]
        goal.duration = float(self.params["reset_move_duration"])
        goal.tolerance = 0.0
        done = threading.Event()
        holder = {}

        def on_goal(future):
            handle = future.result()
            holder["handle"] = handle
            if handle is None or not handle.accepted:
                done.set()
                return
            handle.get_result_async().add_done_callback(lambda f: (holder.update(result=f.result()), done.set()))

        self.move_client.send_goal_async(goal).add_done_callback(on_goal)
        deadline = time.monotonic() + timeout
        while not done.wait(0.1):
            if not self.context.ok():  # the process is stopping: the answer can no longer arrive
                return False, "shutting down"
            if time.monotonic() > deadline:
                return False, f"arm did not reach the start pose within {timeout:.1f} s"
        handle = holder.get("handle")
        if handle is None or not handle.accepted:
            return False, "arm_driver rejected the move to the start pose (is it active?)"
        result = holder["result"].result
        if not result.success:
            return False, f"move to the start pose failed: {result.message}"
        return True, f"arm at its start pose (max error {result.max_error:.3f} rad)"

    # --- helpers ----------------------------------------------------------------------------------------------
    def _make_camera_info(self, camera: CameraModel) -> CameraInfo:
        info = CameraInfo()
        info.header.frame_id = self.params["camera_frame_id"]
        info.width, info.height = camera.width, camera.height
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        k = camera.intrinsics
        info.k = [float(v) for v in k.reshape(-1)]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [k[0, 0], 0.0, k[0, 2], 0.0, 0.0, k[1, 1], k[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0]
        return info


def skip_if_running(callback):
    """callback() for a timer in a reentrant group: returns at once while a previous call still runs."""
    running = threading.Lock()

    def run() -> None:
        if not running.acquire(blocking=False):
            return
        try:
            callback()
        finally:
            running.release()
    return run


def _pair(p: dict, name: str) -> tuple[float, float]:
    values = [float(v) for v in p[name]]
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be [min, max] with min <= max, got {values}")
    return values[0], values[1]


def main(args=None) -> int:
    return run_node(SimWorldNode, args)


if __name__ == "__main__":
    main()
