"""RoArm-M3 serial protocol: JSON-lines encoding of the T codes and a robust line splitter. ROS-free.

The host sends one compact JSON object per line (``{...}\\n``); the firmware answers with ``Serial.println``
(``\\r\\n``). Not every incoming line is JSON (debug echoes, bare numbers, MAC addresses, ESP32 boot text), lines
can arrive cut in half, and bytes can be lost: :class:`LineSplitter` turns a raw byte stream into decoded messages
and counts every kind of line it had to skip, without ever raising.

Units: commands built here take URDF radians (what ROS topics carry) and convert them with
:func:`roarm_description.joints.urdf_to_firmware`; :func:`parse_feedback` returns URDF radians.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from roarm_description import joints

# T codes (see ../shared/roarm_m3_facts.md).
T_TORQUE_OFF_TIMED = 0  # torque off ~10 s, then on again (blocking; not an e-stop)
T_MOVE_HOME = 100  # move to home (blocking)
T_JOINT_RAD = 101  # one joint, radians
T_JOINTS_RAD = 102  # all joints, radians: the command the driver streams
T_JOINT_DEG = 121
T_JOINTS_DEG = 122
T_CARTESIAN = 104
T_CARTESIAN_DIRECT = 1041
T_FEEDBACK_REQUEST = 105
T_GRIPPER = 106
T_LED = 114
T_TORQUE = 210
T_OUTPUT_MODE = 605
T_FEEDBACK = 1051

# Every T code the firmware knows (a line carrying one of these is "known"; anything else counts as unknown).
KNOWN_T_CODES = frozenset(
    {0, 100, 101, 102, 103, 104, 1041, 105, 106, 111, 114, 121, 122, 210, 242, 300, 301, 302, 303, 304, 305, 306,
     605, 1051}
)

OUTPUT_SILENT = 0
OUTPUT_ECHO = 1
OUTPUT_STREAM = 2

# T:102 field names, in joints.JOINTS order (the firmware calls the gripper "hand" here).
T102_KEYS = ("base", "shoulder", "elbow", "wrist", "roll", "hand")
# T:122 field names (degrees).
T122_KEYS = ("b", "s", "e", "t", "r", "h")

# Commands are parsed by the firmware into a 256-byte JSON document: round to what the servos resolve
# (4096 steps per turn = 1.5 mrad) with margin, and keep every command short.
COMMAND_DECIMALS = 4
MAX_COMMAND_BYTES = 200


def encode(message: dict[str, Any]) -> bytes:
    """One compact JSON line, ``\\n``-terminated, as the firmware reads it."""
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("ascii")


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    q = np.asarray(values, dtype=float)
    if q.shape != (joints.NUM_JOINTS,):
        raise ValueError(f"{what}: expected {joints.NUM_JOINTS} values, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"{what}: non-finite value in {q.tolist()}")
    return q


def _servo_int(value: int, name: str, low: int, high: int) -> int:
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{name}={v} outside [{low}, {high}]")
    return v


def joints_command(urdf_positions: Sequence[float], speed: int = 0, acceleration: int = 0) -> dict[str, Any]:
    """T:102 from URDF radians. ``speed``: servo steps/s (0 = maximum); ``acceleration``: 0..254 (0 = maximum)."""
    fw = joints.urdf_to_firmware(_finite(urdf_positions, "T:102 positions"))
    msg: dict[str, Any] = {"T": T_JOINTS_RAD}
    for key, value in zip(T102_KEYS, fw):
        msg[key] = round(float(value), COMMAND_DECIMALS)
    msg["spd"] = _servo_int(speed, "spd", 0, 32767)
    msg["acc"] = _servo_int(acceleration, "acc", 0, 254)
    return msg


def feedback_request() -> dict[str, Any]:
    """T:105: ask for one T:1051 line."""
    return {"T": T_FEEDBACK_REQUEST}


def output_mode(mode: int) -> dict[str, Any]:
    """T:605: 0 silent, 1 debug echo of every command, 2 stream T:1051 continuously."""
    if mode not in (OUTPUT_SILENT, OUTPUT_ECHO, OUTPUT_STREAM):
        raise ValueError(f"T:605 mode must be 0, 1 or 2, got {mode}")
    return {"T": T_OUTPUT_MODE, "cmd": mode}


def torque(enabled: bool) -> dict[str, Any]:
    """T:210: all servos' torque on (1) or off (0 = hand-guiding)."""
    return {"T": T_TORQUE, "cmd": 1 if enabled else 0}


def timed_torque_off() -> dict[str, Any]:
    """T:0: torque off for ~10 s then back on. Blocking in the firmware; not a latching e-stop."""
    return {"T": T_TORQUE_OFF_TIMED}


def move_home() -> dict[str, Any]:
    """T:100: move to home. Blocking in the firmware (it stops reading serial until done)."""
    return {"T": T_MOVE_HOME}


@dataclass(frozen=True)
class Feedback:
    """One decoded T:1051 line."""

    positions: np.ndarray  # URDF radians, joints.JOINT_NAMES order
    loads: np.ndarray  # servo load, 0.1 % of stall torque (1000 = 100 %), same order
    xyz_mm: tuple[float, float, float]  # firmware forward kinematics, mm (z from the shoulder pivot)
    tool_pitch: float  # firmware "tit", rad

    @property
    def firmware_positions(self) -> np.ndarray:
        return joints.urdf_to_firmware(self.positions)


