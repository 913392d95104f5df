"""Console-script entry points of the node processes: a stop signal is a stop from the process's first line on.

A node module imports rclpy, numpy (torch, LeRobot for vla_policy) before its ``main`` runs: a second and more on a
loaded machine. A SIGINT landing there (Ctrl-C, or launch/the runner stopping a graph it has just started) would
end the process with a KeyboardInterrupt traceback and a non-zero status. The entry point is therefore this light
module (standard library only): it catches SIGINT/SIGTERM as a flag while it imports the node module, exits 0
when a stop came, and otherwise calls the module's ``main`` (node_main.run_node installs its own handlers there).

    # roarm_sim/entry_points.py
    scripted_expert = deferred_main("roarm_sim.scripted_expert_node")
    # setup.py console_scripts
    "scripted_expert = roarm_sim.entry_points:scripted_expert",
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def deferred_main(module: str, attr: str = "main") -> Callable[[], int]:
    """A console-script target that imports ``module`` with stop signals caught, then returns its ``attr()``."""

    def main() -> int:
        requested: list[int] = []
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, _frame: requested.append(signum))
        target = getattr(importlib.import_module(module), attr)
        if requested:
            print(f"{module.rsplit('.', 1)[-1]}: stopped by {signal.Signals(requested[0]).name} before it started",
                  file=sys.stderr, flush=True)
            return 0
        return target()

    main.__qualname__ = main.__name__ = f"main_of_{module.rsplit('.', 1)[-1]}"
    return main
