"""RoArm-M3 firmware simulator on a pseudo-terminal: "the robot" of every test and of the simulated demo.

It opens a pty (``os.openpty``) and behaves like the arm's ESP32 firmware on the master side, so pyserial on the
slave side sees a real tty. The slave is published at a stable symlink (default ``/tmp/roarm_sim_<pid>_<n>``) that
is re-pointed on reconnect, so a driver's ``port`` parameter stays valid across a simulated unplug/replug.

Library API (stable; engineer C's sim world runs this as the robot)::

    from roarm_driver.firmware_sim import FirmwareSimulator
    with FirmwareSimulator(baud=115200) as sim:      # or sim = FirmwareSimulator(); port = sim.start(); sim.stop()
        port = sim.port                              # symlink path for pyserial / the driver's `port` parameter
        q = sim.joints                               # current positions, URDF radians, JOINT_NAMES order (copy)
        sim.set_joints(q)                            # put the arm somewhere (no motion profile)
        sim.block_gripper(0.6)                       # an object stops the gripper closing at URDF 0.6 (None: free)
        # fault injection (all thread-safe, never fatal for the simulator)
        sim.inject_garbage(b"\\x00\\xffnoise")        # raw bytes into the output stream (int n: n random bytes)
        sim.truncate_next_lines(2)                   # next 2 T:1051 lines are cut in the middle (no newline)
        sim.drop_replies(3)                          # next 3 T:1051 lines (requested or streamed) are not sent
        sim.disconnect(); sim.reconnect()            # unplug (pty closed, link removed) / replug (new pty, same link)
        sim.reboot()                                 # firmware reset: boot text, output mode back to boot_mode
    # Observation: sim.output_mode, sim.torque_on, sim.goal (URDF), sim.connected, sim.stats (counters),
    # sim.received_commands() (list of (monotonic time, dict) read), sim.add_command_listener(fn(t, message)).

Supported T codes: 0 (timed torque off, blocking), 100 (home, blocking), 101, 102, 105, 106, 121, 122, 210,
605 (0 silent, 1 debug echo of each command, 2 stream T:1051 back to back). Other known codes are accepted and
ignored (104/1041 Cartesian moves are not simulated). Servo dynamics: see :mod:`roarm_description.servo_model`.

Output is paced at the baud rate (8N1: baud / 10 bytes per second) in small chunks, so a ~200-byte T:1051 line
at 115200 baud takes ~17 ms and streaming mode tops out near the physical line rate. Bytes the host does not read
pile up in the pty (stale frames, as with a real USB-UART) until its buffer is full, then are dropped.

CLI: ``roarm-firmware-sim [--baud 115200] [--link PATH] [--port-file FILE] [--boot-mode 0|1|2]
[--command-log FILE] [--control SOCKET]`` (or ``python -m roarm_driver.firmware_sim``) prints the port path and
runs until SIGINT/SIGTERM (exit status 0). ``--command-log``: see :class:`CommandLog`; ``--control``: the library
API over a Unix socket (:mod:`roarm_driver.sim_process`, what the tests and benches use to run it as a process).
"""

from __future__ import annotations

import argparse
import collections
import errno
import itertools
import json
import math
import os
import random
import select
import signal
import threading
import time
import tty
from typing import Any, Callable

import numpy as np

from roarm_description import joints
from roarm_driver import protocol as proto
from roarm_description.kinematics import firmware_xyz
from roarm_description.servo_model import FIRMWARE_HOME, ServoBank, ServoParams



def firmware_fk(fw: np.ndarray) -> tuple[float, float, float, float]:
    """Firmware radians -> (x, y, z mm, tit rad) as the firmware's T:1051 reports them (kinematics.firmware_xyz)."""
    return firmware_xyz(fw)


# At exit the simulator waits this long for the host's driver to close the port first: launch signals every process
# at once, and a port that vanishes under a driver makes it report a lost link.
HOST_CLOSE_GRACE_S = 3.0

BOOT_TEXT = (
    b"ets Jul 29 2019 12:21:46\r\n"
    b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    b"24:0A:C4:12:34:56\r\n"
)

_instance_counter = itertools.count()


