#!/usr/bin/env python3
"""Reliability soak (issue 12): the simulated pick graph with a learned policy for --minutes while faults are
injected; did every fault recover, did anything crash, does memory grow?

The graph is graph.py's `pick` sim graph with vla_policy (one process per node under GraphRunner, as `make demo`
runs it). Episodes run back to back (sim/reset_episode, then sim/episode_outcome) on seeds --seed, --seed + 1, ...
Every --fault-period seconds the next fault of the cycle is injected, then recovery is checked within
--recovery-s:

  garbage      runner.firmware.inject_garbage(64): 64 bytes of noise on the serial line
               recovered = joint_states keep flowing and arm_driver's diagnostics say connected
  drop         runner.firmware.drop_replies(5): five feedback lines lost
               recovered = as above
  disconnect   runner.firmware.disconnect(), 1 s unplugged, reconnect()
               recovered = arm_driver reconnects (diagnostics connected) and joint_states flow again
  kill         SIGKILL to the --kill-node process (respawned by the runner: the node's spec gets respawn=True
               for this run only; graph.py is unchanged)
               recovered = the process runs again (a new pid) and its lifecycle, if any, is active again

Not injected yet (the skeleton's TODO, named in the JSON as not_injected): camera drop-outs (sim_world has no
switch for it) and a policy that returns NaN (vla_policy has no fault hook).

Crashes = node processes that exited other than by the injected kill (the runner reports and stops the graph).
RSS per node process from /proc/<pid>/status (VmRSS), sampled every 5 s; growth per process = last / first sample
after the warm-up (the first episode) - 1, restarted from a respawn. Ends with one JSON line: crashes,
faults_injected, faults_recovered, episodes, successes, rss_growth_max_pct, rss_mb, not_injected.

Usage: cd /work/main && source scripts/env.sh && python bench/soak.py --minutes 10
       [--checkpoint outputs/pick/fit/checkpoints/last/pretrained_model | --tiny] [--fault-period 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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

FAULTS = ("garbage", "drop", "disconnect", "kill")
NOT_INJECTED = ("camera_dropout", "policy_nan")


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssTracker:
    """First and last RSS per (node, pid); growth is measured per pid so a respawn starts a new baseline."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], int] = {}
        self.last: dict[tuple[str, int], int] = {}

    def sample(self, processes: dict) -> None:
        for name, proc in processes.items():
            value = rss_kb(proc.pid) if proc.running() else None
            if value:
                self.first.setdefault((name, proc.pid), value)
                self.last[(name, proc.pid)] = value

    def growth_pct(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, first in self.first.items():
            growth = 100.0 * (self.last[key] / first - 1.0)
            out[key[0]] = max(out.get(key[0], float("-inf")), growth)
        return {k: round(v, 2) for k, v in out.items()}

    def latest_mb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, _pid), value in self.last.items():
            out[name] = round(value / 1024.0, 1)
        return out


def driver_connected(runner) -> bool:
    return str(runner.diagnostics("arm_driver").get("connected", "")).lower() == "true"


