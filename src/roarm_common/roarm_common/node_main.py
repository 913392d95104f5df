"""The console-script body every roarm-vla node shares: init, spin, optional lifecycle start, clean teardown.

Each node module's ``main(args=None)`` is ``run_node(NodeClass, args, ...)``.
- Executor: :func:`executor_threads` reads the node class's ``EXECUTOR_THREADS`` (default 1 =
  SingleThreadedExecutor). A node asks for more only when one of its callbacks waits on another callback of the
  same node (arm_driver's move_joints execute loop, sim_world's reset waiting for the move), and then gets
  :class:`roarm_common.executors.QueueAwareMultiThreadedExecutor` (rclpy's own can run away into a busy loop:
  that module says how).
- ``lifecycle``: a LifecycleNode whose ``autostart`` parameter is true is configured and activated here (a
  standalone run); launch files and the runner set autostart false and drive the transitions through the node's
  lifecycle services. A failed configure ends the process with status 1 instead of spinning an unconfigured node.

Stopping (SIGINT from a terminal or from launch/the runner, SIGTERM after their grace period): exit status 0 and no
traceback however the signal lands. rclpy's own handlers are not installed, because they (a) raise
KeyboardInterrupt in whatever the main thread runs, and inside rclpy's conversion of a large message that surfaces
as ``RuntimeError: Unable to convert call argument '0' to Python object`` (measured: 3 of 40 stops of an image
subscriber), and (b) shut the context down at once, so a callback still running in an executor thread fails with
"Failed to publish: publisher's context is invalid". Instead, while the node spins, a signal only sets a flag and
wakes the executor; the spin loop ends, the executor drains its running callbacks, the lifecycle node shuts down
(the driver leaves the arm holding), the node is destroyed, and only then the context. Before spinning (rclpy init,
the node's constructor, an autostart configure that loads a model) a signal raises KeyboardInterrupt as usual,
and an exception raised once a stop was requested is a stop, not an error. A second signal during teardown is
ignored: teardown is short and its order matters. A signal while the node module is still importing (before
``main``) is caught by the console script's entry point, roarm_common.entry.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from roarm_common.executors import QueueAwareMultiThreadedExecutor

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DRAIN_TIMEOUT_S = 5.0  # longest wait for running callbacks at teardown (a sim_world reset waits on a move)
SPIN_PERIOD_S = 0.1  # the longest a stop request waits for the spin loop (a signal also wakes the executor)


def executor_threads(node: Node) -> int:
    """Executor threads a node needs (its class's EXECUTOR_THREADS; 1 = single-threaded)."""
    return int(getattr(node, "EXECUTOR_THREADS", 1))


class StopRequest:
    """What the process's SIGINT/SIGTERM handler does, phase by phase (see the module docstring)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name = ""
        self.executor = None  # set while spinning: signals only flag + wake
        self.tearing_down = False

    def handler(self, signum, _frame) -> None:
        first = not self.requested.is_set()
        self.requested.set()
        self.signal_name = self.signal_name or signal.Signals(signum).name
        if self.tearing_down:
            return
        if self.executor is not None:
            self.executor.wake()
            return
        if first:
            raise KeyboardInterrupt  # init phase: abandon the constructor / configure


def run_node(node_factory: Callable[[], Node], args: list[str] | None = None, *, lifecycle: bool = False) -> int:
    """Create the node, (auto)start it, spin until SIGINT/SIGTERM or shutdown, tear down; returns the exit status."""
    stop = StopRequest()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop.handler) for sig in STOP_SIGNALS}
    node = None
    name = "node"
    executor = None
    status = 0
    try:
        try:
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
            node = node_factory()
            name = node.get_name()
            threads = executor_threads(node)
            executor = SingleThreadedExecutor() if threads <= 1 else QueueAwareMultiThreadedExecutor(num_threads=threads)
            executor.add_node(node)
            if lifecycle and node.get_parameter("autostart").value:
                from rclpy.lifecycle import TransitionCallbackReturn

                if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                    node.get_logger().fatal("configure failed; see the error above")
                    status = 1
                    return status
                node.trigger_activate()
            stop.executor = executor
            while not stop.requested.is_set():
                executor.spin_once(timeout_sec=SPIN_PERIOD_S)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            if not stop.requested.is_set():
                raise
            # A stop landed inside rclpy (e.g. while it converted a message): a stop, not a failure.
        finally:
            stop.tearing_down = True
            _teardown(node, executor, lifecycle)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop.requested.is_set():
        print(f"{name}: stopped by {stop.signal_name}", file=sys.stderr, flush=True)
    return status


def _teardown(node, executor, lifecycle: bool) -> None:
    """Executor first (no callback runs afterwards), then the lifecycle shutdown, the node, the context."""
    if executor is not None:
        pool = getattr(executor, "_executor", None)  # MultiThreadedExecutor's ThreadPoolExecutor
        if pool is not None:
            # rclpy's Executor.shutdown() does not wait for callbacks already handed to the pool: let them finish
            # (queued ones too: a cancelled handler coroutine warns "never awaited") against a live context.
            waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
            waiter.start()
            waiter.join(DRAIN_TIMEOUT_S)
        executor.shutdown(timeout_sec=1.0)
    if node is not None:
        if lifecycle:
            try:
                node.trigger_shutdown()  # deactivate + cleanup: the driver leaves the arm holding, the policy stops
            except Exception:  # noqa: BLE001 - never configured, or already finalized
                pass
        try:
            node.destroy_node()
        except Exception:  # noqa: BLE001
            pass
    rclpy.try_shutdown()
