"""The CMake repair that `make setup` applies to the ROS wheels: rewrites only build-machine paths, is
idempotent, and fails loudly when the wheels' layout no longer matches."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "repair_ros_wheel_cmake.py"
EXPORT = """set_target_properties(std_msgs::std_msgs__rosidl_generator_py PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "{py};{np}"
)
"""


def run(prefix):
    return subprocess.run([sys.executable, str(SCRIPT), str(prefix)], capture_output=True, text=True)


def test_rewrites_build_machine_paths_and_is_idempotent(tmp_path):
    export = tmp_path / "share/std_msgs/cmake/export_std_msgs__rosidl_generator_pyExport.cmake"
    export.parent.mkdir(parents=True)
    export.write_text(EXPORT.format(py="/opt/python/cp311-cp311/include/python3.11",
                                    np="/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"))
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "1 repaired" in first.stdout
    text = export.read_text()
    assert sysconfig.get_paths()["include"] in text and numpy.get_include() in text
    assert "/opt/python" not in text
    second = run(tmp_path)
    assert second.returncode == 0 and "0 repaired" in second.stdout
    assert export.read_text() == text


def test_fails_loudly_when_layout_changed(tmp_path):
    (tmp_path / "share").mkdir()
    result = run(tmp_path)
    assert result.returncode == 1 and "no longer matches" in result.stderr


def test_fails_loudly_when_an_unknown_missing_path_remains(tmp_path):
    export = tmp_path / "share/foo/cmake/export_foo__rosidl_generator_pyExport.cmake"
    export.parent.mkdir(parents=True)
    export.write_text(EXPORT.format(py="/nowhere/else/include/py", np=numpy.get_include()))
    result = run(tmp_path)
    assert result.returncode == 1 and "/nowhere/else/include/py" in result.stderr
