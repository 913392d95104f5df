"""Alignment on a frame grid, with hand-worked stamp patterns (times in ms in the comments)."""

import numpy as np
import pytest

from roarm_training.alignment import AlignmentError, NonMonotonicStampsError, Stream, align

MS = 1_000_000


def stream(name, times_ms, tol_ms, timeline="header", offset=0, receive_ms=None):
    receive = None if receive_ms is None else np.array(receive_ms, dtype=np.int64) * MS
    return Stream(name, np.array(times_ms, dtype=np.int64) * MS, timeline, tol_ms * MS, offset, receive)


def test_jitter_all_frames_kept_latest_message_at_or_before_the_frame():
    # camera at 10 Hz with jitter, joint states at 50 Hz from 30 ms: grid starts at 30 (the later first sample)
    # and ends at 900 (the earlier last sample): frames 30, 130, ..., 830 = 9 frames.
    image = stream("image", [0, 105, 198, 300, 402, 500, 597, 700, 800, 900], 50, receive_ms=None)
    state = stream("state", list(range(30, 931, 20)), 30)
    result = align([image, state], fps=10)
    assert result.grid_frames == 9 and result.kept_frames == 9 and result.dropped_frames == 0
    assert result.start_ns == 30 * MS
    assert list(result.frame_times_ns // MS) == [30, 130, 230, 330, 430, 530, 630, 730, 830]
    # image at or before each frame: 0, 105, 198, 300, 402, 500, 597, 700, 800 -> messages 0..8
    assert list(result.indices["image"]) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    # state: exactly on the frame time (30 + 100 k) -> message 5 k
    assert list(result.indices["state"]) == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    report = result.streams["image"]
    assert report.messages == 10 and report.rate_hz == pytest.approx(10.0)  # 9 intervals over 0.9 s
    assert report.max_gap_s == pytest.approx(0.105)  # 597 -> 700 = 103, 0 -> 105 = 105
    assert report.median_period_s == pytest.approx(0.1)
    assert report.gaps == 0  # no interval over twice the median (100 ms)
    assert report.backwards_steps == 0 and report.dropped_frames == 0


def test_gap_drops_and_counts_frames_on_the_stale_stream():
    # camera silent between 300 and 700: frames 400, 500, 600 see a 300 ms-old image (> 50 ms): dropped.
    image = stream("image", [0, 100, 200, 300, 700, 800, 900], 50)
    state = stream("state", list(range(0, 901, 10)), 30)
    result = align([image, state], fps=10)
    assert result.grid_frames == 10
    assert result.kept_frames == 7 and result.dropped_frames == 3
    assert list(result.grid_index) == [0, 1, 2, 3, 7, 8, 9]
    assert result.report()["dropped_grid_frames"] == [4, 5, 6]
    assert list(result.indices["image"]) == [0, 1, 2, 3, 4, 5, 6]
    assert list(result.indices["state"]) == [0, 10, 20, 30, 70, 80, 90]
    assert result.streams["image"].dropped_frames == 3 and result.streams["state"].dropped_frames == 0
    assert result.streams["image"].gaps == 1  # 400 > 2 x 100
    assert result.streams["image"].max_gap_s == pytest.approx(0.4)
    report = result.report()
    assert report["dropped_frames"] == 3 and report["streams"]["image"]["dropped_frames"] == 3


def test_tolerance_is_inclusive_and_no_future_message_leaks_in():
    # frame 200: the message at 201 is 1 ms in the future, so the frame takes the one at 100 (age 100 = tolerance).
    image = stream("image", [0, 100, 201, 300], 100)
    state = stream("state", list(range(0, 301, 10)), 10)
    result = align([image, state], fps=10)
    assert list(result.frame_times_ns // MS) == [0, 100, 200, 300]
    assert list(result.indices["image"]) == [0, 1, 1, 3]
    # one millisecond less tolerance: frame 200 is dropped
    result = align([stream("image", [0, 100, 201, 300], 99), state], fps=10)
    assert list(result.frame_times_ns // MS) == [0, 100, 300]
    assert result.streams["image"].dropped_frames == 1


def test_small_backward_stamps_are_reported_and_looked_up_in_time_order():
    # message 4 (240) arrives after message 3 (300): 60 ms backwards, within the 100 ms tolerance.
    image = stream("image", [0, 100, 200, 300, 240, 400], 100)
    state = stream("state", list(range(0, 401, 10)), 10)
    result = align([image, state], fps=20)  # frames every 50 ms: 0..400 = 9 frames
    assert result.grid_frames == 9 and result.kept_frames == 9
    # time order: 0(0) 100(1) 200(2) 240(4) 300(3) 400(5)
    assert list(result.indices["image"]) == [0, 0, 1, 1, 2, 4, 3, 3, 5]
    assert result.streams["image"].backwards_steps == 1
    assert result.streams["image"].largest_backwards_s == pytest.approx(0.06)


def test_backward_jump_beyond_tolerance_is_an_error():
    image = stream("image", [0, 100, 200, 300, 50, 400], 100)  # 250 ms back at message 4
    state = stream("state", list(range(0, 401, 10)), 10)
    with pytest.raises(NonMonotonicStampsError, match=r"image.*0\.250 s.*message 4"):
        align([image, state], fps=10)


def test_next_state_action_samples_one_frame_later():
    # action = the joint state one frame (100 ms) after the frame: the grid ends one frame before the last state.
    times = [0, 100, 200, 300, 400, 500]
    state = stream("state", times, 10)
    action = stream("action", times, 10, offset=1)
    result = align([state, action], fps=10)
    assert list(result.frame_times_ns // MS) == [0, 100, 200, 300, 400]
    assert list(result.indices["state"]) == [0, 1, 2, 3, 4]
    assert list(result.indices["action"]) == [1, 2, 3, 4, 5]


def test_no_frame_before_every_stream_has_a_sample_and_latency_figure():
    image = stream("image", [500, 600, 700], 60, receive_ms=[505, 607, 709])
    state = stream("state", list(range(0, 701, 10)), 10, timeline="receive")
    result = align([image, state], fps=10)
    assert list(result.frame_times_ns // MS) == [500, 600, 700]
    assert list(result.indices["state"]) == [50, 60, 70]
    assert result.streams["image"].median_latency_s == pytest.approx(0.007)
    assert result.streams["state"].median_latency_s is None


def test_streams_that_do_not_overlap_or_are_empty_are_errors():
    with pytest.raises(AlignmentError, match="do not overlap"):
        align([stream("image", [0, 100], 50), stream("state", [200, 300], 50)], fps=10)
    with pytest.raises(AlignmentError, match="no messages"):
        align([stream("image", [], 50), stream("state", [0], 50)], fps=10)
    with pytest.raises(AlignmentError, match="timeline"):
        stream("image", [0], 50, timeline="wall")


def test_camera_stamping_exactly_at_fps_keeps_its_last_frame():
    # 15 fps: stamps round(i * 1e9 / 15) ns; message 11 at 733333333 ns. (end - start) / period in floats is
    # 10.99999999..., yet the grid's own rounded time of frame 11 is 733333333 ns: 12 frames, one per message.
    times = np.array([round(i * 1e9 / 15) for i in range(12)], dtype=np.int64)
    image = Stream("image", times, "header", 10 * MS)
    state = Stream("state", times, "receive", 10 * MS)
    result = align([image, state], fps=15)
    assert result.grid_frames == 12 and result.kept_frames == 12
    assert list(result.frame_times_ns) == list(times)
    assert list(result.indices["image"]) == list(range(12)) == list(result.indices["state"])
    assert result.report()["start_ns"] == 0 and result.report()["dropped_grid_frames"] == []
    # the state stream ending one nanosecond earlier loses the last frame
    shorter = Stream("state", np.append(times[:-1], times[-1] - 1), "receive", 10 * MS)
    assert align([image, shorter], fps=15).grid_frames == 11
