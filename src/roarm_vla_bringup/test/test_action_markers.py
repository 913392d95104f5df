"""Marker core: chunk -> TCP path (checked against the URDF's FK, computed independently here), colours, ghost."""

import numpy as np
import pytest

from roarm_description import joints
from roarm_vla_bringup.action_markers import (
    chunk_path, chunk_rows, default_tcp_fk, time_gradient, urdf_tcp_fk)
from roarm_description.urdf_model import UrdfModel


def _chunk(steps=8, seed=1):
    rng = np.random.default_rng(seed)
    start = joints.HOME_POSITIONS
    goal = rng.uniform(joints.LOWER_LIMITS * 0.5, joints.UPPER_LIMITS * 0.5)
    return np.linspace(start, goal, steps)


def test_rows_reordered_by_name():
    rows = _chunk(5)
    shuffled = [3, 0, 5, 1, 4, 2]
    names = [joints.JOINT_NAMES[i] for i in shuffled]
    flat = rows[:, shuffled].ravel()
    np.testing.assert_array_equal(chunk_rows(names, flat, 5), rows)


@pytest.mark.parametrize("names,flat,steps,match", [
    (joints.JOINT_NAMES, np.zeros(11), 2, "expected num_steps"),
    (joints.JOINT_NAMES, np.zeros(6), 0, "num_steps=0"),
    (list(joints.JOINT_NAMES[:5]) + ["bogus"], np.zeros(6), 1, "unknown joint"),
    (joints.JOINT_NAMES, [0, 0, np.nan, 0, 0, 0], 1, "NaN"),
])
def test_bad_chunks_are_refused(names, flat, steps, match):
    with pytest.raises(ValueError, match=match):
        chunk_rows(names, flat, steps)


def test_gradient_endpoints_and_monotonic():
    colors = time_gradient(5, (0, 0, 1, 1), (1, 0, 0, 0.5))
    np.testing.assert_allclose(colors[0], [0, 0, 1, 1])
    np.testing.assert_allclose(colors[-1], [1, 0, 0, 0.5])
    assert np.all(np.diff(colors[:, 0]) > 0) and np.all(np.diff(colors[:, 2]) < 0)
    np.testing.assert_allclose(time_gradient(1, (0, 0, 1, 1), (1, 0, 0, 1)), [[0, 0, 1, 1]])


def test_path_points_are_the_tcp_fk():
    rows = _chunk(10)
    model = UrdfModel.from_file()
    path = chunk_path(joints.JOINT_NAMES, rows.ravel(), 10, 0.1, urdf_tcp_fk())
    # Independent FK: chain the URDF's transforms link by link (world frame), then remove world->base_link.
    for row, point in zip(rows, path.points):
        q = dict(zip(joints.JOINT_NAMES, row))
        world_tcp = model.transform(q, "hand_tcp")
        world_base = model.transform(q, "base_link")
        expected = (np.linalg.inv(world_base) @ world_tcp)[:3, 3]
        np.testing.assert_allclose(point, expected, atol=1e-12)
    np.testing.assert_allclose(path.times, np.arange(10) * 0.1)
    np.testing.assert_array_equal(path.final_positions, rows[-1])
    assert path.colors.shape == (10, 4)
    assert path.length > 0.0


def test_default_fk_matches_urdf():
    fk, source = default_tcp_fk()
    rows = _chunk(6, seed=3)
    np.testing.assert_allclose(fk(rows), urdf_tcp_fk()(rows), atol=1e-6, err_msg=f"FK source {source}")


def test_still_chunk_is_one_point_repeated():
    rows = np.tile(joints.HOME_POSITIONS, (4, 1))
    path = chunk_path(joints.JOINT_NAMES, rows.ravel(), 4, 0.05, urdf_tcp_fk())
    assert path.length == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(path.points[0], [0.343669, 0.0, 0.273627], atol=1e-6)


def test_bad_step_period_refused():
    with pytest.raises(ValueError, match="step_period"):
        chunk_path(joints.JOINT_NAMES, np.zeros(6), 1, 0.0, urdf_tcp_fk())
