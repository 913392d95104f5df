"""Runs the policy in its own thread so that the node's executor never waits for the model.

ROS-free. The node calls :meth:`InferenceWorker.submit` (non-blocking: it only hands over the latest observation
and wakes the thread) when the inference gate says the next chunk is due. The thread runs
``predict_fn(observation)``, rejects chunks holding NaN/inf (counted, never handed on) and gives good chunks to
``on_chunk``. One inference at a time: ``submit`` while busy returns False and the observation is not queued (the
next tick will offer a fresher one).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

LOG = logging.getLogger(__name__)


@dataclass
class Observation:
    image: Any  # HxWx3 uint8 RGB, or an image message that predict_fn converts (off the executor thread)
    state: np.ndarray  # 6 URDF radians, JOINT_NAMES order
    stamp: float  # steady seconds: the image's stamp (the chunk's step 0 is meant for this time)
    task: str
    ros_stamp: float = 0.0  # the image's header stamp in ROS time (what the ActionChunk is stamped with)


@dataclass
class InferenceResult:
    observation: Observation
    actions: np.ndarray  # [T, 6] URDF radians
    model_actions: Any  # whatever predict_fn returned as model-space actions (RTC leftover), may be None
    latency_s: float  # wall time of predict_fn
    finished_at: float  # time.monotonic() when done


@dataclass
class WorkerCounters:
    submitted: int = 0
    completed: int = 0
    rejected_nonfinite: int = 0
    errors: int = 0
    last_error: str = ""
    last_latency_s: float = float("nan")
    latencies_s: list[float] = field(default_factory=list)  # the last 100


class InferenceWorker:
    """One background thread running ``predict_fn``; see the module docstring."""

    def __init__(
        self,
        predict_fn: Callable[[Observation], tuple[np.ndarray, Any]],
        on_chunk: Callable[[InferenceResult], None],
        on_reject: Callable[[str], None] | None = None,
        name: str = "vla_inference",
    ) -> None:
        self._predict_fn = predict_fn
        self._on_chunk = on_chunk
        self._on_reject = on_reject or (lambda reason: None)
        self.counters = WorkerCounters()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: Observation | None = None
        self._running = False
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the thread to end after its current inference; True when it has ended within ``timeout``."""
        with self._wake:
            self._stop = True
            self._pending = None
            self._wake.notify_all()
        if self._started:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running or self._pending is not None

    def submit(self, observation: Observation) -> bool:
        """Hand over an observation; False (and nothing queued) while an inference is pending or running."""
        with self._wake:
            if self._stop or self._running or self._pending is not None:
                return False
            self._pending = observation
            self.counters.submitted += 1
            self._wake.notify()
            return True

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                observation, self._pending = self._pending, None
                self._running = True
            try:
                self._run_one(observation)
            finally:
                with self._wake:
                    self._running = False

    def _run_one(self, observation: Observation) -> None:
        start = time.perf_counter()
        try:
            actions, model_actions = self._predict_fn(observation)
            actions = np.asarray(actions, dtype=float)
        except Exception as exc:  # noqa: BLE001 - a failed inference must not kill the thread; it is reported
            self.counters.errors += 1
            self.counters.last_error = f"{type(exc).__name__}: {exc}"
            LOG.exception("inference failed")
            self._on_reject(f"inference error: {self.counters.last_error}")
            return
        latency = time.perf_counter() - start
        self.counters.last_latency_s = latency
        self.counters.latencies_s = (self.counters.latencies_s + [latency])[-100:]
        if actions.ndim != 2 or not np.all(np.isfinite(actions)):
            self.counters.rejected_nonfinite += 1
            self._on_reject("chunk rejected: NaN/inf or bad shape " + str(actions.shape))
            return
        self.counters.completed += 1
        self._on_chunk(InferenceResult(observation, actions, model_actions, latency, time.monotonic()))
