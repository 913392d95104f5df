"""The converter's use of LeRobot's streaming video encoder: the same dataset, produced faster and never short.

LeRobot 0.4.4's ``StreamingVideoEncoder`` (lerobot/datasets/video_utils.py) runs one encoder thread per camera.
For every frame that thread encodes it AND updates the camera's statistics with ``RunningQuantileStats`` on the
frame downsampled to about 160x120: mean, mean of squares, min, max per channel and a 5000-bin histogram per
channel (for the quantiles), each a strided numpy reduction or a sort. On this 2-core machine that was about 4 ms
per 640x480 frame, a quarter of the conversion's CPU time, all of it holding the GIL beside the converter's own
thread (bench/convert.py; training/README.md "Data").

:class:`Uint8QuantileStats` computes the SAME numbers from one 256-value count per channel (camera frames are
uint8): every statistic LeRobot derives from the samples is a function of those counts, and integer sums are exact
in float64 (so the means equal numpy's to the last bit, whatever its summation order), and the histogram of the
values equals ``np.histogram``'s on the same bin edges. The running updates (mean, range growth, histogram
re-binning) are LeRobot's own code, inherited. Anything that is not a uint8 batch goes to LeRobot's
implementation unchanged. :func:`uint8_frame_stats` puts it in place of ``RunningQuantileStats`` for the span of a
conversion (the encoder thread looks the class up when it starts) and puts LeRobot's back afterwards.

:func:`wait_for_encoder_room` and :func:`dropped_frames`: LeRobot's ``feed_frame`` waits 0.1 s for room in the
encoder's 30-frame queue and then DROPS the frame with a warning (a live recorder must not block). A converter
reads faster than the encoder encodes, so it waits for room before each frame instead, and checks after each
episode that nothing was dropped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

import numpy as np
from lerobot.datasets import compute_stats
from lerobot.datasets.compute_stats import RunningQuantileStats

_VALUES = np.arange(256)
_VALUES_SQUARED_UINT8 = (_VALUES**2) % 256  # what ``batch**2`` gives for a uint8 batch (it wraps in uint8)
_PATCH_LOCK = threading.Lock()
_PATCH_DEPTH = 0


class Uint8QuantileStats(RunningQuantileStats):
    """``RunningQuantileStats`` with the per-batch reductions of a uint8 batch taken from value counts (exact)."""

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.ndim == 0:
            super().update(batch)
            return
        batch = batch.reshape(-1, batch.shape[-1])
        num_elements, vector_length = batch.shape
        if num_elements == 0:
            super().update(batch)
            return
        # counts[c, v] = how many samples of channel c equal v (one bincount over channel-offset values)
        offsets = np.arange(vector_length, dtype=np.intp) * 256
        counts = np.bincount((batch + offsets).ravel(), minlength=256 * vector_length).reshape(vector_length, 256)
        present = counts > 0
        batch_min = np.argmax(present, axis=1).astype(np.uint8)  # np.min(batch, axis=0) of a uint8 batch
        batch_max = (255 - np.argmax(present[:, ::-1], axis=1)).astype(np.uint8)
        batch_mean = (counts @ _VALUES).astype(np.float64) / num_elements  # exact integer sum, as np.mean's
        batch_mean_of_squares = (counts @ _VALUES_SQUARED_UINT8).astype(np.float64) / num_elements

        # From here on LeRobot's RunningQuantileStats.update, line for line, with the reductions above.
        if self._count == 0:
            self._mean = batch_mean.copy()
            self._mean_of_squares = batch_mean_of_squares.copy()
            self._min = batch_min.copy()
            self._max = batch_max.copy()
            self._histograms = [np.zeros(self._num_quantile_bins) for _ in range(vector_length)]
            self._bin_edges = [
                np.linspace(self._min[i] - 1e-10, self._max[i] + 1e-10, self._num_quantile_bins + 1)
                for i in range(vector_length)
            ]
        else:
            if vector_length != self._mean.size:
                raise ValueError("The length of new vectors does not match the initialized vector length.")
            max_changed = np.any(batch_max > self._max)
            min_changed = np.any(batch_min < self._min)
            self._max = np.maximum(self._max, batch_max)
            self._min = np.minimum(self._min, batch_min)
            if max_changed or min_changed:
                self._adjust_histograms()

        self._count += num_elements
        self._mean += (batch_mean - self._mean) * (num_elements / self._count)
        self._mean_of_squares += (batch_mean_of_squares - self._mean_of_squares) * (num_elements / self._count)
        self._add_counts_to_histograms(counts)

    def _add_counts_to_histograms(self, counts: np.ndarray) -> None:
        """``np.histogram(batch[:, i], bins=edges)`` from the counts: value v falls in bin j when
        edges[j] <= v < edges[j+1], the last bin closed on the right; values outside the edges count nowhere."""
        for i, edges in enumerate(self._bin_edges):
            values = np.flatnonzero(counts[i])
            bins = np.searchsorted(edges, values, side="right") - 1
            bins[values == edges[-1]] = len(edges) - 2
            inside = (bins >= 0) & (bins < len(edges) - 1)
            self._histograms[i] += np.bincount(bins[inside], weights=counts[i, values[inside]],
                                               minlength=self._num_quantile_bins)


@contextlib.contextmanager
def uint8_frame_stats() -> Iterator[None]:
    """LeRobot's ``RunningQuantileStats`` name points at :class:`Uint8QuantileStats` inside the block (nested
    blocks and threads counted: restored when the last one leaves)."""
    global _PATCH_DEPTH
    with _PATCH_LOCK:
        if _PATCH_DEPTH == 0:
            compute_stats.RunningQuantileStats = Uint8QuantileStats
        _PATCH_DEPTH += 1
    try:
        yield
    finally:
        with _PATCH_LOCK:
            _PATCH_DEPTH -= 1
            if _PATCH_DEPTH == 0:
                compute_stats.RunningQuantileStats = RunningQuantileStats


def _streaming_encoder(dataset: Any) -> Any:
    encoder = getattr(dataset, "_streaming_encoder", None)
    return encoder if encoder is not None and getattr(encoder, "_episode_active", False) else None


def wait_for_encoder_room(dataset: Any, poll_s: float = 0.002) -> None:
    """Block until every camera's encoder queue can take one more frame (returns at once when no episode is being
    streamed). Raises RuntimeError when an encoder thread has died meanwhile."""
    encoder = _streaming_encoder(dataset)
    if encoder is None:
        return
    for key, frames in encoder._frame_queues.items():
        while frames.full():
            if not encoder._threads[key].is_alive():
                raise RuntimeError(f"the video encoder thread of {key} stopped")
            time.sleep(poll_s)


def dropped_frames(dataset: Any) -> dict[str, int]:
    """Frames LeRobot's streaming encoder dropped in the current (or just saved) episode, per camera."""
    encoder = getattr(dataset, "_streaming_encoder", None)
    return {k: v for k, v in (getattr(encoder, "_dropped_frames", None) or {}).items() if v}
