"""The serial link to the arm: open, read lines on ONE thread, write without waiting, reconnect. ROS-free.

- RTS/DTR are set before the port opens (toggling them can reset the ESP32).
- On every (re)connect the OS input buffer is flushed (streamed frames pile up there while nobody reads) and
  ``on_connect(link)`` runs on the reader thread before the first read: the driver sets the output mode there.
- The reader thread is the only one that reads and the only one that closes; :meth:`write` may be called from any
  thread, never waits for a reply and never raises: a failed write is counted and makes the reader reconnect.
- Any serial error (unplugged adapter, pty closed, port gone) closes the port; the reader retries every
  ``reconnect_period`` seconds until it opens again. Every failed open calls ``on_open_failed(port, error)``
  (the driver logs the first one at ERROR with :func:`open_failure_hint`, then throttles).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Callable

import serial

from roarm_driver.protocol import LineSplitter


def open_failure_hint(port: str, error: BaseException) -> str:
    """What to check when ``port`` cannot be opened, most likely cause first."""
    text = str(error).lower()
    checks = {
        "path": f"the device path: does {port} exist (ls -l /dev/ttyUSB* /dev/ttyACM*; the arm's CP210x "
                "appears when the cable is in the arm's middle USB-C port)?",
        "permission": f"permissions: is this user in the group owning {port} (ls -l {port}; "
                      "sudo usermod -aG dialout $USER, then log in again)?",
        "cable": "the cable: a data-capable USB cable, firmly in, the arm powered?",
        "busy": f"another program holding the port (fuser {port}; a serial monitor, another driver)?",
    }
    if "permission" in text or "errno 13" in text:
        order = ["permission", "busy", "path", "cable"]
    elif "busy" in text or "errno 16" in text or "lock" in text:
        order = ["busy", "permission", "path", "cable"]
    else:  # no such file or directory, and everything else
        order = ["path", "cable", "permission", "busy"]
    return "Check " + " ".join(f"({i}) {checks[key]}" for i, key in enumerate(order, 1))


class SerialLink:
    def __init__(
        self,
        port: str,
        baud: int = 115200,
        rts: bool = False,
        dtr: bool = False,
        on_message: Callable[[float, dict[str, Any]], None] | None = None,
        on_connect: Callable[["SerialLink"], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        on_open_failed: Callable[[str, BaseException], None] | None = None,
        reconnect_period: float = 0.25,
        write_timeout: float = 0.05,
        read_timeout: float = 0.05,
        max_line_bytes: int = 1024,
    ):
        self.port = port
        self.baud = int(baud)
        self.rts = bool(rts)
        self.dtr = bool(dtr)
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_open_failed = on_open_failed
        self.reconnect_period = float(reconnect_period)
        self.write_timeout = float(write_timeout)
        self.read_timeout = float(read_timeout)
        self.splitter = LineSplitter(max_line_bytes=max_line_bytes)
        self.counters: Counter[str] = Counter()
        self.last_error = ""
        self._serial: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._broken = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected_since: float | None = None

    # ------------------------------------------------------------------ public
    @property
    def connected(self) -> bool:
        return self._serial is not None and not self._broken.is_set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"serial-reader:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3.0)
            self._thread = None
        self._close("stopped")

    def write(self, data: bytes) -> bool:
        """Write one command; True when the bytes went to the OS. Never blocks longer than write_timeout."""
        ser = self._serial
        if ser is None or self._broken.is_set():
            self.counters["writes_while_disconnected"] += 1
            return False
        try:
            with self._write_lock:
                ser.write(data)
            self.counters["writes"] += 1
            self.counters["bytes_out"] += len(data)
            return True
        except serial.SerialTimeoutException:
            self.counters["write_timeouts"] += 1
            return False
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial's fd vanished under us (closed by the reader during a write).
            self.counters["write_errors"] += 1
            self.last_error = f"write: {exc}"
            self._broken.set()
            return False

    # ------------------------------------------------------------------ reader thread
    def _open(self) -> bool:
        ser = serial.Serial()
        ser.port = self.port
        ser.baudrate = self.baud
        ser.timeout = self.read_timeout
        ser.write_timeout = self.write_timeout
        ser.rts = self.rts  # before open(): pyserial applies them while opening, without a toggle
        ser.dtr = self.dtr
        try:
            ser.open()
            ser.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as exc:
            self.last_error = f"open {self.port}: {exc}"
            self.counters["open_failures"] += 1
            try:
                ser.close()
            except Exception:  # noqa: BLE001
                pass
            if self.on_open_failed is not None:
                try:
                    self.on_open_failed(self.port, exc)
                except Exception:  # noqa: BLE001 - a callback bug must not kill the link
                    self.counters["callback_errors"] += 1
            return False
        self.splitter.reset()
        self._broken.clear()
        self._serial = ser
        self.connected_since = time.monotonic()
        self.counters["connects"] += 1
        if self.on_connect is not None:
            try:
                self.on_connect(self)
            except Exception as exc:  # noqa: BLE001 - a callback bug must not kill the link
                self.last_error = f"on_connect: {exc!r}"
                self.counters["callback_errors"] += 1
        try:  # whatever arrived while we were setting the mode is stale too
            ser.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass
        self.splitter.reset()
        return True

    def _close(self, reason: str) -> None:
        ser = self._serial
        if ser is None:
            return
        self._broken.set()
        with self._write_lock:
            self._serial = None
        try:
            ser.close()
        except Exception:  # noqa: BLE001
            pass
        self.connected_since = None
        self.counters["disconnects"] += 1
        if self.on_disconnect is not None and not self._stop.is_set():  # a deliberate stop is not a fault
            try:
                self.on_disconnect(reason)
            except Exception:  # noqa: BLE001
                self.counters["callback_errors"] += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._serial is None:
                if not self._open():
                    self._stop.wait(self.reconnect_period)
                continue
            if self._broken.is_set():
                self._close(self.last_error or "write failed")
                continue
            ser = self._serial
            try:
                waiting = ser.in_waiting
                data = ser.read(waiting if waiting > 0 else 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                self.last_error = f"read: {exc}"
                self.counters["read_errors"] += 1
                self._close(self.last_error)
                continue
            if not data:
                continue
            receipt = time.monotonic()
            for message in self.splitter.feed(data):
                if self.on_message is not None:
                    try:
                        self.on_message(receipt, message)
                    except Exception as exc:  # noqa: BLE001
                        self.last_error = f"on_message: {exc!r}"
                        self.counters["callback_errors"] += 1
