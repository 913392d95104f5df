"""The policy's clock convention, in one place.

- **Scheduling runs on the steady clock** (``time.monotonic()`` in the node): the chunk timeline, inference gating,
  freshness ages, latencies. A steady clock never jumps (NTP, sim time paused) and is what the driver executes
  trajectories on too.
- **Stamps are ROS time** (the node's clock: sim-time aware): image and joint-state headers coming in, the
  trajectory and ActionChunk headers going out.
- The ROS <-> steady offset is taken when a message is handled (at receipt for an observation's stamp, at publish
  time for an outgoing stamp): ``steady = steady_now - (ros_now - ros_stamp)``. A zero stamp (an unstamped
  message) means "now". The driver converts the trajectory's header stamp back at its receipt the same way, so the
  plan's steps run at the times the node planned them, within the transport delay.

ROS-free: plain floats in seconds.
"""

from __future__ import annotations


def ros_to_steady(ros_stamp: float, ros_now: float, steady_now: float) -> float:
    """Steady time of a ROS-time stamp; the offset is taken now. A zero stamp means now."""
    if ros_stamp == 0.0:
        return float(steady_now)
    return float(steady_now) - (float(ros_now) - float(ros_stamp))


def steady_to_ros(steady: float, steady_now: float, ros_now: float) -> float:
    """ROS time (seconds) of a steady time; the offset is taken now."""
    return float(ros_now) + (float(steady) - float(steady_now))
