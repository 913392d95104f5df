"""roarm_common.entry.deferred_main: a stop signal while the node module is still importing ends the process with
status 0 and no traceback; without one, the module's main runs. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SLOW_MODULE = textwrap.dedent("""
    import pathlib, sys, time
    pathlib.Path(sys.argv[1]).write_text("importing")   # the test signals once this exists
    time.sleep(float(sys.argv[2]))                         # a heavy import (rclpy, torch) on a loaded machine

    def main():
        print("main ran", flush=True)
        return 3
""")


def _start(tmp_path, sleep_s: float) -> tuple[subprocess.Popen, object]:
    (tmp_path / "slow_node_module.py").write_text(SLOW_MODULE)
    marker = tmp_path / "marker"
    code = "import sys; from roarm_common.entry import deferred_main; sys.exit(deferred_main('slow_node_module')())"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", code, str(marker), str(sleep_s)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, marker


def _wait_for(path, proc, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the module never started importing"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_import_exits_zero_without_a_traceback(tmp_path, sig):
    proc, marker = _start(tmp_path, sleep_s=1.0)
    _wait_for(marker, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "main ran" not in out
    assert f"slow_node_module: stopped by {sig.name} before it started" in err


def test_without_a_signal_the_module_main_runs_and_its_status_is_the_process_status(tmp_path):
    proc, _marker = _start(tmp_path, sleep_s=0.0)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3 and "main ran" in out, err
