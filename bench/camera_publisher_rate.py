#!/usr/bin/env python3
"""camera_publisher figures: publish rate, lost frames and capture->receipt latency of 640x480 rgb8 images.

A real index-encoded MJPG video (written here) goes through the real CameraPublisherNode to a real rclpy subscriber
in the same process (MultiThreadedExecutor, 2 threads). Latency = receipt wall time - header.stamp (the capture
instant), so it covers RGB conversion, message building and the DDS hop. Lost = gaps in the decoded frame indices.

Run: cd /work/main && source scripts/env.sh && ROS_DOMAIN_ID=15 python bench/camera_publisher_rate.py [seconds]
Last line: one JSON object with the headline figures.
"""

import json
import pathlib
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src" / "roarm_driver"))  # the source tree

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from roarm_common.executors import QueueAwareMultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from roarm_driver.camera_publisher_node import CameraPublisherNode  # noqa: E402
from roarm_driver.camera_test_video import decode_frame_index, write_index_video  # noqa: E402

WIDTH, HEIGHT, FPS, VIDEO_FRAMES = 640, 480, 30.0, 300


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    video = write_index_video(pathlib.Path(tempfile.mkdtemp()) / "bench.avi", VIDEO_FRAMES, WIDTH, HEIGHT, FPS)
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = QueueAwareMultiThreadedExecutor(num_threads=2, context=context)
    received = []
    listener = rclpy.create_node("camera_bench_listener", context=context)
    listener.create_subscription(Image, "camera/image_raw", lambda m: received.append((time.time_ns(), m)),
                                 qos_profile_sensor_data)
    camera = CameraPublisherNode(context=context, parameter_overrides=[
        Parameter("source", value=str(video)), Parameter("fps", value=FPS),
        Parameter("width", value=WIDTH), Parameter("height", value=HEIGHT)])
    executor.add_node(listener)
    executor.add_node(camera)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    time.sleep(1.0)  # discovery and the first frames
    received.clear()
    cpu_start, wall_start = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu_fraction = (time.process_time() - cpu_start) / (time.monotonic() - wall_start)
    rows = list(received)
    executor.shutdown()
    camera.destroy_node()
    listener.destroy_node()
    rclpy.try_shutdown(context=context)

    stamps_ns = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in rows], dtype=np.int64)
    latency_ms = (np.array([r for r, _ in rows], dtype=np.int64) - stamps_ns) / 1e6
    indices = [decode_frame_index(np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3))
               for _, m in rows]
    lost = sum(((b - a) % VIDEO_FRAMES) - 1 for a, b in zip(indices, indices[1:]))
    rate = (len(rows) - 1) / ((stamps_ns[-1] - stamps_ns[0]) / 1e9)
    print(f"{len(rows)} images {WIDTH}x{HEIGHT} rgb8 in {seconds:.0f} s: {rate:.2f} Hz (target {FPS:g}), "
          f"{rate / FPS:.3f} of target, lost {lost}")
    print(f"capture -> receipt: median {np.median(latency_ms):.2f} ms, p99 {np.percentile(latency_ms, 99):.2f} ms; "
          f"process CPU {cpu_fraction * 100:.0f} % of one core (capture + publish + receive)")
    print(json.dumps({"rate_hz": round(rate, 2), "rate_fraction": round(rate / FPS, 3), "lost": int(lost),
                      "latency_median_ms": round(float(np.median(latency_ms)), 2),
                      "latency_p99_ms": round(float(np.percentile(latency_ms, 99)), 2),
                      "cpu_fraction": round(cpu_fraction, 2)}))


if __name__ == "__main__":
    main()
