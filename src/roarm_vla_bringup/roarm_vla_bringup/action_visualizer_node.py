"""action_visualizer: the policy's predicted actions in RViz.

Subscribes vla/action_chunk (roarm_interfaces/ActionChunk). Publishes
- vla/markers (visualization_msgs/MarkerArray, frame `frame_id`): the chunk's end-effector path as a LINE_STRIP
  and a SPHERE_LIST, both with one colour per step (start_color = now -> end_color = end of chunk), and a text
  label (sequence, horizon, inference latency) above the final point;
- vla/predicted_joint_states (sensor_msgs/JointState): the chunk's final pose, re-published at
  `ghost_rate` Hz with fresh stamps so the 'predicted/' robot_state_publisher keeps the ghost arm's TF current;
- diagnostics (1 Hz).
The geometry is computed by the ROS-free core action_markers.py.
"""

from __future__ import annotations

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from roarm_interfaces.msg import ActionChunk
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from roarm_description.joints import JOINT_NAMES
from roarm_common.node_main import run_node
from roarm_vla_bringup.action_markers import (
    DEFAULT_END_COLOR, DEFAULT_START_COLOR, ChunkPath, chunk_path, default_tcp_fk)


class ActionVisualizerNode(Node):
    def __init__(self, node_name: str = "action_visualizer", **kwargs):
        super().__init__(node_name, **kwargs)

        def declare(name, default, description):
            return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

        self.frame_id = declare("frame_id", "base_link", "Frame of the path markers (FK gives hand_tcp in base_link)")
        self.line_width = declare("line_width", 0.006, "Width of the path's LINE_STRIP, m")
        self.point_diameter = declare("point_diameter", 0.014, "Diameter of the per-step spheres, m")
        self.start_color = list(declare("start_color", list(DEFAULT_START_COLOR),
                                        "RGBA (0..1) of the chunk's first step (now)"))
        self.end_color = list(declare("end_color", list(DEFAULT_END_COLOR), "RGBA (0..1) of the chunk's last step"))
        self.marker_lifetime = declare("marker_lifetime", 0.0,
                                       "Seconds a path stays visible without a new chunk; 0 = until replaced")
        self.show_label = declare("show_label", True, "Text label (sequence, horizon, latency) above the final point")
        self.ghost_rate = declare("ghost_rate", 10.0,
                                  "Hz at which the last final pose is re-published on vla/predicted_joint_states")
        for name, color in (("start_color", self.start_color), ("end_color", self.end_color)):
            if len(color) != 4:
                raise ValueError(f"parameter {name} must hold 4 numbers (RGBA), got {color}")

        self.fk, self.fk_source = default_tcp_fk()
        self.chunks_received = 0
        self.chunks_rejected = 0
        self.last_error = ""
        self.last_sequence: int | None = None
        self.sequence_gaps = 0
        self._ghost: JointState | None = None

        # Best effort matches reliable and best-effort publishers alike; a dropped chunk is replaced by the next one.
        chunk_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(ActionChunk, "vla/action_chunk", self._on_chunk, chunk_qos)
        self.markers_pub = self.create_publisher(MarkerArray, "vla/markers", 10)
        self.ghost_pub = self.create_publisher(JointState, "vla/predicted_joint_states", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        if self.ghost_rate > 0:
            self.create_timer(1.0 / self.ghost_rate, self._republish_ghost)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"path FK from {self.fk_source}; markers in {self.frame_id}")

    # -- chunk -> markers + ghost ------------------------------------------------------------------------------
    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            path = chunk_path(msg.joint_names, msg.positions, msg.num_steps, msg.step_period, self.fk,
                              self.start_color, self.end_color)
        except ValueError as exc:
            self.chunks_rejected += 1
            self.last_error = str(exc)
            self.get_logger().warning(f"action chunk #{msg.sequence} not shown: {exc}",
                                      throttle_duration_sec=5.0)
            return
        self.chunks_received += 1
        if self.last_sequence is not None and msg.sequence > self.last_sequence + 1:
            self.sequence_gaps += 1
        self.last_sequence = msg.sequence
        self.markers_pub.publish(self._markers(msg, path))
        ghost = JointState()
        ghost.header.stamp = self.get_clock().now().to_msg()
        ghost.name = list(JOINT_NAMES)
        ghost.position = [float(v) for v in path.final_positions]
        self._ghost = ghost
        self.ghost_pub.publish(ghost)

    def _markers(self, msg: ActionChunk, path: ChunkPath) -> MarkerArray:
        stamp = msg.header.stamp if (msg.header.stamp.sec or msg.header.stamp.nanosec) \
            else self.get_clock().now().to_msg()
        lifetime = Duration(sec=int(self.marker_lifetime), nanosec=int((self.marker_lifetime % 1.0) * 1e9))
        points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in path.points]
        colors = [ColorRGBA(r=float(c[0]), g=float(c[1]), b=float(c[2]), a=float(c[3])) for c in path.colors]

        def base(ns: str, kind: int) -> Marker:
            m = Marker()
            m.header.frame_id = self.frame_id
            m.header.stamp = stamp
            m.ns, m.id, m.type, m.action = ns, 0, kind, Marker.ADD
            m.pose.orientation.w = 1.0
            m.lifetime = lifetime
            return m

        line = base("vla_path", Marker.LINE_STRIP)
        line.scale.x = float(self.line_width)
        line.points, line.colors = points, colors
        line.color = colors[-1]
        spheres = base("vla_path_steps", Marker.SPHERE_LIST)
        spheres.scale.x = spheres.scale.y = spheres.scale.z = float(self.point_diameter)
        spheres.points, spheres.colors = points, colors
        spheres.color = colors[-1]
        markers = [line, spheres]
        label = base("vla_label", Marker.TEXT_VIEW_FACING)
        if self.show_label:
            label.pose.position = Point(x=points[-1].x, y=points[-1].y, z=points[-1].z + 0.04)
            label.scale.z = 0.02
            label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=0.9)
            label.text = (f"#{msg.sequence}  {msg.num_steps} steps / {msg.num_steps * msg.step_period:.2f} s  "
                          f"latency {msg.inference_latency * 1000:.0f} ms")
        else:
            label.action = Marker.DELETE
        markers.append(label)
        return MarkerArray(markers=markers)

    def _republish_ghost(self) -> None:
        if self._ghost is not None:
            self._ghost.header.stamp = self.get_clock().now().to_msg()
            self.ghost_pub.publish(self._ghost)

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=f"{self.get_name()}: action markers", hardware_id="roarm_m3")
        if self.chunks_received == 0 and self.chunks_rejected == 0:
            status.level, status.message = DiagnosticStatus.OK, "waiting for vla/action_chunk"
        elif self.chunks_rejected and self.last_error:
            status.level, status.message = DiagnosticStatus.WARN, f"rejected chunks: {self.last_error}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "showing chunks"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ("chunks_received", self.chunks_received), ("chunks_rejected", self.chunks_rejected),
            ("sequence_gaps", self.sequence_gaps), ("last_sequence", self.last_sequence),
            ("fk_source", self.fk_source))]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)


def main(args=None) -> int:
    return run_node(ActionVisualizerNode, args)


if __name__ == "__main__":
    main()
