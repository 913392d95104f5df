"""What RViz shows of a predicted action chunk: the end-effector path (coloured by time) and the ghost pose.

ROS-free core of action_visualizer_node. An ActionChunk holds `num_steps` rows of joint positions (URDF
convention, columns named by `joint_names`); step k is meant for `stamp + k * step_period`. This module turns it
into:
- `points`: the tool centre point (hand_tcp) of every step in `base_link`, metres, via forward kinematics;
- `colors`: one RGBA per point, interpolated from `start_color` (step 0, "now") to `end_color` (last step);
- `times`: seconds after the observation for every step;
- `final_positions`: the last row in joints.JOINT_NAMES order, for the ghost arm's JointState.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from roarm_description.joints import JOINT_NAMES, order_by_names

# FK function: (N, 6) joint rows in JOINT_NAMES order -> (N, 3) hand_tcp positions in base_link, metres.
TcpFk = Callable[[np.ndarray], np.ndarray]

# Default gradient: cyan ("now") to magenta (end of chunk); both read well on RViz's grey background.
DEFAULT_START_COLOR = (0.0, 0.9, 1.0, 1.0)
DEFAULT_END_COLOR = (1.0, 0.1, 0.8, 1.0)


@dataclass(frozen=True)
class ChunkPath:
    points: np.ndarray  # (N, 3) hand_tcp positions in base_link, m
    colors: np.ndarray  # (N, 4) RGBA in 0..1
    times: np.ndarray  # (N,) seconds after the observation's stamp
    final_positions: np.ndarray  # (6,) last step's joint positions, JOINT_NAMES order, rad

    @property
    def length(self) -> float:
        """Length of the path polyline, metres."""
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum()) if len(self.points) > 1 else 0.0


def chunk_rows(joint_names: Sequence[str], positions: Sequence[float], num_steps: int) -> np.ndarray:
    """The chunk's flat row-major positions -> (num_steps, 6) in JOINT_NAMES order; ValueError on bad shapes/names."""
    names = list(joint_names)
    flat = np.asarray(positions, dtype=float)
    if num_steps <= 0:
        raise ValueError(f"chunk has num_steps={num_steps}; need at least 1 step")
    if flat.size != num_steps * len(names):
        raise ValueError(f"chunk has {flat.size} positions, expected num_steps ({num_steps}) x "
                         f"{len(names)} joint names = {num_steps * len(names)}")
    if not np.all(np.isfinite(flat)):
        raise ValueError("chunk positions contain NaN or inf")
    rows = flat.reshape(num_steps, len(names))
    if names == list(JOINT_NAMES):
        return rows.copy()
    return np.array([order_by_names(names, row) for row in rows])


def time_gradient(count: int, start_color: Sequence[float] = DEFAULT_START_COLOR,
                  end_color: Sequence[float] = DEFAULT_END_COLOR) -> np.ndarray:
    """(count, 4) RGBA colours linearly interpolated from start_color to end_color."""
    start = np.asarray(start_color, dtype=float)
    end = np.asarray(end_color, dtype=float)
    if start.shape != (4,) or end.shape != (4,):
        raise ValueError(f"colours must be RGBA (4 numbers), got {list(start)} and {list(end)}")
    if count == 1:
        return start[None, :].copy()
    fraction = np.linspace(0.0, 1.0, count)[:, None]
    return np.clip((1.0 - fraction) * start + fraction * end, 0.0, 1.0)


def chunk_path(joint_names: Sequence[str], positions: Sequence[float], num_steps: int, step_period: float,
               fk: TcpFk, start_color: Sequence[float] = DEFAULT_START_COLOR,
               end_color: Sequence[float] = DEFAULT_END_COLOR) -> ChunkPath:
    """End-effector path, colours, step times and final pose of one chunk."""
    if not step_period > 0:
        raise ValueError(f"step_period must be > 0 s, got {step_period}")
    rows = chunk_rows(joint_names, positions, num_steps)
    points = np.asarray(fk(rows), dtype=float)
    if points.shape != (num_steps, 3):
        raise ValueError(f"FK returned shape {points.shape}, expected ({num_steps}, 3)")
    return ChunkPath(points=points, colors=time_gradient(num_steps, start_color, end_color),
                     times=np.arange(num_steps) * float(step_period), final_positions=rows[-1].copy())


def urdf_tcp_fk(urdf_path=None) -> TcpFk:
    """FK from the project's URDF (exactly what robot_state_publisher draws the ghost arm from)."""
    from roarm_description.urdf_model import UrdfModel

    model = UrdfModel.from_file(urdf_path)
    return lambda rows: model.positions(JOINT_NAMES, rows, tip="hand_tcp", base="base_link")


def kinematics_tcp_fk() -> TcpFk:
    """FK from roarm_description.kinematics (the module every package computes poses with)."""
    from roarm_description import kinematics

    return lambda rows: np.asarray(kinematics.tcp_positions(np.atleast_2d(np.asarray(rows, dtype=float))),
                                   dtype=float).reshape(-1, 3)


def default_tcp_fk() -> tuple[TcpFk, str]:
    """(fk, source): roarm_description.kinematics when it has an FK, else the URDF's chain (test_urdf.py checks both agree)."""
    try:
        return kinematics_tcp_fk(), "roarm_description.kinematics"
    except ImportError:
        return urdf_tcp_fk(), "urdf"

