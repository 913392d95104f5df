"""The pick graph without the ROS CLI, one process per node as `ros2 launch` runs it: `roarm-vla run pick --sim`.

Reads the same table as pick.launch.py (graph.py): same nodes, same YAML files in the same order, same
launch-argument overrides. Each Python node runs as its own process: its console script (lib/<package>/<executable>
of the install space; `python -m <module>` where it is not installed) with the command line launch_ros gives it,
`--ros-args -r __node:=<name> --params-file <yaml>... -p <name>:=<value>... -r <from>:=<to>...`.
With sim, the firmware simulator (`roarm-firmware-sim`) is a process too; its pty goes to SIM_PORT_TARGETS.

What launch does, the runner does:
- lifecycle nodes (autostart false) are configured, then activated, through their lifecycle services
  (lifecycle_msgs/srv/ChangeState `<node>/change_state`), as pick.launch.py does with events;
- each process's output is printed with its node name in front: `[arm_driver] ...`;
- a node that exits unexpectedly is reported with its exit code; the graph stops, or the node is started again
  when its NodeSpec says `respawn` (after `respawn_delay`, lifecycle transitions again);
- stop (Ctrl-C, the end of --duration, a failed node): SIGINT to the controllers and other nodes first, then to the
  nodes holding the firmware simulator's port (the driver shuts down against a live serial line: no false
  "serial link lost"), then the simulator; SIGTERM after `grace` seconds, SIGKILL after as long again;
- every child is in its own process group (a terminal's Ctrl-C reaches only the runner, which stops them in
  order) and gets SIGTERM from the kernel if the runner dies (prctl PR_SET_PDEATHSIG): no orphans.

The runner's own process holds one rclpy node for itself (`roarm_vla_monitor`): it counts the graph's topics,
keeps the latest diagnostics of every node, calls the lifecycle and parameter services; callers (the demo, tests)
add helper nodes with create_node(). Different from the launch file, printed at start: the C++ nodes
(robot_state_publisher x2, static_transform_publisher) are not available from pip and are skipped.

Python API (the demo and the tests use it):

    with GraphRunner(load_graph("pick", sim=True, controller="expert")) as runner:
        runner.spin_for(10.0)                       # raises NodeExited if a node died (and is not respawned)
        print(runner.topic_rates(), runner.diagnostics("arm_driver"))
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Callable

from roarm_common.child_process import die_with_parent
from roarm_common.service_call import call_service
from roarm_vla_bringup.graph import (GRAPH_NAMES, RECORD_CONTROLLERS, SIM_PORT_TARGETS, Graph,
                                    NodeInstance, config_path, launch_args, load_graph)

DEFAULT_GRACE_S = 10.0  # SIGINT -> SIGTERM (launch's sigterm_timeout is 5 s; a driver shutdown can take longer)
SERVICE_WAIT_S = 90.0  # a node process importing torch/LeRobot on a loaded 2-core machine
CONFIGURE_TIMEOUT_S = 600.0  # configure loads the policy checkpoint
ANSWER_WAIT_S = 5.0  # a service answer not back by then is taken as lost (state checked, request sent again)


class NodeExited(RuntimeError):
    """A node process of the graph exited while the graph was running."""


def import_attr(path: str) -> Any:
    """'package.module:Attr' -> the attribute."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def message_type(type_name: str):
    """'sensor_msgs/msg/JointState' -> the message class."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


# ------------------------------------------------------------------------------------------------------------------
# Command lines (what launch_ros builds for a Node action)
# ------------------------------------------------------------------------------------------------------------------
def parameter_value_text(value: Any) -> str:
    """A `-p name:=value` value that rcl reads back as the same type: JSON is YAML flow syntax, and a quoted string
    stays a string ('1.0' is not turned into a double, 'true' not into a bool)."""
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def node_ros_args(node: NodeInstance) -> list[str]:
    """`--ros-args ...` for a node process: node name, YAML layers in order, launch-only values and overrides."""
    args = ["--ros-args", "-r", f"__node:={node.name}"]
    for path in node.param_files:
        args += ["--params-file", str(path)]
    values = dict(node.spec.launch_params)
    values.update(node.overrides)
    for name, value in values.items():
        args += ["-p", f"{name}:={parameter_value_text(value)}"]
    for src, dst in node.spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args


def find_executable(package: str, executable: str) -> Path | None:
    """lib/<package>/<executable> in an install prefix of AMENT_PREFIX_PATH (what `ros2 run` and launch start)."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        path = Path(prefix) / "lib" / package / executable
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def node_command(node: NodeInstance) -> list[str]:
    spec = node.spec
    exe = find_executable(spec.package, spec.executable)
    if exe is not None:
        base = [str(exe)]
    else:  # not colcon-built (a bare checkout): the module's main, as its console script would call it
        module = spec.node_class.partition(":")[0]
        base = [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]
    return base + list(spec.arguments) + node_ros_args(node)