def _num(value: float) -> float | int:
    """ArduinoJson-like number: up to 9 significant digits, integers without a decimal point."""
    v = float(f"{value:.9g}")
    return int(v) if v == int(v) and abs(v) < 1e9 else v


class FirmwareSimulator:
    """The RoArm-M3 firmware on a pty. See the module docstring for the API."""

    def __init__(
        self,
        baud: int = 115200,
        link_path: str | None = None,
        boot_mode: int = proto.OUTPUT_SILENT,
        boot_text: bool = True,
        initial_positions: np.ndarray | None = None,
        servo_params: ServoParams | None = None,
        chunk_bytes: int = 32,
        physics_dt: float = 0.002,
        timed_torque_off_s: float = 10.0,
        home_speed: int = 1500,
        seed: int | None = None,
    ):
        if baud <= 0:
            raise ValueError(f"baud must be > 0, got {baud}")
        self.baud = int(baud)
        self.bytes_per_second = self.baud / 10.0  # 8N1: start + 8 data + stop bits
        self.link_path = link_path or f"/tmp/roarm_sim_{os.getpid()}_{next(_instance_counter)}"
        self.boot_mode = boot_mode
        self.boot_text = boot_text
        self.chunk_bytes = max(1, int(chunk_bytes))
        self.max_catch_up_s = 0.1
        self.physics_dt = physics_dt
        self.timed_torque_off_s = timed_torque_off_s
        self.home_speed = home_speed
        initial_fw = FIRMWARE_HOME if initial_positions is None else joints.urdf_to_firmware(initial_positions)
        self._servos = ServoBank(servo_params, initial_fw)
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._mode = boot_mode
        self._master: int | None = None
        self._slave: int | None = None
        self._pty_path: str | None = None
        self._tx = bytearray()
        self._tx_next = 0.0
        self._rx = bytearray()
        self._pending_lines: collections.deque[bytes] = collections.deque()
        self._busy_until = 0.0  # blocking command (T:0 / T:100): no serial processing, no output until then
        self._homing = False
        self._torque_back_at: float | None = None
        self._truncate = 0
        self._drop = 0
        self._physics_time = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._requests: collections.deque[tuple[Callable[[], None], threading.Event]] = collections.deque()
        self._listeners: list[Callable[[float, dict], None]] = []
        self.commands: collections.deque[tuple[float, dict]] = collections.deque(maxlen=2000)
        self.stats = collections.Counter()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Open the pty, start the firmware loop; returns the port path (the stable symlink)."""
        if self._thread is not None:
            return self.link_path
        self._open_pty()
        if self.boot_text:
            self._tx += BOOT_TEXT
        self._stop.clear()
        self._physics_time = time.monotonic()
        self._tx_next = self._physics_time
        self._thread = threading.Thread(target=self._run, name="roarm-firmware-sim", daemon=True)
        self._thread.start()
        return self.link_path

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake()
            self._thread.join(timeout=5.0)
            self._thread = None
        self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> "FirmwareSimulator":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ state (thread-safe)
    @property
    def port(self) -> str:
        return self.link_path

    @property
    def pty_path(self) -> str | None:
        """The current /dev/pts/N behind the link (changes on reconnect)."""
        return self._pty_path

    @property
    def connected(self) -> bool:
        return self._master is not None

    @property
    def joints(self) -> np.ndarray:
        """Current positions, URDF radians, joints.JOINT_NAMES order."""
        with self._lock:
            self._advance(time.monotonic())
            return joints.firmware_to_urdf(self._servos.position.copy())

    @property
    def firmware_joints(self) -> np.ndarray:
        with self._lock:
            self._advance(time.monotonic())
            return self._servos.position.copy()

    @property
    def goal(self) -> np.ndarray:
        """Current servo goals, URDF radians."""
        with self._lock:
            return joints.firmware_to_urdf(self._servos.goal.copy())

    @property
    def loads(self) -> np.ndarray:
        with self._lock:
            return self._servos.loads()

    @property
    def output_mode(self) -> int:
        return self._mode

    @property
    def torque_on(self) -> bool:
        return self._servos.torque_on

    def set_joints(self, urdf_positions: np.ndarray) -> None:
        """Teleport the arm (and its goals) to ``urdf_positions``: test set-up, no motion profile."""
        with self._lock:
            self._advance(time.monotonic())
            fw = joints.urdf_to_firmware(np.asarray(urdf_positions, dtype=float))
            self._servos.teleport(fw)
            self._servos.goal = self._servos.position.copy()

    def guide(self, urdf_positions: np.ndarray) -> None:
        """A hand moves the arm (meaningful with torque off: the servos follow; with torque on they pull back)."""
        with self._lock:
            self._advance(time.monotonic())
            self._servos.teleport(joints.urdf_to_firmware(np.asarray(urdf_positions, dtype=float)))

    def block_gripper(self, urdf_value: float | None) -> None:
        """An object between the fingers stops the gripper closing below ``urdf_value`` (None: nothing there)."""
        with self._lock:
            self._servos.blocked_gripper_at = None if urdf_value is None else math.pi - float(urdf_value)

    def received_commands(self) -> list[tuple[float, dict]]:
        """Copy of the (monotonic time, message) commands read so far (the last 2000)."""
        with self._lock:
            return list(self.commands)

    def add_command_listener(self, callback: Callable[[float, dict], None]) -> None:
        """``callback(monotonic_time, message)`` for every JSON command the firmware reads (sim thread)."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ fault injection
    def inject_garbage(self, data: bytes | int = 16) -> None:
        """Raw bytes into the output stream between lines (int: that many random bytes, no newline)."""
        if isinstance(data, int):
            data = bytes(self._rng.choice(range(0x20, 0x7F)) if self._rng.random() < 0.5 else self._rng.randrange(0x80, 0x100)
                         for _ in range(data)).replace(b"{", b"(")
        with self._lock:
            self._tx += data
            self.stats["garbage_bytes"] += len(data)
        self._wake()

    def truncate_next_lines(self, n: int = 1) -> None:
        """The next ``n`` T:1051 lines lose their second half and their newline (they merge with the next line)."""
        with self._lock:
            self._truncate += int(n)

    def drop_replies(self, n: int = 1) -> None:
        """The next ``n`` T:1051 lines, requested or streamed, are never sent (their time slot still passes)."""
        with self._lock:
            self._drop += int(n)

    def disconnect(self) -> None:
        """Unplug: the pty closes (the host sees EIO / hang-up) and the port link disappears."""
        self._in_loop(self._close_pty)

    def reconnect(self) -> str:
        """Replug: a new pty behind the same link. The firmware kept running: pose, mode and torque are unchanged."""
        self._in_loop(self._open_pty)
        return self.link_path

    def reboot(self) -> None:
        """Firmware reset (e.g. DTR toggled): boot text, output mode back to boot_mode, servos hold where they are."""
        def do() -> None:
            self._mode = self.boot_mode
            self._tx.clear()
            if self.boot_text:
                self._tx += BOOT_TEXT
            self._servos.set_torque(True)
            self._servos.goal = self._servos.position.copy()
            self._pending_lines.clear()
            self._rx.clear()
        self._in_loop(do)

    # ------------------------------------------------------------------ pty plumbing
    def _open_pty(self) -> None:
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._pty_path = os.ttyname(slave)
        tmp = f"{self.link_path}.tmp{os.getpid()}"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(self._pty_path, tmp)
        os.replace(tmp, self.link_path)
        self._rx.clear()
        self._tx_next = time.monotonic()
        self.stats["connects"] += 1

    def _close_pty(self) -> None:
        try:
            if os.path.islink(self.link_path):
                os.unlink(self.link_path)
        except OSError:
            pass
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._master is not None:
            self.stats["disconnects"] += 1
        self._master = self._slave = None
        self._pty_path = None
        self._rx.clear()

    def port_open_elsewhere(self) -> bool:
        """Whether another process holds the pty open (the host's driver): scans /proc (Linux), so call it rarely.
        Used at exit: a simulator that closes under a driver still reading makes it report a lost link."""
        path = self._pty_path
        if path is None:
            return False
        me = os.getpid()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == me:
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:  # gone, or not ours to read
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                        return True
                except OSError:
                    continue
        return False

    def wait_for_host_to_close(self, timeout: float = HOST_CLOSE_GRACE_S,
                               interrupted: threading.Event | None = None) -> bool:
        """Before stopping: wait up to ``timeout`` s for the host to close the port (True when it did)."""
        deadline = time.monotonic() + max(0.0, timeout)
        stop = interrupted if interrupted is not None else threading.Event()
        while self.port_open_elsewhere():
            if time.monotonic() >= deadline or stop.wait(0.05):
                return False
        return True

    def _in_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the firmware thread (it owns the fds), or directly when the loop is not running."""
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                fn()
            return
        done = threading.Event()
        self._requests.append((fn, done))
        self._wake()
        if not done.wait(5.0):
            raise TimeoutError("firmware simulator loop did not answer")

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # ------------------------------------------------------------------ firmware loop
    def _run(self) -> None:
        while not self._stop.is_set():
            while self._requests:
                fn, done = self._requests.popleft()
                with self._lock:
                    try:
                        fn()
                    finally:
                        done.set()
            now = time.monotonic()
            with self._lock:
                self._advance(now)
                self._process_input(now)
                self._service_output(now)
                timeout = self._next_wakeup(now)
                master = self._master
            fds = [self._wake_r] + ([master] if master is not None else [])
            try:
                readable, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                continue
            if self._wake_r in readable:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            if master is not None and master in readable:
                with self._lock:
                    if self._master == master:
                        try:
                            data = os.read(master, 4096)
                        except BlockingIOError:
                            data = b""
                        except OSError:  # EIO: nothing holds the slave (cannot happen while we keep it open)
                            data = b""
                        if data:
                            self.stats["bytes_in"] += len(data)
                            self._rx += data
                            self._split_input()

    def _next_wakeup(self, now: float) -> float:
        if self._master is None:
            return 0.05
        if now < self._busy_until:
            return min(0.05, self._busy_until - now)
        if self._tx or self._mode == proto.OUTPUT_STREAM:
            return max(0.0, min(0.05, self._tx_next - now))
        return 0.05

    def _advance(self, now: float) -> None:
        """Physics up to ``now`` in fixed sub-steps; timed torque-off and blocking home end here."""
        dt_total = now - self._physics_time
        if dt_total <= 0:
            return
        steps = max(1, int(math.ceil(dt_total / self.physics_dt)))
        if steps > 5000:  # a long pause (debugger, suspended process): settle in bounded work
            steps = 5000
        dt = dt_total / steps
        for _ in range(steps):
            self._servos.step(dt)
        self._physics_time = now
        if self._torque_back_at is not None and now >= self._torque_back_at:
            self._torque_back_at = None
            self._servos.set_torque(True)
        if self._homing and np.max(np.abs(self._servos.goal - self._servos.position)) < 1e-3:
            self._homing = False
            self._busy_until = now

    def _split_input(self) -> None:
        while True:
            nl = self._rx.find(b"\n")
            if nl < 0:
                if len(self._rx) > 512:  # the firmware's line buffer overflows: drop
                    self._rx.clear()
                    self.stats["rx_overflow"] += 1
                return
            line = bytes(self._rx[:nl]).strip()
            del self._rx[: nl + 1]
            if line:
                self._pending_lines.append(line)

    def _process_input(self, now: float) -> None:
        while self._pending_lines and now >= self._busy_until and not self._homing:
            line = self._pending_lines.popleft()
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.stats["bad_lines_in"] += 1
                continue
            self.stats["lines_in"] += 1
            self.commands.append((now, message))
            for callback in list(self._listeners):
                try:
                    callback(now, message)
                except Exception:  # noqa: BLE001 - an observer's bug must not stop the firmware
                    self.stats["listener_errors"] += 1
            if self._mode == proto.OUTPUT_ECHO:
                self._tx += json.dumps(message, separators=(",", ":")).encode() + b"\r\n"
            self._execute(message, now)

    def _execute(self, m: dict, now: float) -> None:
        t = m.get("T")
        s = self._servos
        self.stats[f"T{t}"] += 1

        def f(key: str, default: float = 0.0) -> float:
            try:
                v = float(m.get(key, default))
            except (TypeError, ValueError):
                v = default
            return v if math.isfinite(v) else default

        if t == proto.T_JOINTS_RAD:
            s.command(np.array([f(k) for k in proto.T102_KEYS]), f("spd"), f("acc"))
        elif t == proto.T_JOINTS_DEG:
            s.command(np.radians([f(k) for k in proto.T122_KEYS]), f("spd"), f("acc"))
        elif t in (proto.T_JOINT_RAD, proto.T_JOINT_DEG):
            index = int(f("joint")) - 1
            if 0 <= index < joints.NUM_JOINTS:
                value = f("rad") if t == proto.T_JOINT_RAD else math.radians(f("angle"))
                goal = s.goal.copy()
                goal[index] = value
                mask = np.zeros(joints.NUM_JOINTS, dtype=bool)
                mask[index] = True
                s.command(goal, f("spd"), f("acc"), mask)
        elif t == proto.T_GRIPPER:
            goal = s.goal.copy()
            goal[joints.GRIPPER_INDEX] = f("cmd", math.pi)
            mask = np.zeros(joints.NUM_JOINTS, dtype=bool)
            mask[joints.GRIPPER_INDEX] = True
            s.command(goal, f("spd"), f("acc"), mask)
        elif t == proto.T_FEEDBACK_REQUEST:
            self._queue_feedback(now)
        elif t == proto.T_OUTPUT_MODE:
            mode = int(f("cmd"))
            if mode in (0, 1, 2):
                self._mode = mode
        elif t == proto.T_TORQUE:
            s.set_torque(bool(int(f("cmd", 1))))
            self._torque_back_at = None
        elif t == proto.T_TORQUE_OFF_TIMED:
            s.set_torque(False)
            self._torque_back_at = now + self.timed_torque_off_s
            self._busy_until = now + self.timed_torque_off_s  # blocking: the firmware waits it out
        elif t == proto.T_MOVE_HOME:
            s.set_torque(True)
            s.command(FIRMWARE_HOME.copy(), self.home_speed, 0)
            self._homing = True
            self._busy_until = math.inf
        # other known codes: accepted, not simulated

    def feedback_line(self) -> bytes:
        """The T:1051 line for the present state (what the firmware's Serial.println writes)."""
        s = self._servos
        fw = s.quantized_position()
        x, y, z, tit = firmware_fk(fw)
        loads = s.loads()
        msg: dict[str, Any] = {"T": proto.T_FEEDBACK, "x": _num(x), "y": _num(y), "z": _num(z), "tit": _num(tit)}
        for key, value in zip(joints.FIRMWARE_KEYS, fw):
            msg[key] = _num(value)
        for key, value in zip(joints.LOAD_KEYS, loads):
            msg[key] = int(value)
        return json.dumps(msg, separators=(",", ":")).encode() + b"\r\n"

    def _queue_feedback(self, now: float) -> None:
        line = self.feedback_line()
        if self._drop > 0:
            self._drop -= 1
            self.stats["dropped_replies"] += 1
            self._tx_next = max(self._tx_next, now) + len(line) / self.bytes_per_second
            return
        if self._truncate > 0:
            self._truncate -= 1
            self.stats["truncated_lines"] += 1
            line = line[: self._rng.randrange(10, len(line) - 10)]
        self._tx += line
        self.stats["feedback_lines"] += 1

    def _service_output(self, now: float) -> None:
        if self._master is None or now < self._busy_until or self._homing:
            return
        while now >= self._tx_next:
            if not self._tx and self._mode == proto.OUTPUT_STREAM:
                self._queue_feedback(now)
                if now < self._tx_next:  # the line was dropped: its slot passes
                    return
            if not self._tx:
                return
            chunk = bytes(self._tx[: self.chunk_bytes])
            del self._tx[: len(chunk)]
            try:
                written = os.write(self._master, chunk)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EAGAIN):
                    raise
                written = 0
            if written < len(chunk):  # the host's buffer is full: the rest is lost, as on a real UART
                self.stats["bytes_dropped_host_full"] += len(chunk) - written
            self.stats["bytes_out"] += len(chunk)
            duration = len(chunk) / self.bytes_per_second
            # A real UART never stalls: catch up after scheduling hiccups of this process (up to 0.1 s) so the
            # long-run byte rate stays exact, but do not burst out seconds of backlog after a long pause.
            self._tx_next = (self._tx_next if now - self._tx_next < self.max_catch_up_s else now) + duration


