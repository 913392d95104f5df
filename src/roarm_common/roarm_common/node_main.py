"""The console-script body every roarm-vla node shares: init, spin, optional lifecycle start, clean teardown.

Each node module's ``main(args=None)`` is ``run_node(NodeClass, args, ...)``.
- Executor: :func:`executor_threads` reads the node class's ``EXECUTOR_THREADS`` (default 1 =
  SingleThreadedExecutor). A node asks for more only when one of its callbacks waits on another callback of the
  same node (arm_driver's move_joints execute loop, sim_world's reset waiting for the move); rclpy's
  MultiThreadedExecutor busy-waits on the GIL otherwise. The plain-Python runner reads the same attribute.
- ``lifecycle``: a LifecycleNode whose ``autostart`` parameter is true is configured and activated here (a
  standalone run); launch files set autostart false and drive the transitions with events. A failed configure
  ends the process with status 1 instead of spinning an unconfigured node.
"""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def executor_threads(node: Node) -> int:
    """Executor threads a node needs (its class's EXECUTOR_THREADS; 1 = single-threaded)."""
    return int(getattr(node, "EXECUTOR_THREADS", 1))


def run_node(node_factory: Callable[[], Node], args: list[str] | None = None, *, lifecycle: bool = False) -> int:
    """Create the node, (auto)start it, spin until Ctrl-C or shutdown, tear down; returns the exit status."""
    rclpy.init(args=args)
    node = node_factory()
    threads = executor_threads(node)
    executor = SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    try:
        if lifecycle and node.get_parameter("autostart").value:
            from rclpy.lifecycle import TransitionCallbackReturn

            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("configure failed; see the error above")
                return 1
            node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if lifecycle:
            try:
                node.trigger_shutdown()  # deactivate + cleanup: the driver leaves the arm holding, the policy stops
            except Exception:  # noqa: BLE001 - already finalized, or the context is gone
                pass
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
