"""A blocking ROS service call with one deadline, from a thread that does not spin the client's node.

The node is spun elsewhere (an executor thread, the node's own spin), so the call polls its future instead of
spinning. One deadline covers the wait for the service and the wait for its answer; a request that timed out is
removed from the client so that a late answer does not pile up in it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

POLL_S = 0.02


def call_service(client, request, timeout: float, resend_after: float | None = None,
                 poll: Callable[[], None] | None = None) -> Any:
    """The service's response to ``request``; TimeoutError (naming the service and what it waited for) when the
    service did not appear or did not answer within ``timeout`` seconds.

    resend_after: only for idempotent services: the request is sent again when no answer came within this many
    seconds (a request or answer sent before DDS matched both ends of a fresh client is lost, not queued).
    poll: called while waiting (every POLL_S), e.g. to raise when the process that serves the call died.
    """
    deadline = time.monotonic() + timeout
    while not client.wait_for_service(timeout_sec=min(0.2, max(0.0, deadline - time.monotonic()))):
        if poll is not None:
            poll()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"service {client.srv_name} did not appear within {timeout:g} s")
    while True:
        future = client.call_async(request)
        resend = deadline if resend_after is None else min(deadline, time.monotonic() + resend_after)
        while not future.done() and time.monotonic() < resend:
            if poll is not None:
                poll()
            time.sleep(POLL_S)
        if future.done():
            return future.result()
        client.remove_pending_request(future)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:g} s")
