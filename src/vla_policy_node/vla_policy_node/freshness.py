"""Is the observation fresh enough to act on? ROS-free; steady times passed in (see :mod:`timebase`).

An input (image, joint state) is fresh when it was received less than ``timeout`` ago AND its stamp (converted to
steady time at receipt) is less than ``timeout`` old: a camera that keeps publishing old frames is as stale as one
that stopped. The node holds the arm (publishes a hold, drops the plan) whenever :func:`observation_problem` says
why not, and says it in diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputTimes:
    """When an input message was received and when it was taken (its stamp), both on the steady clock."""

    received: float
    stamp: float


def observation_problem(now: float, image: InputTimes | None, state: InputTimes | None, timeout: float) -> str:
    """'' when image and joint state are fresh at ``now``; otherwise the reason, for the log and diagnostics."""
    if image is None:
        return "no image received on camera/image_raw"
    if state is None:
        return "no joint_states received"
    image_age = max(now - image.received, now - image.stamp)
    if image_age > timeout:
        return f"image stale ({image_age:.2f} s > {timeout:g} s)"
    state_age = max(now - state.received, now - state.stamp)
    if state_age > timeout:
        return f"joint_states stale ({state_age:.2f} s > {timeout:g} s)"
    return ""
