"""protocol.py: T-code encoding, T:1051 decoding in URDF radians, and a line splitter that never gives up."""

import json
import math

import numpy as np
import pytest

from roarm_description import joints
from roarm_driver import protocol as proto

FEEDBACK = {"T": 1051, "x": 309.6, "y": 1.5, "z": 238.1, "tit": 0.01, "b": 0.1, "s": -0.2, "e": 1.6, "t": 0.3,
            "r": -0.4, "g": 3.0, "tB": 10, "tS": -240, "tE": 120, "tT": 0, "tR": 5, "tG": -900}


def line(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\r\n"


def test_joints_command_converts_urdf_gripper_to_firmware_and_stays_short():
    q = [0.1, -0.2, 1.6, 0.3, -0.4, 1.2]
    msg = proto.joints_command(q, speed=500, acceleration=20)
    assert msg["T"] == 102
    assert [msg[k] for k in ("base", "shoulder", "elbow", "wrist", "roll")] == pytest.approx(q[:5], abs=1e-4)
    assert msg["hand"] == pytest.approx(math.pi - 1.2, abs=1e-4)  # URDF 0 = closed <-> firmware pi
    assert (msg["spd"], msg["acc"]) == (500, 20)
    wire = proto.encode(msg)
    assert wire.endswith(b"\n") and b" " not in wire
    assert len(wire) < proto.MAX_COMMAND_BYTES


@pytest.mark.parametrize("bad", [[0, 0, 0, 0, 0, math.nan], [0, 0, math.inf, 0, 0, 0], [0, 0, 0]])
def test_joints_command_refuses_non_finite_or_short_vectors(bad):
    with pytest.raises(ValueError):
        proto.joints_command(bad)


def test_servo_integers_are_range_checked():
    with pytest.raises(ValueError):
        proto.joints_command([0] * 6, acceleration=255)
    with pytest.raises(ValueError):
        proto.output_mode(3)


def test_small_commands():
    assert proto.encode(proto.feedback_request()) == b'{"T":105}\n'
    assert proto.output_mode(2) == {"T": 605, "cmd": 2}
    assert proto.torque(False) == {"T": 210, "cmd": 0}
    assert proto.torque(True) == {"T": 210, "cmd": 1}
    assert proto.timed_torque_off() == {"T": 0}
    assert proto.move_home() == {"T": 100}


def test_parse_feedback_returns_urdf_radians_and_loads():
    fb = proto.parse_feedback(FEEDBACK)
    assert fb.positions == pytest.approx([0.1, -0.2, 1.6, 0.3, -0.4, math.pi - 3.0])
    assert fb.firmware_positions == pytest.approx([0.1, -0.2, 1.6, 0.3, -0.4, 3.0])
    assert fb.loads.tolist() == [10, -240, 120, 0, 5, -900]
    assert fb.xyz_mm == (309.6, 1.5, 238.1) and fb.tool_pitch == 0.01


def test_parse_feedback_rejects_missing_or_bad_joint():
    bad = dict(FEEDBACK)
    del bad["e"]
    with pytest.raises(proto.FeedbackError):
        proto.parse_feedback(bad)
    with pytest.raises(proto.FeedbackError):
        proto.parse_feedback(dict(FEEDBACK, s="abc"))


def test_splitter_passes_clean_lines_across_arbitrary_chunking():
    stream = line(FEEDBACK) * 5
    for size in (1, 7, 64, len(stream)):
        sp = proto.LineSplitter()
        out = []
        for i in range(0, len(stream), size):
            out += sp.feed(stream[i:i + size])
        assert len(out) == 5 and out[0] == FEEDBACK
        assert sp.counts.messages == 5 and sp.counts.skipped == 0


def test_splitter_skips_and_counts_each_kind_of_bad_line():
    sp = proto.LineSplitter()
    stream = (
        b"ets Jul 29 2019 12:21:46\r\n"  # boot text
        + b"24:0A:C4:12:34:56\r\n"  # MAC address
        + b"Sent with success\r\n"
        + b"42\r\n"  # bare number
        + b"[1,2]\r\n"
        + b'{"T":9999,"x":1}\r\n'  # unknown T
        + b'{"x":1}\r\n'  # no T
        + b'{"T":1051,"x":30\r\n'  # cut line
        + b"\r\n"
        + line(FEEDBACK)
    )
    out = sp.feed(stream)
    assert out == [FEEDBACK]
    c = sp.counts
    assert (c.non_json, c.non_object, c.unknown_t, c.partial, c.empty) == (3, 3, 1, 1, 1)
    assert c.skipped == 8


def test_splitter_resyncs_a_cut_line_merged_with_the_next():
    good = line(FEEDBACK)
    sp = proto.LineSplitter()
    out = sp.feed(good[:40] + good + good)  # first line lost its tail and newline
    assert out == [FEEDBACK, FEEDBACK]
    assert sp.counts.partial == 1 and sp.counts.resynced == 1


def test_splitter_recovers_after_garbage_prefix_and_overlong_run():
    sp = proto.LineSplitter(max_line_bytes=256)
    out = sp.feed(b"\x00\xff\xfe(garbage" + line(FEEDBACK))
    assert out == [FEEDBACK]
    out = sp.feed(b"x" * 1000)  # no newline for 1000 bytes: dropped, not buffered forever
    assert sp.pending_bytes <= 256
    out = sp.feed(b"still the long line\r\n" + line(FEEDBACK))
    assert out == [FEEDBACK] and sp.counts.overlong == 1


def test_splitter_reset_forgets_partial_line():
    sp = proto.LineSplitter()
    sp.feed(line(FEEDBACK)[:30])
    sp.reset()
    assert sp.feed(line(FEEDBACK)) == [FEEDBACK]
    assert sp.counts.partial == 0


def test_round_trip_command_positions_through_feedback_convention():
    q = np.array([0.3, 0.2, 1.1, -0.5, 0.7, 0.9])
    msg = proto.joints_command(q)
    fw = [msg[k] for k in proto.T102_KEYS]
    back = joints.firmware_to_urdf(fw)
    assert back == pytest.approx(q, abs=1e-4)