class CommandLog:
    """``--command-log FILE``: one line per T:102 the firmware reads, written as it is read (line-buffered):

        <time.monotonic()> <time.time()> <b> <s> <e> <t> <r> <g>

    space-separated; the two receipt times in seconds (monotonic: the machine's steady clock, comparable with other
    processes' ``time.monotonic()``; time: wall clock), then the six joint values as received, in URDF radians and
    ``joints.JOINT_NAMES`` order (the gripper converted from the firmware's raw g: URDF = pi - g). Lines starting with
    ``#`` are comments (the header)."""

    def __init__(self, path: str):
        self._fh = open(path, "w", buffering=1)
        self._fh.write("# monotonic_s wall_s " + " ".join(joints.JOINT_NAMES) + " (URDF rad)\n")
        self.lines = 0

    def __call__(self, monotonic_time: float, message: dict) -> None:
        if message.get("T") != proto.T_JOINTS_RAD:
            return
        fw = []
        for key in proto.T102_KEYS:
            try:
                fw.append(float(message.get(key, 0.0)))
            except (TypeError, ValueError):
                fw.append(math.nan)
        q = joints.firmware_to_urdf(np.array(fw))
        self._fh.write(f"{monotonic_time:.6f} {time.time():.6f} " + " ".join(f"{v:.6f}" for v in q) + "\n")
        self.lines += 1

    def close(self) -> None:
        self._fh.close()


