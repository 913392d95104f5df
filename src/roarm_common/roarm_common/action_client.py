"""An rclpy ActionClient whose answers cannot overtake their own request's bookkeeping.

rclpy 7.x (Jazzy) sends a goal, cancel or result request and only then records the request's future under its
sequence number, without a lock. When the executor thread takes the server's answer in between (a fast server, a
multi-threaded executor, a request sent from another thread), the answer is dropped with "Ignoring unexpected goal
response" and the caller waits forever: measured in the pick pipeline's recording stage, twice in four runs under
load ("no record_episode goal response within 30 s"). rclpy's service Client holds a lock across the same steps;
this class does the same for actions: sending and recording happen under one lock, and the answer's handler takes
that lock before it looks the sequence number up.
"""

from __future__ import annotations

import threading

from rclpy.action import ActionClient as _RclpyActionClient


class ActionClient(_RclpyActionClient):
    """rclpy's ActionClient (same constructor and API) without the lost-answer race (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._request_lock = threading.Lock()

    def send_goal_async(self, *args, **kwargs):
        with self._request_lock:
            return super().send_goal_async(*args, **kwargs)

    def _cancel_goal_async(self, goal_handle):
        with self._request_lock:
            return super()._cancel_goal_async(goal_handle)

    def _get_result_async(self, goal_handle):
        with self._request_lock:
            return super()._get_result_async(goal_handle)

    async def execute(self, taken_data):
        with self._request_lock:
            pass  # a request being sent right now has recorded its future when this returns
        await super().execute(taken_data)
