#!/usr/bin/env python3
"""Reliability soak (issue 12): the simulated pick graph with a learned policy for --minutes while faults are
injected; does every fault recover, does anything crash, does memory grow?

The graph is graph.py's `pick` sim graph with vla_policy (firmware simulator, arm_driver, sim_world, vla_policy,
action_visualizer; one process per node under GraphRunner, as `make demo` runs it). Episodes run back to back
(vla/enable false, sim/reset_episode, vla/enable true, sim/episode_outcome) on seeds --seed, --seed + 1, ...
Warm-up: the first episode and at least --warmup-s seconds (the firmware simulator's command log, a deque of the
last 2000 commands that tests read, fills in the first minute or so: its RSS rises by ~5 MB, then stays). After it, when --fault-period seconds have passed since
the last fault, the next fault of the cycle is injected one second into an episode, while the policy drives, and
recovery is checked within --recovery-s. "Recovered" per fault:

  garbage     runner.firmware.inject_garbage(64): 64 bytes of noise on the serial line.
              -> >= 10 new joint_states and arm_driver's diagnostics say connected.
  drop        runner.firmware.drop_replies(5): five feedback lines never sent.
              -> as garbage.
  disconnect  runner.firmware.disconnect(), 1 s unplugged, reconnect().
              -> arm_driver's diagnostics count one more disconnect and say connected, >= 10 new joint_states.
  camera      sim_world's fault-injection parameter fault_camera_dropout_s := --dropout-s (no images for that long).
              -> >= 5 new images after the drop-out, and vla_policy publishes plans again (vla/predicted_trajectory).
              Also recorded: whether vla_policy held (diagnostics hold_reason naming the stale/missing image).
  kill:NODE   SIGKILL to NODE's process (--kill-nodes; this run gives those nodes respawn=True, as launch's
              respawn=True; graph.py is unchanged). The runner starts it again and drives its lifecycle.
              -> a new pid runs, its lifecycle (if any) is active, and its output flows again (vla_policy: plans;
              action_visualizer: vla/markers).
  nan         vla_policy is swapped, through its lifecycle (deactivate, cleanup, checkpoint := a copy of the
              checkpoint whose action_out_proj weights are NaN, configure, activate), to a policy that returns
              NaN chunks for --nan-s seconds, then swapped back the same way.
              -> while NaN: the node rejected >= 1 chunk (diagnostics rejected_nonfinite_chunks), published no plan,
              said "NaN" in its diagnostics message; after: plans again. Throughout the run every joint_trajectory
              and vla/action_chunk message is checked finite (nonfinite_published must stay 0).

Messages lost after recovery: for joint_states and camera/image_raw, what the topic is short of in the
--lost-window-s seconds after recovery against its rate in the same window before the fault (soak_metrics).

Crashes: a node process (or the firmware simulator) that exited other than by an injected kill: the runner's
NodeExited, or a respawn no kill explains. Control ticks: arm_driver's diagnostics counters over the run
(plan_exhausted_ticks = ticks with no plan left, setpoints_lost, watchdog_trips, bad_feedback, disconnects) and
the command ticks missed on the wire, from the gaps between the T:102 writes the firmware read (soak_metrics;
the driver itself has no late-tick counter). RSS per process (VmRSS) every 5 s after the warm-up; growth per pid,
over the whole run and over its second half (a respawned process's baseline is its first sample once it runs
again); rss_growth_max_pct is over the graph's processes and the simulator, not this process (soak_runner).

Usage: cd /work/main && source scripts/env.sh && ROS_DOMAIN_ID=52 python bench/soak.py --minutes 10
       [--checkpoint outputs/pick/fit/checkpoints/last/pretrained_model | --tiny] [--fault-period 20]
Ends with one JSON line: crashes, faults_injected, faults_recovered, episodes, rss_growth_max_pct, ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for package in ("roarm_common", "roarm_description", "roarm_driver", "roarm_sim", "roarm_vla_bringup",
                "vla_policy_node"):
    sys.path.insert(0, str(ROOT / "src" / package))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))

from roarm_common.service_call import call_service  # noqa: E402
from soak_metrics import RssTracker, WriteGapCounter, messages_lost, rss_kb, unexpected_starts  # noqa: E402

DRIVER_COUNTERS = ("plan_exhausted_ticks", "setpoints_sent", "setpoints_lost", "watchdog_trips", "bad_feedback",
                   "disconnects", "stream_restarts", "feedback_rerequests")
LOST_TOPICS = ("joint_states", "camera/image_raw")
STALE_IMAGE_WORDS = ("image stale", "no image")


def nan_checkpoint(checkpoint: Path, out: Path) -> Path:
    """A copy of `checkpoint` whose action output projection is NaN: every chunk the policy returns is NaN."""
    import torch
    from safetensors.torch import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(checkpoint, out)
    weights = load_file(str(out / "model.safetensors"))
    key = "model.action_out_proj.weight"
    if key not in weights:
        raise SystemExit(f"{checkpoint}: no {key} to poison (not a SmolVLA checkpoint?)")
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, str(out / "model.safetensors"))
    return out


def finite_message(msg) -> bool:
    """All positions of a JointTrajectory or ActionChunk are finite."""
    if hasattr(msg, "points"):
        return all(math.isfinite(v) for p in msg.points for v in p.positions)
    return all(math.isfinite(v) for v in msg.positions)


class Soak:
    """The soak's side of the graph: a helper node (episodes, vla/enable, set_parameters, plan and finiteness
    checks), the samplers, and one method per fault that injects it and waits for the recovery."""

    def __init__(self, args, runner, graph, log) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rcl_interfaces.srv import SetParameters
        from std_srvs.srv import SetBool
        from trajectory_msgs.msg import JointTrajectory

        from roarm_interfaces.msg import ActionChunk
        from roarm_sim.episode_client import EpisodeClient

        self.args, self.runner, self.graph, self.log = args, runner, graph, log
        self.helper = runner.create_node("roarm_vla_soak")
        self.episodes = EpisodeClient(self.helper)
        self.enable = self.helper.create_client(SetBool, "vla/enable")
        self.set_params = {name: self.helper.create_client(SetParameters, f"{name}/set_parameters")
                           for name in ("sim_world", "vla_policy")}
        self.plans = 0  # vla/predicted_trajectory messages (plans only; holds go to joint_trajectory alone)
        self.nonfinite = 0
        self.checked = 0
        self._lock = threading.Lock()
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.helper.create_subscription(JointTrajectory, "vla/predicted_trajectory", self._on_plan, qos)
        self.helper.create_subscription(JointTrajectory, "joint_trajectory", self._check, qos)
        self.helper.create_subscription(ActionChunk, "vla/action_chunk", self._check, qos)
        self.kills: dict[str, int] = {}
        self.rss = RssTracker()
        period = 1.0 / float(graph.node("arm_driver").parameters().get("command_rate", 50.0))
        self.wire = WriteGapCounter(period, idle_gap_s=0.5)
        self.results: list[dict] = []
        self.checkpoint = str(graph.node("vla_policy").overrides["checkpoint"])
        self.nan_path: Path | None = None  # set by main() when the cycle has a nan fault

    # -- observation ---------------------------------------------------------------------------------------
    def _on_plan(self, msg) -> None:
        with self._lock:
            self.plans += 1
        self._check(msg)

    def _check(self, msg) -> None:
        ok = finite_message(msg)
        with self._lock:
            self.checked += 1
            self.nonfinite += int(not ok)

    def plan_count(self) -> int:
        with self._lock:
            return self.plans

    def sample(self, rss: bool = True) -> None:
        """T:102 write times from the firmware; RSS of every node process, the simulator and this process."""
        firmware = self.runner.firmware
        if firmware is not None:
            try:
                commands = firmware.received_commands()
            except (RuntimeError, OSError):
                commands = []
            self.wire.feed([t for t, m in commands if m.get("T") == 102])
        if not rss:
            return
        now = time.monotonic()
        procs = dict(self.runner.processes)
        if self.runner.simulator is not None:
            procs["firmware_sim"] = self.runner.simulator
        for name, proc in procs.items():
            if proc.running():
                self.rss.record(name, proc.pid, rss_kb(proc.pid), now)
        self.rss.record("soak_runner", os.getpid(), rss_kb(os.getpid()), now)

    def policy_rss_mb(self) -> float | None:
        kb = rss_kb(self.runner.processes["vla_policy"].pid)
        return round(kb / 1024.0, 1) if kb else None

    def driver_counters(self) -> dict[str, int]:
        diag = self.runner.diagnostics("arm_driver")
        return {k: int(float(diag.get(k, 0) or 0)) for k in DRIVER_COUNTERS}

    def flowing(self, topic: str, since: dict[str, int], count: int) -> bool:
        return self.runner.topic_counts().get(topic, 0) - since.get(topic, 0) >= count

    def wait_until(self, predicate, timeout: float, step: float = 0.1) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.runner.spin_for(step)
        return bool(predicate())

    # -- services ------------------------------------------------------------------------------------------
    def call(self, client, request, timeout: float = 10.0):
        """A service call from this thread (the runner's executor spins the helper); None when no answer."""
        try:
            return call_service(client, request, timeout)
        except TimeoutError:
            return None

    def set_enabled(self, value: bool) -> bool:
        from std_srvs.srv import SetBool

        return self.call(self.enable, SetBool.Request(data=value), timeout=5.0) is not None

    def set_parameter(self, node: str, name: str, value) -> str:
        """'' when the node took the value, else why not."""
        from rclpy.parameter import Parameter
        from rcl_interfaces.srv import SetParameters

        reply = self.call(self.set_params[node],
                          SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
        if reply is None:
            return f"{node}/set_parameters did not answer"
        result = reply.results[0]
        return "" if result.successful else result.reason

    def swap_checkpoint(self, path: str) -> str:
        """vla_policy to another checkpoint through its lifecycle; '' when active again, else what failed."""
        from lifecycle_msgs.msg import Transition

        runner = self.runner
        if not runner.change_state("vla_policy", Transition.TRANSITION_DEACTIVATE):
            return "deactivate failed"
        if not runner.change_state("vla_policy", Transition.TRANSITION_CLEANUP):
            return "cleanup failed"
        why = self.set_parameter("vla_policy", "checkpoint", path)
        if why:
            return f"set checkpoint: {why}"
        if not runner.change_state("vla_policy", Transition.TRANSITION_CONFIGURE, timeout=600.0):
            return "configure failed"
        if not runner.change_state("vla_policy", Transition.TRANSITION_ACTIVATE):
            return "activate failed"
        return ""

    # -- faults --------------------------------------------------------------------------------------------
    def inject(self, fault: str) -> dict:
        """Inject one fault, wait for recovery; the record of what happened."""
        args, runner = self.args, self.runner
        record: dict = {"fault": fault, "t_s": None, "recovered": False}
        # The runner's counting restarted at this episode's start: the rate over what it has, up to the window.
        rates_before = runner.topic_rates(window=min(args.lost_window_s, time.monotonic() - runner.monitor.since))
        started = time.monotonic()
        detail = ""
        recovered_at = None
        if fault in ("garbage", "drop", "disconnect"):
            disconnects = self.driver_counters()["disconnects"]
            if fault == "garbage":
                runner.firmware.inject_garbage(64)
            elif fault == "drop":
                runner.firmware.drop_replies(5)
            else:
                runner.firmware.disconnect()
                runner.spin_for(1.0)
                runner.firmware.reconnect()
            since = runner.topic_counts()

            def back() -> bool:
                diag = runner.diagnostics("arm_driver")
                if fault == "disconnect" and int(float(diag.get("disconnects", 0) or 0)) <= disconnects:
                    return False  # the driver has not yet seen the unplug (diagnostics are 1 Hz)
                return (str(diag.get("connected", "")).lower() == "true"
                        and self.flowing("joint_states", since, 10))
            ok = self.wait_until(back, args.recovery_s)
        elif fault == "camera":
            why = self.set_parameter("sim_world", "fault_camera_dropout_s", float(args.dropout_s))
            if why:
                raise RuntimeError(f"camera drop-out refused: {why}")
            held = False
            end = time.monotonic() + args.dropout_s
            while time.monotonic() < end:  # while the camera is off: did the policy say why it holds?
                reason = runner.diagnostics("vla_policy").get("hold_reason", "")
                held = held or any(w in reason for w in STALE_IMAGE_WORDS)
                runner.spin_for(0.2)
            record["policy_held"] = held
            since, plans = runner.topic_counts(), self.plan_count()
            ok = self.wait_until(lambda: self.flowing("camera/image_raw", since, 5) and self.plan_count() > plans,
                                 args.recovery_s)
        elif fault.startswith("kill:"):
            name = fault.split(":", 1)[1]
            proc = runner.processes[name]
            old_pid = proc.pid
            self.kills[name] = self.kills.get(name, 0) + 1
            proc.signal(signal.SIGKILL)
            spec = self.graph.node(name).spec
            output_topic = "vla/markers" if name == "action_visualizer" else None

            def respawned() -> bool:
                if not proc.running() or proc.pid == old_pid:
                    return False
                try:
                    return not spec.lifecycle or runner.lifecycle_state(name, timeout=5.0) == "active"
                except TimeoutError:  # its services are not up yet (the process is still importing)
                    return False
            ok = self.wait_until(respawned, args.recovery_s + spec.respawn_delay + 60.0, step=0.5)
            if ok:
                since, plans = runner.topic_counts(), self.plan_count()
                if output_topic:
                    ok = self.wait_until(lambda: self.flowing(output_topic, since, 1), args.recovery_s)
                else:
                    ok = self.wait_until(lambda: self.plan_count() > plans, args.recovery_s)
            record["new_pid"] = proc.pid
            self.rss.rebase(name)  # the new process's baseline: its next sample, now that it runs
        elif fault == "nan":
            rss_mb = [self.policy_rss_mb()]
            why = self.swap_checkpoint(str(self.nan_path))
            if why:
                raise RuntimeError(f"swap to the NaN checkpoint: {why}")
            swapped = time.monotonic()
            plans = self.plan_count()

            def rejected() -> int:
                return int(runner.diagnostics("vla_policy").get("rejected_nonfinite_chunks", 0) or 0)
            self.wait_until(lambda: rejected() >= 1 and time.monotonic() - swapped >= args.nan_s, args.nan_s + 30.0)
            message = runner.diagnostics("vla_policy").get("_message", "")
            record.update(nan_rejected=rejected(), nan_plans=self.plan_count() - plans,
                          nan_reported="NaN" in message)
            rss_mb.append(self.policy_rss_mb())
            why = self.swap_checkpoint(self.checkpoint)
            if why:
                raise RuntimeError(f"swap back to the checkpoint: {why}")
            rss_mb.append(self.policy_rss_mb())
            record["vla_policy_rss_mb"] = rss_mb  # before, with the NaN policy, after the swap back
            plans = self.plan_count()
            ok = (self.wait_until(lambda: self.plan_count() > plans, args.recovery_s)
                  and record["nan_rejected"] >= 1 and record["nan_plans"] == 0 and record["nan_reported"])
            if not ok:
                detail = (f"rejected {record['nan_rejected']}, plans while NaN {record['nan_plans']}, "
                          f"diagnostics message {message!r}")
        else:
            raise ValueError(f"unknown fault {fault}")
        recovered_at = time.monotonic()
        record["recovered"] = bool(ok)
        record["t_s"] = round(recovered_at - started, 2)
        if detail:
            record["detail"] = detail
        if ok:  # what the graph delivers in the window after recovery, against the same window before the fault
            counts = runner.topic_counts()
            runner.spin_for(args.lost_window_s)
            after = runner.topic_counts()
            record["lost"] = {t: messages_lost(rates_before.get(t, 0.0), args.lost_window_s,
                                               after.get(t, 0) - counts.get(t, 0)) for t in LOST_TOPICS}
        return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--checkpoint", type=Path,
                        default=ROOT / "outputs/pick/fit/checkpoints/last/pretrained_model",
                        help="policy checkpoint (default: make demo's)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random SmolVLA instead (plumbing only)")
    parser.add_argument("--fault-period", type=float, default=20.0, help="s from one fault to the next")
    parser.add_argument("--faults", default="garbage,camera,kill:action_visualizer,drop,nan,disconnect,"
                        "kill:vla_policy", help="the cycle of faults, comma-separated")
    parser.add_argument("--recovery-s", type=float, default=20.0, help="s a fault has to recover")
    parser.add_argument("--dropout-s", type=float, default=3.0, help="camera drop-out length, s")
    parser.add_argument("--nan-s", type=float, default=5.0, help="s the NaN policy stays in")
    parser.add_argument("--lost-window-s", type=float, default=5.0, help="window for messages lost, s")
    parser.add_argument("--warmup-s", type=float, default=90.0,
                        help="no fault and no RSS baseline before the first episode ended and this long has passed")
    parser.add_argument("--time-limit", type=float, default=15.0, help="episode time limit, s")
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE", help="graph override")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]

    from roarm_vla_bringup.demo import demo_overrides
    from roarm_vla_bringup.graph import load_graph
    from roarm_vla_bringup.runner import GraphRunner, NodeExited

    checkpoint = args.checkpoint
    if args.tiny:
        from roarm_training.small_smolvla import build_tiny_checkpoint

        checkpoint = Path("/tmp/roarm_soak_tiny")
        if not (checkpoint / "config.json").exists():
            build_tiny_checkpoint(checkpoint)
    checkpoint = checkpoint.resolve()
    if not (checkpoint / "config.json").is_file():
        parser.error(f"no checkpoint at {checkpoint}: run `make demo` first, or pass --checkpoint / --tiny")
    nan_path = None
    if "nan" in faults:  # built before the graph starts (torch import, file writes: not inside the measurement)
        nan_path = nan_checkpoint(checkpoint, Path(f"/tmp/roarm_soak_nan_{os.getpid()}"))
    demo_args = argparse.Namespace(time_limit=args.time_limit, camera_rate=None, set=list(args.set))
    graph = load_graph("pick", sim=True, controller="policy", overrides=demo_overrides(demo_args, checkpoint))
    for name in {f.split(":", 1)[1] for f in faults if f.startswith("kill:")}:
        node = graph.node(name)  # this run only: killed nodes are respawned, as launch's respawn=True
        node.spec = dataclasses.replace(node.spec, respawn=True, respawn_delay=1.0)

    started = time.monotonic()
    deadline = started + args.minutes * 60.0

    def log(message: str) -> None:
        print(f"[soak {time.monotonic() - started:6.1f} s] {message}", flush=True)

    print(f"soak: checkpoint {checkpoint}, {args.minutes:g} min, faults {faults} every {args.fault_period:g} s, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    stats = {"episodes": 0, "successes": 0, "reset_failures": 0, "no_outcome": 0, "crash_detail": ""}
    crashes = 0
    load_start = os.getloadavg()[0]
    with GraphRunner(graph, log=lambda m: log(f"[runner] {m}"), echo=lambda _line: None) as runner:
        soak = Soak(args, runner, graph, log)
        soak.nan_path = nan_path
        runner.wait_for_topic("joint_states", count=5, timeout=60.0)
        stop = threading.Event()
        warm = threading.Event()

        def sampler() -> None:
            while not stop.wait(5.0):
                # From the start, not only after the warm-up: the simulator's first answers with its whole
                # command log (up to 2000 commands as JSON) raise its RSS once; that belongs before the baseline.
                try:
                    soak.sample(rss=warm.is_set())
                except Exception as exc:  # noqa: BLE001 - a sample lost is reported, the soak goes on
                    log(f"sample: {exc!r}")

        thread = threading.Thread(target=sampler, name="soak_sampler", daemon=True)
        thread.start()
        counters_start: dict[str, int] = {}
        next_fault = 0
        last_fault_at = -math.inf
        seed = args.seed
        try:
            while time.monotonic() < deadline:
                # Counting restarts per episode: counts are compared only within one fault.
                runner.monitor.reset()
                if not soak.set_enabled(False):
                    log("vla/enable did not answer (policy restarting?)")
                try:
                    reply = soak.episodes.reset(seed, timeout=60.0)
                except RuntimeError as exc:
                    stats["reset_failures"] += 1
                    log(f"reset seed {seed}: {exc}")
                    seed += 1
                    runner.spin_for(1.0)
                    continue
                soak.set_enabled(True)
                if warm.is_set() and time.monotonic() - last_fault_at >= args.fault_period:
                    fault = faults[next_fault % len(faults)]
                    next_fault += 1
                    runner.spin_for(1.0)  # into the episode: the policy is driving
                    try:
                        record = soak.inject(fault)
                    except NodeExited:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a failed injection is a result (not recovered)
                        record = {"fault": fault, "recovered": False, "detail": repr(exc)[:300]}
                    soak.results.append(record)
                    last_fault_at = time.monotonic()
                    log(f"fault {fault}: {'recovered' if record['recovered'] else 'NOT recovered'} {record}")
                try:
                    outcome = soak.episodes.wait_for_outcome(reply.episode_index, timeout=args.time_limit + 30.0)
                except TimeoutError:
                    stats["no_outcome"] += 1
                    log(f"episode {reply.episode_index}: no outcome")
                    runner.check()
                    continue
                stats["episodes"] += 1
                stats["successes"] += int(outcome.status == 1)
                log(f"episode {reply.episode_index} seed {seed}: status {outcome.status} after "
                    f"{outcome.elapsed:.1f} s")
                seed += 1
                if not warm.is_set() and time.monotonic() - started >= args.warmup_s:
                    warm.set()
                    soak.sample()
                    counters_start = soak.driver_counters()
                runner.check()
        except NodeExited as exc:
            crashes += 1
            stats["crash_detail"] = str(exc)[:300]
            log(f"crash: {exc}")
        finally:
            stop.set()
            thread.join(timeout=10.0)
        soak.sample()
        counters_end = soak.driver_counters()
        respawned = {name: unexpected_starts(proc.starts, soak.kills.get(name, 0))
                     for name, proc in runner.processes.items()}
        crashes += sum(respawned.values())
        tracebacks = [name for name, proc in runner.processes.items() if "Traceback" in proc.output()]
    load_end = os.getloadavg()[0]

    growth = soak.rss.growth_pct()
    late_growth = soak.rss.growth_pct(late=True)
    graph_growth = {k: v for k, v in growth.items() if k != "soak_runner"}
    recovered = [r for r in soak.results if r["recovered"]]
    lost = {t: sum(r.get("lost", {}).get(t, 0) for r in soak.results) for t in LOST_TOPICS}
    by_fault: dict[str, list[int]] = {}
    for r in soak.results:
        by_fault.setdefault(r["fault"], [0, 0])
        by_fault[r["fault"]][0] += 1
        by_fault[r["fault"]][1] += int(r["recovered"])
    print("\nfault                      injected  recovered  worst recovery s")
    for fault, (n, ok) in by_fault.items():
        worst = max((r["t_s"] or 0.0) for r in soak.results if r["fault"] == fault)
        print(f"{fault:26s} {n:8d}  {ok:9d}  {worst:8.1f}")
    print("process            start MB   end MB  growth %  second half %")
    for name, row in soak.rss.table().items():
        print(f"{name:18s} {row['start_mb']:8.1f} {row['end_mb']:8.1f} {growth.get(name, 0.0):9.2f}"
              f"  {late_growth.get(name, 0.0):13.2f}")
    summary = {
        "crashes": crashes, "faults_injected": len(soak.results), "faults_recovered": len(recovered),
        "episodes": stats["episodes"], "successes": stats["successes"],
        "rss_growth_max_pct": max(graph_growth.values()) if graph_growth else None,
        "rss_growth_pct": growth, "rss_growth_second_half_pct": late_growth, "rss_mb": soak.rss.table(),
        "faults_by_kind": {k: {"injected": v[0], "recovered": v[1]} for k, v in by_fault.items()},
        "recovery_s_max": max((r["t_s"] or 0.0 for r in soak.results), default=None),
        "messages_lost_after_recovery": lost,
        "driver_counters": {k: counters_end.get(k, 0) - counters_start.get(k, 0) for k in DRIVER_COUNTERS},
        "command_ticks_on_wire": soak.wire.as_dict(),
        "nonfinite_published": soak.nonfinite, "trajectory_and_chunk_messages_checked": soak.checked,
        "unexpected_respawns": {k: v for k, v in respawned.items() if v}, "tracebacks": tracebacks,
        "reset_failures": stats["reset_failures"], "episodes_without_outcome": stats["no_outcome"],
        "not_recovered": [r for r in soak.results if not r["recovered"]],
        "crash_detail": stats["crash_detail"], "checkpoint": str(checkpoint),
        "minutes": round((time.monotonic() - started) / 60.0, 2),
        "load_avg_1min_start": round(load_start, 2), "load_avg_1min_end": round(load_end, 2),
    }
    if nan_path is not None:
        shutil.rmtree(nan_path, ignore_errors=True)
    print(json.dumps(summary), flush=True)
    ok = crashes == 0 and len(recovered) == len(soak.results) and soak.nonfinite == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
