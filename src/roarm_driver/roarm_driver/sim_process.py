"""The firmware simulator as its own process, remote-controlled: what tests and benches use so that the "robot"
does not share an interpreter (and its GIL) with the driver, as on the real arm.

- In the simulator process (``roarm-firmware-sim --control SOCKET``): :class:`ControlServer` answers requests on a
  Unix socket, one JSON object per line: ``{"op": "get", "name": "joints"}`` or
  ``{"op": "call", "name": "set_joints", "args": [[...]]}`` -> ``{"ok": true, "value": ...}`` or
  ``{"ok": false, "error": "..."}``. Only the names in :data:`READABLE` / :data:`CALLABLE` are served (no pickle, no
  arbitrary attribute access). numpy arrays travel as ``{"ndarray": [...]}``, bytes as ``{"bytes": base64}``.
- In the test or bench process: :class:`SimulatorProcess` starts it (``python -m roarm_driver.firmware_sim``),
  reads the port path it prints, and offers the same attributes and methods as
  :class:`~roarm_driver.firmware_sim.FirmwareSimulator` (``sim.joints``, ``sim.set_joints(q)``, ``sim.stats``,
  ``sim.received_commands()``, ``sim.disconnect()``, ...). ``stop()`` sends SIGINT and checks the exit status.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Sequence

import numpy as np

from roarm_common.child_process import die_with_parent

READABLE = ("port", "pty_path", "connected", "joints", "firmware_joints", "goal", "loads", "output_mode",
            "torque_on", "stats")
CALLABLE = ("set_joints", "guide", "block_gripper", "received_commands", "inject_garbage", "truncate_next_lines",
            "drop_replies", "disconnect", "reconnect", "reboot", "feedback_line")


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist()}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, collections.Counter):
        return {"counter": dict(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"ndarray"}:
            return np.array(value["ndarray"], dtype=float)
        if set(value) == {"bytes"}:
            return base64.b64decode(value["bytes"])
        if set(value) == {"counter"}:
            return collections.Counter(value["counter"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class ControlServer:
    """Serves a FirmwareSimulator's API on a Unix socket (runs in the simulator's process)."""

    def __init__(self, sim: Any, path: str):
        self.sim = sim
        self.path = path
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="sim-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    reply = self.handle(line)
                    try:
                        conn.sendall(json.dumps(reply).encode() + b"\n")
                    except OSError:
                        return

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op, name = request.get("op"), request.get("name")
            if op == "get" and name in READABLE:
                return {"ok": True, "value": _encode(getattr(self.sim, name))}
            if op == "call" and name in CALLABLE:
                args = _decode(request.get("args", []))
                return {"ok": True, "value": _encode(getattr(self.sim, name)(*args))}
            return {"ok": False, "error": f"not served: {op} {name}"}
        except Exception as exc:  # noqa: BLE001 - the error goes back to the caller
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


class SimulatorControl:
    """FirmwareSimulator's API over the control socket of a simulator process (`roarm-firmware-sim --control`),
    whoever started it: :class:`SimulatorProcess` here, or the graph runner."""

    def __init__(self) -> None:
        self._conn: socket.socket | None = None
        self._file = None
        self._lock = threading.Lock()
        self.output = ""

    @classmethod
    def connect(cls, control_path: str, timeout: float = 20.0) -> "SimulatorControl":
        control = cls()
        control._connect(control_path, timeout)
        return control

    def _connect(self, control_path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(control_path)
                break
            except OSError:
                conn.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"firmware simulator's control socket {control_path} did not appear")
                time.sleep(0.05)
        conn.settimeout(10.0)
        self._conn = conn
        self._file = conn.makefile("rb")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _request(self, request: dict[str, Any]) -> Any:
        with self._lock:
            if self._conn is None:
                raise RuntimeError("firmware simulator process is not running")
            self._conn.sendall(json.dumps(request).encode() + b"\n")
            line = self._file.readline()
        if not line:
            raise RuntimeError(f"firmware simulator closed its control socket: {self.output[-2000:]}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"firmware simulator: {reply.get('error')}")
        return _decode(reply.get("value"))

    def _get(self, name: str) -> Any:
        return self._request({"op": "get", "name": name})

    def _call(self, name: str, *args: Any) -> Any:
        return self._request({"op": "call", "name": name, "args": _encode(list(args))})

    pty_path = property(lambda self: self._get("pty_path"))
    connected = property(lambda self: self._get("connected"))
    joints = property(lambda self: self._get("joints"))
    firmware_joints = property(lambda self: self._get("firmware_joints"))
    goal = property(lambda self: self._get("goal"))
    loads = property(lambda self: self._get("loads"))
    output_mode = property(lambda self: self._get("output_mode"))
    torque_on = property(lambda self: self._get("torque_on"))
    stats = property(lambda self: self._get("stats"))

    def set_joints(self, q: Sequence[float]) -> None:
        self._call("set_joints", np.asarray(q, dtype=float))

    def guide(self, q: Sequence[float]) -> None:
        self._call("guide", np.asarray(q, dtype=float))

    def block_gripper(self, value: float | None) -> None:
        self._call("block_gripper", value)

    def received_commands(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self._call("received_commands")]

    def inject_garbage(self, data: bytes | int = 16) -> None:
        self._call("inject_garbage", data)

    def truncate_next_lines(self, n: int = 1) -> None:
        self._call("truncate_next_lines", n)

    def drop_replies(self, n: int = 1) -> None:
        self._call("drop_replies", n)

    def disconnect(self) -> None:
        self._call("disconnect")

    def reconnect(self) -> str:
        self._call("reconnect")
        return self._get("port")

    def reboot(self) -> None:
        self._call("reboot")

    def feedback_line(self) -> bytes:
        return self._call("feedback_line")


class SimulatorProcess(SimulatorControl):
    """A firmware simulator in a child process, with FirmwareSimulator's API over its control socket."""

    def __init__(self, baud: int = 115200, link_path: str | None = None, boot_mode: int = 0, boot_text: bool = True,
                 initial_positions: Sequence[float] | None = None, seed: int | None = None,
                 command_log: str | None = None, start_timeout: float = 20.0):
        self._tmp = tempfile.mkdtemp(prefix="roarm_sim_")
        self.link_path = link_path or os.path.join(self._tmp, "port")
        self.control_path = os.path.join(self._tmp, "control.sock")
        self.command_log = command_log
        self.argv = [sys.executable, "-m", "roarm_driver.firmware_sim", "--baud", str(baud), "--link", self.link_path,
                     "--boot-mode", str(boot_mode), "--control", self.control_path]
        if not boot_text:
            self.argv.append("--no-boot-text")
        if seed is not None:
            self.argv += ["--seed", str(seed)]
        if initial_positions is not None:
            self.argv += ["--initial-positions", ",".join(f"{float(v):.9g}" for v in initial_positions)]
        if command_log:
            self.argv += ["--command-log", command_log]
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        super().__init__()

    # ------------------------------------------------------------------ process
    @property
    def port(self) -> str:
        return self.link_path

    def start(self) -> str:
        if self.proc is not None:
            return self.link_path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     preexec_fn=die_with_parent)
        line = self.proc.stdout.readline()  # the port path, printed once the pty and the control socket are up
        if not line.strip():
            self.proc.kill()
            out = self.proc.communicate()[0]
            raise RuntimeError(f"firmware simulator did not start (exit {self.proc.returncode}): {out[-2000:]}")
        self._connect(self.control_path, self.start_timeout)
        threading.Thread(target=self._drain, daemon=True).start()
        return self.link_path

    def _drain(self) -> None:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            self.output += line

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int | None:
        """Signal the simulator, wait for it; returns its exit status (0 expected)."""
        if self.proc is None:
            return None
        self.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.returncode = code
        self.proc = None
        return code

    def __enter__(self) -> "SimulatorProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
