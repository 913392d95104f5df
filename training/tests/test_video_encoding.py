"""roarm_training.video_encoding: the converter's video statistics equal LeRobot's to the bit, and no frame is lost.

The statistics are compared with LeRobot's own ``RunningQuantileStats`` fed the same frames the way its streaming
encoder thread feeds them (downsampled HWC -> (pixels, 3)), including frames that widen the value range (the
histograms are re-binned then) and a frame whose values sit on the bin edges.
"""

import numpy as np
import pytest
from lerobot.datasets import compute_stats
from lerobot.datasets.compute_stats import RunningQuantileStats, auto_downsample_height_width

from roarm_training.video_encoding import Uint8QuantileStats, uint8_frame_stats


def encoder_batch(frame_hwc: np.ndarray) -> np.ndarray:
    """What LeRobot's _CameraEncoderThread passes to the stats tracker for one frame."""
    small = auto_downsample_height_width(frame_hwc.transpose(2, 0, 1))
    return small.transpose(1, 2, 0).reshape(-1, small.shape[0])


def frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        low, high = max(0, 100 - 12 * k), min(256, 140 + 15 * k)  # the range widens over the first frames
        out.append(rng.integers(low, high, size=(480, 640, 3), dtype=np.uint8))
    out.append(np.full((480, 640, 3), 255, np.uint8))  # every value on the last edge (closed last bin)
    out.append(np.zeros((480, 640, 3), np.uint8))
    return out


def run(stats_class, batches) -> tuple[dict, RunningQuantileStats]:
    tracker = stats_class()
    for batch in batches:
        tracker.update(batch)
    return tracker.get_statistics(), tracker


def test_statistics_equal_lerobot_bit_for_bit():
    batches = [encoder_batch(f) for f in frames(12)]
    expected, reference = run(RunningQuantileStats, batches)
    got, fast = run(Uint8QuantileStats, batches)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        assert np.array_equal(got[key], expected[key]), key
    for mine, theirs in zip(fast._histograms, reference._histograms, strict=True):
        assert np.array_equal(mine, theirs)
    assert fast._histograms[0].sum() == 160 * 120 * len(batches)  # every sample counted once


def test_values_outside_the_first_frames_edges_are_rebinned_like_lerobot():
    # The first batch fixes the edges to [10, 20]; later batches reach 0 and 255 (two re-binnings).
    batches = [np.full((50, 3), v, np.uint8) for v in (10, 20)]
    batches = [np.concatenate(batches)] + [np.arange(0, 256, dtype=np.uint8).repeat(3).reshape(-1, 3)] * 2
    expected, _ = run(RunningQuantileStats, batches)
    got, _ = run(Uint8QuantileStats, batches)
    for key in expected:
        assert np.array_equal(got[key], expected[key]), key


def test_other_dtypes_use_lerobots_code():
    batch = np.random.default_rng(1).normal(size=(100, 6)).astype(np.float32)
    expected, _ = run(RunningQuantileStats, [batch, batch * 2])
    got, _ = run(Uint8QuantileStats, [batch, batch * 2])
    for key in expected:
        assert np.array_equal(got[key], expected[key]), key


def test_the_patch_is_scoped_to_the_block():
    assert compute_stats.RunningQuantileStats is RunningQuantileStats
    with uint8_frame_stats():
        with uint8_frame_stats():
            assert compute_stats.RunningQuantileStats is Uint8QuantileStats
        assert compute_stats.RunningQuantileStats is Uint8QuantileStats
    assert compute_stats.RunningQuantileStats is RunningQuantileStats
    with pytest.raises(KeyError):
        with uint8_frame_stats():
            raise KeyError("x")
    assert compute_stats.RunningQuantileStats is RunningQuantileStats
