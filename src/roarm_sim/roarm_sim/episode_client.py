"""Run sim_world episodes through its ROS interfaces from any node: reset, then wait for the outcome.

Not a composition: it is handed a node that some executor spins in another thread (the plain-Python runner's,
a test's) and adds to it one `sim/reset_episode` client and one `sim/episode_outcome` subscription. The calls
block the caller's thread, never the executor.

    client = EpisodeClient(node)
    reply = client.reset(seed=3)                          # new box + start pose, arm moved there by the driver
    outcome = client.wait_for_outcome(reply.episode_index, timeout=40.0)
"""

from __future__ import annotations

import threading
import time

from rclpy.node import Node

from roarm_common.service_call import call_service
from roarm_interfaces.msg import EpisodeOutcome
from roarm_interfaces.srv import ResetEpisode


class EpisodeClient:
    def __init__(self, node: Node, reset_service: str = "sim/reset_episode",
                 outcome_topic: str = "sim/episode_outcome"):
        self.node = node
        self.reset_client = node.create_client(ResetEpisode, reset_service)
        self.outcome: EpisodeOutcome | None = None  # the latest outcome message
        self._changed = threading.Condition()
        self._subscription = node.create_subscription(EpisodeOutcome, outcome_topic, self._on_outcome, 10)

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        with self._changed:
            self.outcome = msg
            self._changed.notify_all()

    def reset(self, seed: int, timeout: float = 30.0) -> ResetEpisode.Response:
        """Start an episode from ``seed`` (< 0: sim_world's next seed); returns the reply once the arm is there."""
        request = ResetEpisode.Request()
        request.seed = int(seed)
        try:  # not resent: a reset starts an episode
            response = call_service(self.reset_client, request, timeout)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc} (is sim_world running?)") from exc
        if not response.success:
            raise RuntimeError(f"reset failed: {response.message}")
        return response

    def wait_for_outcome(self, episode_index: int, timeout: float) -> EpisodeOutcome:
        """Block until episode ``episode_index`` ends (SUCCESS or TIMEOUT); returns its final outcome message."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                o = self.outcome
                if o is not None and o.episode_index == episode_index and o.status != EpisodeOutcome.RUNNING:
                    return o
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"episode {episode_index} did not end within {timeout:.0f} s")
                self._changed.wait(min(left, 0.2))

    def wait_for_running(self, timeout: float) -> EpisodeOutcome:
        """Block until an episode is RUNNING (e.g. sim_world's auto start); returns that outcome message."""
        end = time.monotonic() + timeout
        with self._changed:
            while self.outcome is None or self.outcome.status != EpisodeOutcome.RUNNING:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no episode started within {timeout:.0f} s")
                self._changed.wait(min(left, 0.2))
            return self.outcome
