"""The pick graph in ONE Python process, without the ROS CLI: `roarm-vla run pick --sim --duration 20`.

Reads the same table as pick.launch.py (graph.py): same nodes, same YAML files in the same order, same
launch-argument overrides. Each node gets `--ros-args --params-file <yaml> ...` as cli_args (what launch_ros
hands a node process) and its overrides as typed parameter_overrides (what launch_ros writes into its temporary
parameter file). All nodes share one rclpy Context; each node spins in its own executor thread (NodeSpinner).

Differences from the launch file, printed at start:
- C++ nodes (robot_state_publisher x2, static_transform_publisher) are not available from pip: skipped.
- With sim, the firmware simulator runs in this process (roarm_driver.firmware_sim.FirmwareSimulator) and its
  port goes to the graph's SIM_PORT_TARGETS (arm_driver.port).

Python API (engineer C's demo and the tests use it):

    with GraphRunner(load_graph("pick", sim=True, overrides={"task": "Pick up the white box"})) as runner:
        runner.spin_for(10.0)
        print(runner.topic_rates())
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections import defaultdict
from typing import Any, Callable

import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from roarm_common.node_main import executor_threads
from roarm_vla_bringup.graph import GRAPH_NAMES, LAUNCH_ARGS, SIM_PORT_TARGETS, Graph, NodeInstance, load_graph


def import_attr(path: str) -> Any:
    """'package.module:Attr' -> the attribute."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def message_type(type_name: str):
    """'sensor_msgs/msg/JointState' -> the message class."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def node_cli_args(node: NodeInstance) -> list[str]:
    args = ["--ros-args"]
    for path in node.param_files:
        args += ["--params-file", str(path)]
    for src, dst in node.spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args


def node_parameter_overrides(node: NodeInstance) -> list[Parameter]:
    return [Parameter(name, value=value) for name, value in node.overrides.items()]


class TopicMonitor:
    """A node with one counting subscription per topic of the graph: message counts and rates."""

    def __init__(self, graph: Graph, context, log: Callable[[str], None]):
        self.node = Node("roarm_vla_monitor", context=context)
        self.counts: dict[str, int] = defaultdict(int)
        self.stamps: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        self.since = time.monotonic()  # start of the counting period (reset() restarts it)
        self.skipped: list[str] = []
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        # Reentrant: counting holds only a short lock (the monitor spins in a single-threaded executor of its own).
        self._group = ReentrantCallbackGroup()
        for topic in graph.topics:
            try:
                msg_type = message_type(topic.type)
            except (ImportError, AttributeError):
                self.skipped.append(topic.name)
                log(f"note: not counting {topic.name}: message type {topic.type} is not installed")
                continue
            # Best effort subscriptions match reliable and best-effort publishers alike.
            qos = qos_profile_sensor_data if topic.sensor_qos else best_effort
            self.node.create_subscription(msg_type, topic.name, lambda _m, t=topic.name: self._count(t), qos,
                                          callback_group=self._group)

    def _count(self, topic: str) -> None:
        with self._lock:
            self.counts[topic] += 1
            self.stamps[topic].append(time.monotonic())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.stamps.clear()
            self.since = time.monotonic()


class NodeSpinner:
    """One node, its own executor, its own spin thread: what a process of its own is under `ros2 launch`.

    Why not one executor for the whole graph: rclpy's MultiThreadedExecutor busy-waits (holding the GIL) while a
    callback of a busy group is pending, and every executor thread competes for the GIL with the policy's
    inference thread: with one shared 6-thread executor the tiny SmolVLA took > 8 s per chunk instead of 0.05 s
    (measured). A node gets a multi-threaded executor only when one of its callbacks blocks on another callback
    of the same node (the driver's move_joints execute loop, sim_world's reset waiting for the move)."""

    def __init__(self, node: Node, threads: int, context, log: Callable[[str], None]):
        self.node = node
        self.log = log
        self.executor: Executor = (SingleThreadedExecutor(context=context) if threads <= 1
                                   else MultiThreadedExecutor(num_threads=threads, context=context))
        self.executor.add_node(node)
        self._context = context
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"spin_{node.get_name()}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        # Own loop instead of executor.spin(): stop() ends it without destroying the executor, so callbacks
        # already handed to a thread pool can finish against a live executor (see stop()).
        try:
            while not self._stop.is_set() and self._context.ok():
                self.executor.spin_once(timeout_sec=0.1)
        except Exception as exc:  # shutdown races are not errors; anything else is reported
            if self._context.ok() and not self._stop.is_set():
                self.log(f"{self.node.get_name()}: executor stopped: {exc!r}")

    def stop(self, timeout: float = 5.0) -> None:
        """No callback is dispatched after this returns (rclpy's Executor.shutdown() does not wait for dispatched
        callbacks and destroys the guard condition they trigger on their way out: stop the loop, drain the pool,
        then shut the executor down)."""
        self._stop.set()
        self.thread.join(timeout=timeout)
        if self.thread.is_alive():
            self.log(f"warning: the executor thread of {self.node.get_name()} did not stop within {timeout:.0f} s")
        pool = getattr(self.executor, "_executor", None)  # MultiThreadedExecutor's ThreadPoolExecutor
        if pool is not None:
            # queued handlers run too (not cancelled: an unstarted handler coroutine warns "never awaited")
            waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
            waiter.start()
            waiter.join(timeout)
            if waiter.is_alive():  # e.g. a sim_world reset waiting for a move that can no longer run
                self.log(f"warning: callbacks of {self.node.get_name()} still running after {timeout:.0f} s")
        self.executor.shutdown(timeout_sec=1.0)


class GraphRunner:
    """Starts a graph's Python nodes in this process, drives lifecycle transitions, counts topics, stops cleanly."""

    # One process holds what `ros2 launch` spreads over processes, so every node shares one GIL: the switch
    # interval is shortened while the graph runs (node_main.SHARED_PROCESS_SWITCH_INTERVAL_S, which says why),
    # restored by stop(). Executor threads per node: node_main.executor_threads, as in the nodes' console scripts.

    def __init__(self, graph: Graph, log: Callable[[str], None] = print, only: set[str] | None = None):
        """only: start just these Python nodes of the graph (tests, debugging); default all."""
        self.graph = graph
        self.log = log
        self.only = set(only) if only is not None else None
        self.context = rclpy.Context()
        self.nodes: dict[str, Node] = {}
        self.simulator = None
        self.monitor: TopicMonitor | None = None
        self.spinners: list[NodeSpinner] = []
        self._saved_switch_interval: float | None = None
        self._helpers: list[Node] = []
        self._started = False
        self.activated: list[str] = []

    # -- start / stop ------------------------------------------------------------------------------------------
    def __enter__(self) -> "GraphRunner":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for note in self.graph.notes:
            self.log(f"note: {note}")
        for node in self.graph.nodes:
            if not node.spec.node_class:
                self.log(f"note: skipping {node.name} ({node.spec.package}/{node.spec.executable} is C++, "
                         "not available from pip; pick.launch.py starts it)")
        # Own context, no process arguments: `--set name:=value` must not reach rcl as a global remap rule.
        rclpy.init(args=["roarm-vla"], context=self.context)
        self._started = True
        try:
            if self.graph.options.sim:
                self._start_simulator()
            for node in self._python_nodes():
                cls = import_attr(node.spec.node_class)
                instance = cls(node_name=node.name, context=self.context, cli_args=node_cli_args(node),
                               parameter_overrides=node_parameter_overrides(node))
                self.nodes[node.name] = instance
                self._spin(instance)
            self.monitor = TopicMonitor(self.graph, self.context, self.log)
            self._spin(self.monitor.node)
            for node in self._python_nodes():
                if node.spec.lifecycle:
                    self._transition(node.name, "configure")
                    self._transition(node.name, "activate")
                    self.activated.append(node.name)
        except BaseException:
            self.stop()
            raise

    def _python_nodes(self) -> list[NodeInstance]:
        if self.only is None:
            return self.graph.python_nodes
        unknown = self.only - set(self.graph.node_names)
        if unknown:
            raise ValueError(f"only={sorted(unknown)}: not nodes of this graph ({self.graph.node_names})")
        return [n for n in self.graph.python_nodes if n.name in self.only]

    def _start_simulator(self) -> None:
        from roarm_driver.firmware_sim import FirmwareSimulator

        self.simulator = FirmwareSimulator()
        port = self.simulator.start()
        self.log(f"firmware simulator on {port}")
        for node_name, param in SIM_PORT_TARGETS:
            for node in self.graph.nodes:
                if node.name == node_name:
                    node.overrides[param] = port

    def _spin(self, node: Node) -> None:
        self.spinners.append(NodeSpinner(node, executor_threads(node), self.context, self.log))

    def _transition(self, name: str, transition: str) -> None:
        from rclpy.lifecycle import TransitionCallbackReturn

        node = self.nodes[name]
        started = time.monotonic()
        result = getattr(node, f"trigger_{transition}")()
        if result != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"{name}: {transition} failed ({result}); see the node's log above")
        self.log(f"{name}: {transition}d in {time.monotonic() - started:.2f} s")

    def stop(self) -> None:
        if not self._started:
            return
        # Order matters: first no callback may be dispatched any more (every executor stopped, its spin thread
        # joined), then the lifecycle nodes deactivate and clean up (direct calls; cleanup destroys the driver's
        # timers, subscription and services), then the nodes go, then the context. Destroying entities under a
        # spinning executor left dispatched tasks failing with "cannot use Destroyable because destruction was
        # requested", printed at exit as never-retrieved exceptions.
        for spinner in self.spinners:
            spinner.stop()
        self.spinners.clear()
        for name in reversed(self.activated):
            node = self.nodes.get(name)
            try:
                node.trigger_deactivate()
                node.trigger_cleanup()
            except Exception as exc:  # keep shutting the rest down
                self.log(f"{name}: deactivate/cleanup failed: {exc!r}")
        self.activated.clear()
        for node in list(self.nodes.values()) + self._helpers + ([self.monitor.node] if self.monitor else []):
            try:
                node.destroy_node()
            except Exception as exc:
                self.log(f"destroying {node.get_name()} failed: {exc!r}")
        self.nodes.clear()
        self._helpers.clear()
        rclpy.try_shutdown(context=self.context)
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        self._started = False

    # -- running -----------------------------------------------------------------------------------------------
    def create_node(self, name: str) -> Node:
        """A plain helper node in the graph's context and executor (clients of the demo, tests); destroyed by
        stop(). Not a graph node: the graph's composition comes only from graph.py."""
        if not self._started:
            raise RuntimeError("start the runner before creating helper nodes")
        node = Node(name, context=self.context)
        self._helpers.append(node)
        self._spin(node)
        return node

    def spin_for(self, seconds: float) -> None:
        """Let the graph run for `seconds` (each node's executor spins in its own thread)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.context.ok():
            dead = [sp.node.get_name() for sp in self.spinners if not sp.thread.is_alive()]
            if dead:
                raise RuntimeError(f"the executor thread of {dead} died; see the log above")
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def topic_counts(self) -> dict[str, int]:
        return {t: self.monitor.counts.get(t, 0) for t in self.graph.topic_names}

    def topic_rates(self, window: float | None = None) -> dict[str, float]:
        """Messages per second per topic of the graph: over the last `window` s, or since the monitor's last reset.

        An average over the period (count / seconds), so a topic that stalls or comes in bursts shows as slow.
        """
        now = time.monotonic()
        out = {}
        with self.monitor._lock:
            period = window if window is not None else now - self.monitor.since
            for topic in self.graph.topic_names:
                stamps = self.monitor.stamps.get(topic, [])
                count = sum(1 for t in stamps if t >= now - period)
                out[topic] = count / period if period > 0 else 0.0
        return out


# ------------------------------------------------------------------------------------------------------------------
def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition(":=")
        if not sep:
            key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes NAME:=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def format_rates(rates: dict[str, float], counts: dict[str, int], not_counted: list[str] = ()) -> str:
    width = max(len(t) for t in rates)
    lines = [f"{'topic'.ljust(width)}  {'Hz':>8}  {'messages':>8}"]
    for topic in rates:
        if topic in not_counted:
            lines.append(f"{topic.ljust(width)}  {'n/a':>8}  {'n/a':>8}  (message type not installed)")
        else:
            lines.append(f"{topic.ljust(width)}  {rates[topic]:8.2f}  {counts.get(topic, 0):8d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    arg_names = ", ".join(a.name for a in LAUNCH_ARGS)
    parser = argparse.ArgumentParser(prog="roarm-vla", description="Run roarm-vla's node graph in one process.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a graph, run it for a while, print per-topic rates")
    run.add_argument("graph", choices=GRAPH_NAMES)
    run.add_argument("--sim", action="store_true", help="firmware simulator + sim_world instead of arm and camera")
    run.add_argument("--controller", choices=("policy", "expert"), default="policy",
                     help="who drives the arm (expert = scripted_expert, sim only)")
    run.add_argument("--duration", type=float, default=20.0, help="seconds to run (0 = until Ctrl-C)")
    run.add_argument("--only", action="append", default=None, metavar="NODE",
                     help="start only these nodes of the graph (repeatable; default all)")
    run.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                     help=f"launch argument ({arg_names}) or any <node>.<param>; repeatable")
    sub.add_parser("show", help="print the graph (nodes, parameter files, overrides, topics) without running it") \
        .add_argument("graph", choices=GRAPH_NAMES)
    args, _ = parser.parse_known_args(argv)
    if args.command == "show":
        print(describe(load_graph(args.graph)))
        return 0
    graph = load_graph(args.graph, sim=args.sim, controller=args.controller, overrides=parse_sets(args.set))
    print(describe(graph))
    with GraphRunner(graph, only=set(args.only) if args.only else None) as runner:
        runner.monitor.reset()
        started = time.monotonic()
        try:
            runner.spin_for(args.duration if args.duration > 0 else float("inf"))
        except KeyboardInterrupt:
            pass
        elapsed = time.monotonic() - started
        rates, counts, not_counted = runner.topic_rates(), runner.topic_counts(), runner.monitor.skipped
    print(f"\nper-topic rates over {elapsed:.1f} s:")
    print(format_rates(rates, counts, not_counted))
    return 0


def describe(graph: Graph) -> str:
    lines = [f"graph {graph.name}: sim={graph.options.sim} controller={graph.options.controller}"]
    for node in graph.nodes:
        kind = "lifecycle " if node.spec.lifecycle else ""
        where = node.spec.node_class or f"{node.spec.package}/{node.spec.executable} (launch only)"
        files = ", ".join(p.name for p in node.param_files) or "-"
        lines.append(f"  {kind}{node.name}: {where}; params {files}; overrides {node.overrides or '-'}")
    lines.append("  topics: " + ", ".join(graph.topic_names))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