def wait_recovered(runner, fault: str, kill_node: str, old_pid: int | None, timeout: float) -> bool:
    """Poll until the graph is back to normal after `fault`, or `timeout` seconds."""
    end = time.monotonic() + timeout
    start_count = runner.topic_counts().get("joint_states", 0)
    while time.monotonic() < end:
        runner.spin_for(0.2)
        if fault == "kill":
            proc = runner.processes[kill_node]
            if proc.running() and proc.pid != old_pid:
                spec = runner.graph.node(kill_node).spec
                if not spec.lifecycle or kill_node in runner.activated:
                    if not spec.lifecycle or runner.lifecycle_state(kill_node) == "active":
                        return True
            continue
        flowing = runner.topic_counts().get("joint_states", 0) - start_count >= 10
        if flowing and driver_connected(runner):
            return True
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--checkpoint", type=Path,
                        default=ROOT / "outputs/pick/fit/checkpoints/last/pretrained_model",
                        help="policy checkpoint (default: make demo's)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random SmolVLA instead (plumbing only)")
    parser.add_argument("--fault-period", type=float, default=20.0, help="s between injected faults")
    parser.add_argument("--recovery-s", type=float, default=15.0, help="s a fault has to recover")
    parser.add_argument("--kill-node", default="action_visualizer", help="node killed and respawned")
    parser.add_argument("--time-limit", type=float, default=15.0, help="episode time limit, s")
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE", help="graph override")
    args = parser.parse_args(argv)

    from roarm_sim.episode_client import EpisodeClient
    from roarm_vla_bringup.demo import _set_enabled, demo_overrides
    from roarm_vla_bringup.graph import load_graph
    from roarm_vla_bringup.runner import GraphRunner, NodeExited

    checkpoint = args.checkpoint
    if args.tiny:
        from roarm_training.small_smolvla import build_tiny_checkpoint

        checkpoint = Path("/tmp/roarm_soak_tiny")
        if not (checkpoint / "config.json").exists():
            build_tiny_checkpoint(checkpoint)
    if not (checkpoint / "config.json").is_file():
        parser.error(f"no checkpoint at {checkpoint}: run `make demo` first, or pass --checkpoint / --tiny")
    demo_args = argparse.Namespace(time_limit=args.time_limit, camera_rate=None, set=list(args.set))
    graph = load_graph("pick", sim=True, controller="policy", overrides=demo_overrides(demo_args, checkpoint))
    victim = graph.node(args.kill_node)  # this run only: the killed node is respawned, as launch's respawn=True
    victim.spec = dataclasses.replace(victim.spec, respawn=True, respawn_delay=1.0)

    stats = {"crashes": 0, "faults_injected": 0, "faults_recovered": 0, "episodes": 0, "successes": 0,
             "faults": [], "crash_detail": ""}
    rss = RssTracker()
    started = time.monotonic()
    deadline = started + args.minutes * 60.0
    stop = threading.Event()
    warm = threading.Event()
    lock = threading.Lock()  # the fault thread and the episode loop both talk to the runner's helper node

    def log(message: str) -> None:
        print(f"[soak {time.monotonic() - started:6.1f} s] {message}", flush=True)

    with GraphRunner(graph, log=lambda m: log(f"[runner] {m}"), echo=lambda _line: None) as runner:
        helper = runner.create_node("roarm_vla_soak")
        episodes = EpisodeClient(helper)
        from std_srvs.srv import SetBool

        enable = helper.create_client(SetBool, "vla/enable")
        runner.wait_for_topic("joint_states", count=5, timeout=60.0)

        def inject_faults() -> None:
            k = 0
            while not stop.wait(args.fault_period):
                if not warm.is_set():
                    continue
                fault = FAULTS[k % len(FAULTS)]
                k += 1
                old_pid = runner.processes[args.kill_node].pid
                try:
                    if fault == "garbage":
                        runner.firmware.inject_garbage(64)
                    elif fault == "drop":
                        runner.firmware.drop_replies(5)
                    elif fault == "disconnect":
                        runner.firmware.disconnect()
                        time.sleep(1.0)
                        runner.firmware.reconnect()
                    elif fault == "kill":
                        runner.processes[args.kill_node].signal(signal.SIGKILL)
                    stats["faults_injected"] += 1
                    ok = wait_recovered(runner, fault, args.kill_node, old_pid, args.recovery_s)
                except NodeExited:
                    return
                except Exception as exc:  # noqa: BLE001 - a failed injection is a result, not a soak crash
                    log(f"fault {fault}: {exc!r}")
                    ok = False
                stats["faults_recovered"] += int(ok)
                stats["faults"].append({"fault": fault, "recovered": ok})
                log(f"fault {fault}: {'recovered' if ok else 'NOT recovered'}")

        def sample_rss() -> None:
            while not stop.wait(5.0):
                if warm.is_set():
                    rss.sample(runner.processes)

        threads = [threading.Thread(target=inject_faults, daemon=True), threading.Thread(target=sample_rss,
                                                                                        daemon=True)]
        for thread in threads:
            thread.start()
        seed = args.seed
        try:
            while time.monotonic() < deadline:
                _set_enabled(enable, False)
                try:
                    reply = episodes.reset(seed, timeout=60.0)
                except RuntimeError as exc:  # a reset during a disconnect: try the next seed
                    log(f"reset seed {seed}: {exc}")
                    seed += 1
                    runner.spin_for(1.0)
                    continue
                _set_enabled(enable, True)
                try:
                    outcome = episodes.wait_for_outcome(reply.episode_index, timeout=args.time_limit + 30.0)
                except TimeoutError:
                    log(f"episode {reply.episode_index}: no outcome")
                    runner.check()
                    continue
                stats["episodes"] += 1
                stats["successes"] += int(outcome.status == 1)
                log(f"episode {reply.episode_index} seed {seed}: status {outcome.status} after {outcome.elapsed:.1f} s")
                seed += 1
                warm.set()
                runner.check()
        except NodeExited as exc:
            stats["crashes"] += 1
            stats["crash_detail"] = str(exc)[:300]
            log(f"crash: {exc}")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=args.recovery_s + 5.0)
            rss.sample(runner.processes)

    growth = rss.growth_pct()
    summary = {"crashes": stats["crashes"], "faults_injected": stats["faults_injected"],
               "faults_recovered": stats["faults_recovered"], "episodes": stats["episodes"],
               "successes": stats["successes"],
               "rss_growth_max_pct": max(growth.values()) if growth else None, "rss_growth_pct": growth,
               "rss_mb": rss.latest_mb(), "faults": stats["faults"], "not_injected": list(NOT_INJECTED),
               "minutes": round((time.monotonic() - started) / 60.0, 2), "crash_detail": stats["crash_detail"]}
    print(json.dumps(summary), flush=True)
    return 0 if stats["crashes"] == 0 and stats["faults_recovered"] == stats["faults_injected"] else 1


if __name__ == "__main__":
    sys.exit(main())
