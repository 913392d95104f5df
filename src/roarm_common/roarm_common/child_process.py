"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """subprocess ``preexec_fn``: the kernel sends SIGTERM to the child when its parent dies (even by SIGKILL), so
    a crashed runner, test or bench leaves no orphan nodes or simulators."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