class FeedbackError(ValueError):
    """A T:1051 line that lacks a field, carries a non-number (a bool is not a number), a non-finite value, or a
    joint outside its limits plus the margin. ``kind``: "type" or "range"."""

    def __init__(self, message: str, kind: str = "type"):
        super().__init__(message)
        self.kind = kind


def _number(message: dict[str, Any], key: str, default: float | None = None) -> float:
    """A JSON number (int or float, not bool, finite); a missing key gives ``default`` (None: required)."""
    if key not in message:
        if default is None:
            raise FeedbackError(f"T:1051 lacks {key!r}: {message}")
        return default
    value = message[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FeedbackError(f"T:1051 {key}={value!r} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise FeedbackError(f"T:1051 {key}={value!r} is not finite")
    return value


def parse_feedback(message: dict[str, Any], margin: float | None = None) -> Feedback:
    """T:1051 dict -> :class:`Feedback` in URDF radians. Raises :class:`FeedbackError` on a missing joint, a value
    that is not a finite JSON number (joints, loads, x/y/z/tit when present), and, with ``margin`` (rad) given, a
    joint outside its URDF limits widened by ``margin`` (a firmware or line fault, never a pose of the arm)."""
    fw = np.array([_number(message, k) for k in joints.FIRMWARE_KEYS])
    loads = np.array([_number(message, k, 0.0) for k in joints.LOAD_KEYS])
    xyz = tuple(_number(message, k, math.nan) for k in ("x", "y", "z"))
    tit = _number(message, "tit", math.nan)
    positions = joints.firmware_to_urdf(fw)
    if margin is not None:
        low, high = joints.LOWER_LIMITS - margin, joints.UPPER_LIMITS + margin
        bad = [f"{n}={v:.4g}" for n, v, lo, hi in zip(joints.JOINT_NAMES, positions, low, high) if not lo <= v <= hi]
        if bad:
            raise FeedbackError(f"T:1051 joint(s) outside the limits + {margin:g} rad: {', '.join(bad)}", "range")
    return Feedback(positions=positions, loads=loads, xyz_mm=xyz, tool_pitch=tit)


@dataclass
class LineCounts:
    """What the splitter saw, by kind. Nothing here is fatal; the driver reports these in diagnostics."""

    messages: int = 0  # JSON objects with a known T code, handed over
    non_json: int = 0  # text lines that are not JSON at all (debug text, MAC address, boot messages)
    partial: int = 0  # lines that start like JSON but do not parse (cut or merged lines)
    resynced: int = 0  # of those, lines whose tail held a complete message that was recovered
    non_object: int = 0  # valid JSON that is not an object with an integer T (bare numbers, lists)
    unknown_t: int = 0  # JSON objects with a T code the firmware does not have
    overlong: int = 0  # byte runs longer than max_line_bytes without a newline, dropped
    empty: int = 0  # blank lines
    bytes: int = 0  # bytes fed

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    @property
    def skipped(self) -> int:
        return self.non_json + self.partial - self.resynced + self.non_object + self.unknown_t + self.overlong


@dataclass
class LineSplitter:
    """Bytes in, decoded JSON messages out. Skips and counts anything else; never raises.

    A cut line merged with the next one (``{"T":1051,"x":3{"T":1051,...}``) is resynchronised: when a line does
    not parse, the last ``{"T"`` in it is tried on its own, so one lost fragment costs one message, not two.
    """

    max_line_bytes: int = 1024
    counts: LineCounts = field(default_factory=LineCounts)
    _buffer: bytearray = field(default_factory=bytearray)
    _discarding: bool = False  # inside an overlong run: drop bytes up to the next newline

    def reset(self) -> None:
        """Forget any partial line (after a flush or a reconnect)."""
        self._buffer.clear()
        self._discarding = False

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.counts.bytes += len(data)
        out: list[dict[str, Any]] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            chunk = data[start:nl]
            start = nl + 1
            if self._discarding:
                self._discarding = False
                self._buffer.clear()
                continue
            if self._buffer:
                self._buffer += chunk
                line = bytes(self._buffer)
                self._buffer.clear()
            else:
                line = chunk
            if len(line) > self.max_line_bytes:
                self.counts.overlong += 1
                continue
            message = self._decode(line)
            if message is not None:
                out.append(message)
        rest = data[start:]
        if rest and not self._discarding:
            self._buffer += rest
            if len(self._buffer) > self.max_line_bytes:
                self.counts.overlong += 1
                self._buffer.clear()
                self._discarding = True
        return out

    def _decode(self, raw: bytes) -> dict[str, Any] | None:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            self.counts.empty += 1
            return None
        if not text.startswith(("{", "[")) and '{"T"' not in text:
            # Debug text, bare numbers, MAC addresses: counted as non-JSON unless they parse as a number.
            try:
                json.loads(text)
                self.counts.non_object += 1
            except ValueError:
                self.counts.non_json += 1
            return None
        try:
            value = json.loads(text)
        except ValueError:
            self.counts.partial += 1
            cut = text.rfind('{"T"')
            if cut <= 0:
                return None
            try:
                value = json.loads(text[cut:])
            except ValueError:
                return None
            self.counts.resynced += 1
        return self._check(value)

    def _check(self, value: Any) -> dict[str, Any] | None:
        if not isinstance(value, dict) or not isinstance(value.get("T"), int) or isinstance(value.get("T"), bool):
            self.counts.non_object += 1
            return None
        if value["T"] not in KNOWN_T_CODES:
            self.counts.unknown_t += 1
            return None
        self.counts.messages += 1
        return value
