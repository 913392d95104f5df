"""Simulated pick episodes driven through the ROS interfaces: the loop `make demo-expert` (demo.py) and the pick
pipeline's trials stage (roarm_training.pick_trials) share.

Per seed: ``sim/reset_episode`` (with the policy switched off over ``vla/enable`` during the reset move, so that it
does not fight it, and on again after), then the episode's final ``sim/episode_outcome``. A node of the graph that
dies ends the loop (GraphRunner.check raises NodeExited).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol, Sequence

from roarm_common.service_call import call_service


class Capture(Protocol):
    """Something recording over the first episode (a FrameRecorder, the chunk-path recorder)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def run_episodes(runner, helper, seeds: Sequence[int], *, time_limit: float, policy: bool,
                 first_episode_capture: Sequence[Capture] = (),
                 on_outcome: Callable[[int, int, int, Any], None] | None = None) -> list:
    """One episode per seed; returns the EpisodeOutcome messages in seed order.

    helper: a node of ``runner`` (its executor spins it); policy: the graph has vla_policy (vla/enable);
    first_episode_capture: started before the first reset, stopped 0.5 s after its outcome;
    on_outcome(i, seed, episode_index, outcome) after each episode.
    """
    from roarm_sim.episode_client import EpisodeClient

    episodes = EpisodeClient(helper)
    switch = PolicySwitch(helper) if policy else None
    if switch is not None:
        runner.respawn_hooks.append(switch.reapply)
    outcomes = []
    try:
        for i, seed in enumerate(seeds):
            if switch is not None:
                switch.set(False)
            if i == 0:
                for capture in first_episode_capture:
                    capture.start()
            reply = episodes.reset(int(seed))
            if switch is not None:
                switch.set(True)
            outcome = wait_for_outcome(runner, episodes, reply.episode_index, timeout=time_limit + 30.0)
            if i == 0 and first_episode_capture:
                runner.spin_for(0.5)  # a few frames of the outcome
                for capture in first_episode_capture:
                    capture.stop()
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(i, int(seed), reply.episode_index, outcome)
    finally:
        if switch is not None:
            runner.respawn_hooks.remove(switch.reapply)
    return outcomes


class PolicySwitch:
    """vla/enable as the episode loop wants it, re-applied to a respawned policy process.

    A fresh vla_policy starts enabled; respawned during a reset move it would drive against the reset.
    ``reapply`` (a GraphRunner respawn hook) sends the wanted state again; one lock orders it with ``set``.
    """

    def __init__(self, helper, node_name: str = "vla_policy", timeout: float = 5.0) -> None:
        from std_srvs.srv import SetBool

        self.client = helper.create_client(SetBool, "vla/enable")
        self.node_name, self.timeout = node_name, timeout
        self.wanted: bool | None = None
        self._lock = threading.Lock()

    def set(self, value: bool) -> None:
        with self._lock:
            self.wanted = bool(value)
            set_enabled(self.client, self.wanted, self.timeout)

    def reapply(self, name: str) -> None:
        if name != self.node_name:
            return
        with self._lock:
            if self.wanted is not None:
                set_enabled(self.client, self.wanted, self.timeout)


def wait_for_outcome(runner, episodes, episode_index: int, timeout: float):
    """The episode's final outcome; stops early (NodeExited) when a node of the graph died."""
    end = time.monotonic() + timeout
    while True:
        runner.check()
        try:
            return episodes.wait_for_outcome(episode_index, timeout=min(1.0, max(0.01, end - time.monotonic())))
        except TimeoutError:
            if time.monotonic() >= end:
                raise


def set_enabled(client, value: bool, timeout: float = 5.0) -> None:
    """vla/enable := value; TimeoutError when the policy node did not answer within ``timeout``."""
    from std_srvs.srv import SetBool

    call_service(client, SetBool.Request(data=value), timeout, resend_after=1.0)  # idempotent: resent if lost