def read_command_log(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(monotonic [N], wall [N], positions [N, 6] URDF rad) from a ``--command-log`` file."""
    rows = [line.split() for line in open(path) if line.strip() and not line.startswith("#")]
    data = np.array([[float(v) for v in row] for row in rows]) if rows else np.empty((0, 2 + joints.NUM_JOINTS))
    return data[:, 0], data[:, 1], data[:, 2:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RoArm-M3 firmware simulator on a pseudo-terminal.")
    parser.add_argument("--baud", type=int, default=115200, help="link speed that paces the output (8N1)")
    parser.add_argument("--link", default=None, help="stable symlink to the pty (default /tmp/roarm_sim_<pid>_0)")
    parser.add_argument("--port-file", default=None, help="also write the port path to this file")
    parser.add_argument("--boot-mode", type=int, default=0, choices=(0, 1, 2), help="T:605 output mode at boot")
    parser.add_argument("--no-boot-text", action="store_true", help="do not print the ESP32 boot lines")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault injection's random bytes")
    parser.add_argument("--initial-positions", default=None,
                        help="start pose, URDF rad, comma-separated in JOINT_NAMES order (default: firmware home)")
    parser.add_argument("--command-log", default=None,
                        help="write one line per received T:102: monotonic and wall receipt time, joint values")
    parser.add_argument("--control", default=None,
                        help="Unix socket path for remote control (tests, benches): see roarm_driver.sim_process")
    parser.add_argument("--exit-grace", type=float, default=HOST_CLOSE_GRACE_S,
                        help="on SIGINT/SIGTERM, wait up to this many seconds for the driver to close the port "
                             "first (launch signals every process at once); a second signal exits at once")
    args = parser.parse_args(argv)
    initial = None
    if args.initial_positions:
        initial = np.array([float(v) for v in args.initial_positions.split(",")])
        if initial.shape != (joints.NUM_JOINTS,):
            parser.error(f"--initial-positions needs {joints.NUM_JOINTS} values, got {args.initial_positions!r}")
    stop, stop_now = threading.Event(), threading.Event()

    def on_signal(*_):
        if stop.is_set():
            stop_now.set()
        stop.set()

    # Handlers first: a signal during start-up must also end the process cleanly (status 0, no traceback).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = FirmwareSimulator(baud=args.baud, link_path=args.link, boot_mode=args.boot_mode,
                            boot_text=not args.no_boot_text, initial_positions=initial, seed=args.seed)
    log = CommandLog(args.command_log) if args.command_log else None
    if log is not None:
        sim.add_command_listener(log)
    port = sim.start()
    server = None
    if args.control:
        from roarm_driver.sim_process import ControlServer

        server = ControlServer(sim, args.control)
        server.start()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(port + "\n")
        os.replace(tmp, args.port_file)
    print(port, flush=True)
    try:
        while not stop.wait(0.5):
            pass
        sim.wait_for_host_to_close(args.exit_grace, interrupted=stop_now)
    finally:
        if server is not None:
            server.stop()
        sim.stop()
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
