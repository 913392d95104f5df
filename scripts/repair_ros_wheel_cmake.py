"""Repair the CMake files exported by the ROS 2 Jazzy PyPI wheels so colcon can build custom interfaces.

Why: the wheels were built in a manylinux image; their exported `*__rosidl_generator_pyExport.cmake` files hard-code
that image's Python include directory (e.g. /opt/python/cp311-cp311/include/python3.11) and its numpy include
directory. CMake then refuses to configure any package that depends on them ("Imported target ... includes
non-existent path"). We rewrite those two paths to this interpreter's own include dir and numpy.get_include().

Idempotent: a second run finds nothing to change. Fails loudly (exit 1) when the files no longer look like what
this repair was written for, so a new wheel release cannot silently break the build.

Usage: python scripts/repair_ros_wheel_cmake.py [VENV_PREFIX]   (default: sys.prefix)
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

PY_INCLUDE = re.compile(r"[^\";]*/include/python3\.\d+")
NUMPY_INCLUDE = re.compile(r"[^\";]*/site-packages/numpy/(?:_core|core)/include")
INCLUDE_DIRS = re.compile(r'INTERFACE_INCLUDE_DIRECTORIES\s+"([^"]*)"')


def repair(prefix: Path) -> int:
    share = prefix / "share"
    exports = sorted(share.glob("*/cmake/*__rosidl_generator_pyExport.cmake"))
    if not exports:
        print(f"repair_ros_wheel_cmake: no *__rosidl_generator_pyExport.cmake under {share}: "
              "the ROS wheels' layout changed (or they are not installed); this repair no longer matches",
              file=sys.stderr)
        return 1
    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = 0
    for path in exports:
        text = path.read_text()
        new = PY_INCLUDE.sub(lambda m: m.group(0) if Path(m.group(0)).is_dir() else py_include, text)
        new = NUMPY_INCLUDE.sub(lambda m: m.group(0) if Path(m.group(0)).is_dir() else np_include, new)
        if new != text:
            path.write_text(new)
            changed += 1
    # Verify: every include directory an export declares must exist now.
    broken = []
    for path in exports:
        for match in INCLUDE_DIRS.finditer(path.read_text()):
            for directory in filter(None, match.group(1).split(";")):
                if "${" not in directory and not Path(directory).is_dir():
                    broken.append(f"{path.relative_to(prefix)}: {directory}")
    if broken:
        print("repair_ros_wheel_cmake: include directories still missing after the repair "
              "(the wheels changed; update this script):\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    print(f"repair_ros_wheel_cmake: {len(exports)} exported CMake files checked, {changed} repaired "
          f"(python include -> {py_include}, numpy include -> {np_include})")
    return 0


if __name__ == "__main__":
    sys.exit(repair(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.prefix)))