def simulator_command(port_file: Path, link: Path, control: Path) -> list[str]:
    exe = find_executable("roarm_driver", "roarm-firmware-sim")
    base = [str(exe)] if exe is not None else [sys.executable, "-m", "roarm_driver.firmware_sim"]
    return base + ["--link", str(link), "--port-file", str(port_file), "--control", str(control)]


def dds_environment() -> dict[str, str]:
    """FASTRTPS_DEFAULT_PROFILES_FILE = config/fastdds.xml (large shared-memory segments: images in one piece; the
    file says why), unless the user chose a profile. The same for pick.launch.py (launch_graph)."""
    if os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return {}
    return {"FASTRTPS_DEFAULT_PROFILES_FILE": str(config_path("fastdds.xml"))}


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(dds_environment())
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the prefixer as they are written
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")
    # The children import the same sources as the runner (a test session puts the packages' sources on sys.path).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


# ------------------------------------------------------------------------------------------------------------------
class ManagedProcess:
    """One child process: started in its own process group, its output prefixed with its name and kept."""

    def __init__(self, name: str, command: list[str], echo: Callable[[str], None], keep_lines: int = 5000):
        self.name = name
        self.command = command
        self.echo = echo
        self.lines: deque[str] = deque(maxlen=keep_lines)
        self.popen: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.expected_exit = False
        self.starts = 0

    def start(self) -> None:
        self.expected_exit = False
        self.starts += 1
        self.popen = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=child_environment(), start_new_session=True,
                                      preexec_fn=die_with_parent, bufsize=0)
        self.reader = threading.Thread(target=self._read, name=f"output_{self.name}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stream = self.popen.stdout
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            self.echo(f"[{self.name}] {line}")
        stream.close()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout=max(0.0, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def output(self) -> str:
        if self.reader is not None and not self.running():
            self.reader.join(timeout=2.0)  # the last lines of a process that has exited
        return "\n".join(self.lines)


def stop_processes(groups: list[list[ManagedProcess]], grace: float, log: Callable[[str], None]) -> None:
    """Stop group after group: SIGINT to the group, SIGTERM after `grace`, SIGKILL after `grace` more."""
    for group in groups:
        live = [p for p in group if p.running()]
        for proc in live:
            proc.expected_exit = True
            proc.signal(signal.SIGINT)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + grace
            for proc in live:
                proc.wait(deadline - time.monotonic())
            live = [p for p in live if p.running()]
            if not live:
                break
            for proc in live:
                log(f"{proc.name} did not stop within {grace:.0f} s: {signal.Signals(sig).name}")
                proc.signal(sig)
        for proc in group:
            proc.wait(grace)
            code = proc.returncode
            if code not in (0, None):
                log(f"{proc.name} exited with code {code} while stopping")


# ------------------------------------------------------------------------------------------------------------------
RATE_WINDOW_S = 60.0  # topic_rates(window) looks back at most this far: older arrival times are not kept


class TopicMonitor:
    """Subscriptions of the runner's node: message counts per topic of the graph, latest diagnostics per node."""

    def __init__(self, node, graph: Graph, log: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        self.node = node
        self.clock = clock
        self.counts: dict[str, int] = defaultdict(int)
        self.stamps: dict[str, deque[float]] = defaultdict(deque)  # arrival times of the last RATE_WINDOW_S
        self.diagnostics: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.since = time.monotonic()  # start of the counting period (reset() restarts it)
        self.skipped: list[str] = []
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        group = ReentrantCallbackGroup()
        for topic in graph.topics:
            try:
                msg_type = message_type(topic.type)
            except (ImportError, AttributeError):
                self.skipped.append(topic.name)
                log(f"note: not counting {topic.name}: message type {topic.type} is not installed")
                continue
            # Best effort subscriptions match reliable and best-effort publishers alike. Counting needs no
            # deserialized message: raw=True hands over the CDR bytes (an image costs a memcpy, not a conversion).
            qos = qos_profile_sensor_data if topic.sensor_qos else best_effort
            callback = (self._on_diagnostics if topic.name == "diagnostics"
                        else (lambda _m, t=topic.name: self._count(t)))
            node.create_subscription(msg_type, topic.name, callback, qos, callback_group=group,
                                     raw=topic.name != "diagnostics")
        if "diagnostics" not in graph.topic_names:
            node.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 50,
                                     callback_group=group)

    def _count(self, topic: str) -> None:
        with self._lock:
            self._arrived(topic)

    def _on_diagnostics(self, msg) -> None:
        with self._lock:
            self._arrived("diagnostics")
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                values["_level"] = str(int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                       else int(status.level))
                values["_message"] = status.message
                values["_stamp"] = f"{msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9:.6f}"
                self.diagnostics[status.name] = values

    def _arrived(self, topic: str) -> None:
        """Count one message (the caller holds the lock); a long run keeps only RATE_WINDOW_S of arrival times."""
        now = self.clock()
        self.counts[topic] += 1
        stamps = self.stamps[topic]
        stamps.append(now)
        while stamps[0] < now - RATE_WINDOW_S:
            stamps.popleft()

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.stamps.clear()
            self.since = time.monotonic()


class GraphRunner:
    """Starts a graph's Python nodes as processes, drives lifecycle transitions, counts topics, stops cleanly."""

    def __init__(self, graph: Graph, log: Callable[[str], None] = print, only: set[str] | None = None,
                 echo: Callable[[str], None] | None = None, grace: float = DEFAULT_GRACE_S):
        """only: start just these Python nodes of the graph (tests, debugging); default all.
        log: the runner's own messages; echo: the children's prefixed output lines (default: log)."""
        self.graph = graph
        self.log = log
        self.echo = echo if echo is not None else log
        self.grace = grace
        self.only = set(only) if only is not None else None
        self.processes: dict[str, ManagedProcess] = {}
        self.simulator: ManagedProcess | None = None
        self.simulator_port: str | None = None
        self.firmware = None  # SimulatorControl: the simulated arm's state and fault injection (tests, benches)
        self.monitor: TopicMonitor | None = None
        self.activated: list[str] = []
        self.failure: str | None = None
        # hook(name) after a respawned node is back (started; active, for a lifecycle node), in the supervisor
        # thread: state a fresh process cannot know (vla/enable) is re-applied there
        self.respawn_hooks: list[Callable[[str], None]] = []
        self._context = None
        self._node = None
        self._executor = None
        self._spin_thread: threading.Thread | None = None
        self._helpers: list = []
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._started = False
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lock = threading.RLock()

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
        self._started = True
        try:
            self._start_ros()
            if self.graph.options.sim:
                self._start_simulator()
            for node in self._python_nodes():
                self._start_node(node)
            for node in self._python_nodes():
                if node.spec.lifecycle:
                    self._activate(node.name)
            self._supervisor = threading.Thread(target=self._supervise, name="runner_supervisor", daemon=True)
            self._supervisor.start()
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

    def _start_ros(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        # Own context, no process arguments (`--set name:=value` must not reach rcl as a global remap rule), no
        # rclpy signal handlers: Ctrl-C is the runner's to handle (it stops the children in order).
        self._context = rclpy.Context()
        rclpy.init(args=["roarm-vla"], context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        self._node = rclpy.create_node("roarm_vla_monitor", context=self._context)
        self.monitor = TopicMonitor(self._node, self.graph, self.log)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spin_thread = threading.Thread(target=self._spin, name="runner_spin", daemon=True)
        self._spin_thread.start()

    def _spin(self) -> None:
        while not self._stopping.is_set() and self._context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except Exception as exc:  # noqa: BLE001 - a shutdown race, or a helper's callback failing
                if self._stopping.is_set() or not self._context.ok():
                    return
                self.log(f"runner executor: {exc!r}")

    def _start_simulator(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="roarm_vla_run_")
        port_file = Path(self._tmp.name) / "port"
        link = Path(self._tmp.name) / "arm"
        control = Path(self._tmp.name) / "control.sock"
        self.simulator = ManagedProcess("firmware_sim", simulator_command(port_file, link, control), self.echo)
        self.simulator.start()
        deadline = time.monotonic() + SERVICE_WAIT_S
        while not port_file.exists():
            if not self.simulator.running():
                raise RuntimeError(f"the firmware simulator exited with code {self.simulator.returncode}:\n"
                                   f"{self.simulator.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the firmware simulator did not write its port within "
                                   f"{SERVICE_WAIT_S:.0f} s")
            time.sleep(0.05)
        self.simulator_port = str(link)
        from roarm_driver.sim_process import SimulatorControl

        self.firmware = SimulatorControl.connect(str(control))
        self.log(f"firmware simulator on {port_file.read_text().strip()} (link {link})")
        for node_name, param in SIM_PORT_TARGETS:
            for node in self.graph.nodes:
                if node.name == node_name:
                    node.overrides[param] = self.simulator_port

    def _start_node(self, node: NodeInstance) -> None:
        proc = self.processes.get(node.name)
        if proc is None:
            proc = ManagedProcess(node.name, node_command(node), self.echo)
            self.processes[node.name] = proc
        proc.start()
        self.log(f"started {node.name} (pid {proc.pid}): {' '.join(proc.command[:1])} ...")

    def _activate(self, name: str) -> None:
        from lifecycle_msgs.msg import Transition

        for transition_id, label, timeout in ((Transition.TRANSITION_CONFIGURE, "configure", CONFIGURE_TIMEOUT_S),
                                              (Transition.TRANSITION_ACTIVATE, "activate", SERVICE_WAIT_S)):
            started = time.monotonic()
            ok = self.change_state(name, transition_id, timeout=timeout)
            if not ok:
                proc = self.processes.get(name)
                errors = [line for line in (proc.lines if proc else ()) if "ERROR" in line]
                why = errors[-1].strip() if errors else f"see [{name}]'s output"
                raise RuntimeError(f"{name}: {label} failed: {why}")
            self.log(f"{name}: {label}d in {time.monotonic() - started:.2f} s")
        if name not in self.activated:
            self.activated.append(name)

    def stop(self) -> None:
        """Stop the graph: non-port nodes, then the nodes holding the simulator's port, then the simulator."""
        if not self._started:
            return
        self._stopping.set()
        with self._lock:
            if self.firmware is not None:
                self.firmware.close()
                self.firmware = None
            self._stop_processes()
            if self._supervisor is not None:
                self._supervisor.join(timeout=2.0)
            if self._spin_thread is not None:
                self._spin_thread.join(timeout=2.0)
            for node in self._helpers + ([self._node] if self._node is not None else []):
                try:
                    node.destroy_node()
                except Exception:  # noqa: BLE001
                    pass
            self._helpers.clear()
            if self._executor is not None:
                self._executor.shutdown(timeout_sec=1.0)
            if self._context is not None:
                import rclpy

                rclpy.try_shutdown(context=self._context)
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
            self.activated.clear()
            self._started = False

    def _stop_processes(self) -> None:
        with self._lock:
            port_holders = {node for node, _ in SIM_PORT_TARGETS}
            procs = list(self.processes.values())
            first = [p for p in reversed(procs) if p.name not in port_holders]
            second = [p for p in reversed(procs) if p.name in port_holders]
            groups = [first, second] + ([[self.simulator]] if self.simulator else [])
            stop_processes([g for g in groups if g], self.grace, self.log)

    # -- supervision -------------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        """Report a node that exits; respawn it (spec.respawn) or stop the graph."""
        while not self._stopping.wait(0.1):
            for name, proc in list(self.processes.items()) + ([("firmware_sim", self.simulator)]
                                                              if self.simulator else []):
                if proc.running() or proc.expected_exit:
                    continue
                code = proc.returncode
                spec = self.graph.node(name).spec if name in self.graph.node_names else None
                if spec is not None and spec.respawn and not self._stopping.is_set():
                    self.log(f"{name} exited with code {code}; respawning in {spec.respawn_delay:.1f} s")
                    if self._stopping.wait(spec.respawn_delay):
                        return
                    try:
                        self._start_node(self.graph.node(name))
                        if spec.lifecycle:
                            self._activate(name)
                    except Exception as exc:  # noqa: BLE001 - reported, then the graph stops
                        self._fail(f"{name} could not be respawned: {exc}")
                        return
                    for hook in list(self.respawn_hooks):
                        try:
                            hook(name)
                        except Exception as exc:  # noqa: BLE001 - a hook's failure must not stop supervision
                            self.log(f"respawn hook for {name} failed: {exc}")
                    continue
                self._fail(f"{name} exited with code {code}")
                return

    def _fail(self, message: str) -> None:
        """A node died: say which, stop the other processes in order (stop() cleans up the runner's own side)."""
        self.failure = message
        self.log(f"{message}; stopping the graph")
        threading.Thread(target=self._stop_processes, name="runner_stop", daemon=True).start()

    def check(self) -> None:
        """Raises NodeExited when a node died (and was not respawned)."""
        if self.failure:
            raise NodeExited(self.failure)

    # -- services ----------------------------------------------------------------------------------------------
    def _call(self, srv_type, name: str, request, timeout: float, attempt_s: float = ANSWER_WAIT_S):
        """Call an idempotent service; the request is sent again when no answer came within attempt_s (a request
        or answer sent before DDS matched both ends of a fresh client is lost, not queued)."""
        client = self._node.create_client(srv_type, name)
        try:
            return call_service(client, request, timeout, resend_after=attempt_s, poll=self.check)
        finally:
            self._node.destroy_client(client)

    def change_state(self, node_name: str, transition_id: int, timeout: float = SERVICE_WAIT_S) -> bool:
        """One lifecycle transition through `<node>/change_state`; True when the node accepted and completed it.

        A transition is not idempotent, so a lost request or answer is not simply sent again: after ANSWER_WAIT_S
        without an answer the node's state (`get_state`) tells whether the transition happened (done), is running
        (wait) or never started (send again)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        start_state, goal_state = {Transition.TRANSITION_CONFIGURE: ("unconfigured", "inactive"),
                                   Transition.TRANSITION_ACTIVATE: ("inactive", "active"),
                                   Transition.TRANSITION_DEACTIVATE: ("active", "inactive"),
                                   Transition.TRANSITION_CLEANUP: ("inactive", "unconfigured")}.get(
            int(transition_id), (None, None))
        request = ChangeState.Request()
        request.transition.id = int(transition_id)
        proc = self.processes.get(node_name)
        deadline = time.monotonic() + timeout
        client = self._node.create_client(ChangeState, f"/{node_name}/change_state")

        def check_alive(what: str) -> None:
            if proc is not None and not proc.running():
                raise NodeExited(f"{node_name} exited with code {proc.returncode} {what}:\n{proc.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node_name}/change_state: no {what} within {timeout:.0f} s")

        try:
            while not client.wait_for_service(timeout_sec=0.2):
                check_alive("before its lifecycle services came up")
            future = client.call_async(request)
            ask_state = time.monotonic() + ANSWER_WAIT_S
            while not future.done():
                check_alive("answer to the transition")
                if goal_state is not None and time.monotonic() > ask_state:
                    state = self.lifecycle_state(node_name, timeout=max(1.0, deadline - time.monotonic()))
                    if state == goal_state:
                        return True  # done; its answer was lost
                    if state == start_state:  # the request was lost: the transition never started
                        client.remove_pending_request(future)
                        future = client.call_async(request)
                    ask_state = time.monotonic() + ANSWER_WAIT_S
                time.sleep(0.02)
            return bool(future.result().success)
        finally:
            self._node.destroy_client(client)

    def lifecycle_state(self, node_name: str, timeout: float = 10.0) -> str:
        """The node's lifecycle state label (`<node>/get_state`), e.g. 'active'."""
        from lifecycle_msgs.srv import GetState

        return self._call(GetState, f"/{node_name}/get_state", GetState.Request(), timeout).current_state.label

    def get_parameters(self, node_name: str, names: list[str], timeout: float = 10.0) -> dict[str, Any]:
        """Parameter values as the node process holds them (`<node>/get_parameters`); absent ones are None."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        reply = self._call(GetParameters, f"/{node_name}/get_parameters", GetParameters.Request(names=list(names)),
                           timeout)
        out = {}
        for name, value in zip(names, reply.values):
            out[name] = None if value.type == 0 else parameter_value_to_python(value)
        return out

    def list_parameters(self, node_name: str, timeout: float = 10.0) -> list[str]:
        from rcl_interfaces.srv import ListParameters

        reply = self._call(ListParameters, f"/{node_name}/list_parameters", ListParameters.Request(), timeout)
        return list(reply.result.names)

    # -- running -----------------------------------------------------------------------------------------------
    def create_node(self, name: str):
        """A plain helper node in the runner's process, spun by the runner's executor thread (the demo's episode
        client, tests); destroyed by stop(). Not a graph node: the graph's composition comes only from graph.py."""
        if not self._started:
            raise RuntimeError("start the runner before creating helper nodes")
        import rclpy

        node = rclpy.create_node(name, context=self._context)
        self._helpers.append(node)
        self._executor.add_node(node)
        return node

    def spin_for(self, seconds: float) -> None:
        """Let the graph run for `seconds`; raises NodeExited as soon as a node died (and is not respawned)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        self.check()

    def wait_for_topic(self, topic: str, count: int = 1, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while self.topic_counts().get(topic, 0) < count:
            if time.monotonic() > end:
                raise TimeoutError(f"fewer than {count} messages on {topic} within {timeout:.0f} s")
            self.spin_for(0.05)

    def output(self, name: str) -> str:
        """Everything a node process (or 'firmware_sim') printed so far."""
        proc = self.simulator if name == "firmware_sim" else self.processes[name]
        return proc.output()

    def diagnostics(self, node_name: str) -> dict[str, str]:
        """The latest diagnostics values published by a node (status name '<node>: ...'); {} before the first."""
        with self.monitor._lock:
            for status_name, values in self.monitor.diagnostics.items():
                if status_name.split(":")[0].strip().lstrip("/") == node_name:
                    return dict(values)
        return {}

    def topic_counts(self) -> dict[str, int]:
        with self.monitor._lock:
            return {t: self.monitor.counts.get(t, 0) for t in self.graph.topic_names}

    def topic_rates(self, window: float | None = None) -> dict[str, float]:
        """Messages per second per topic of the graph: over the last `window` s (at most RATE_WINDOW_S), or since the
        monitor's last reset.

        An average over the period (count / seconds), so a topic that stalls or comes in bursts shows as slow.
        """
        if window is not None and window > RATE_WINDOW_S:
            raise ValueError(f"window {window} s: the monitor keeps {RATE_WINDOW_S} s of arrival times")
        now = time.monotonic()
        out = {}
        with self.monitor._lock:
            period = window if window is not None else now - self.monitor.since
            for topic in self.graph.topic_names:
                if window is None:
                    count = self.monitor.counts.get(topic, 0)
                else:
                    count = sum(1 for t in self.monitor.stamps.get(topic, ()) if t >= now - period)
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
    arg_names = ", ".join(a.name for a in launch_args("record"))
    parser = argparse.ArgumentParser(prog="roarm-vla", description="Run roarm-vla's node graph, one process per node.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a graph, run it for a while, print per-topic rates")
    run.add_argument("graph", choices=GRAPH_NAMES)
    run.add_argument("--sim", action="store_true", help="firmware simulator + sim_world instead of arm and camera")
    run.add_argument("--controller", choices=RECORD_CONTROLLERS, default="policy",
                     help="who drives the arm: policy, expert (scripted_expert, sim only); record graph also "
                          "leader (leader-follower teleop) and hand (hand-guiding)")
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
    print(describe(graph), flush=True)
    # SIGTERM (e.g. from a supervisor) stops the graph like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    runner = GraphRunner(graph, log=lambda m: print(f"[roarm-vla] {m}", flush=True),
                         echo=lambda line: print(line, flush=True), only=set(args.only) if args.only else None)
    status = 0
    elapsed, rates, counts = 0.0, None, {}
    try:
        runner.start()
        runner.monitor.reset()
        started = time.monotonic()
        try:
            runner.spin_for(args.duration if args.duration > 0 else float("inf"))
        except KeyboardInterrupt:
            print("[roarm-vla] stopping (Ctrl-C)", flush=True)
        except NodeExited:
            status = 1
        elapsed = time.monotonic() - started
        rates, counts = runner.topic_rates(), runner.topic_counts()
    except KeyboardInterrupt:
        print("[roarm-vla] stopping (Ctrl-C during start-up)", flush=True)
        status = 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"[roarm-vla] {exc}", flush=True)
        status = 1
    finally:
        runner.stop()
    if rates is not None:
        print(f"\nper-topic rates over {elapsed:.1f} s:")
        print(format_rates(rates, counts, runner.monitor.skipped))
    return status


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


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
