"""A multi-threaded rclpy executor that hands each ready callback to its thread pool once.

rclpy 7.x (Jazzy) ``MultiThreadedExecutor`` (ros2/rclpy#1452, fixed upstream by #1547 in rclpy 10, which Jazzy
does not get): on every wake-up ``wait_for_ready_callbacks`` offers again each task that has not started yet,
including handlers still waiting in the thread pool's queue, and the spin thread submits them again and appends
them again to the list of futures it scans on every pass. Under load this feeds itself: the pool's threads wait for
the GIL the spin thread holds, the queue and the list grow, and the process ends up spinning at 100 % of a core
(measured: sim_world's 15 Hz camera fell to 0.6-3 Hz, in a third of its starts, on an idle machine).

Here a handler still in the queue is skipped when offered again; everything else is rclpy's executor.
"""

from __future__ import annotations

import threading
from typing import Callable

from rclpy.executors import (ConditionReachedException, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, TimeoutException)


class QueueAwareMultiThreadedExecutor(MultiThreadedExecutor):
    """``MultiThreadedExecutor`` that never submits a handler already waiting in its pool (module docstring)."""

    def __init__(self, num_threads: int | None = None, *, context=None):
        super().__init__(num_threads=num_threads, context=context)
        self._queued_lock = threading.Lock()
        self._queued: set = set()  # handlers submitted to the pool and not started yet

    def _run(self, handler) -> None:
        with self._queued_lock:
            self._queued.discard(handler)
        handler()

    def _spin_once_impl(self, timeout_sec=None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        with self._queued_lock:
            if handler in self._queued:
                return  # a pool thread has yet to start it
            self._queued.add(handler)
        self._executor.submit(self._run, handler)
        if handler not in self._futures:  # a coroutine task is offered again at each wake-up while it waits
            self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exception of a callback
