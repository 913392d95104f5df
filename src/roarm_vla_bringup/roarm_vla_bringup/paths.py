"""Where roarm_vla_bringup's data files (config/, launch/, rviz/) are: source tree or installed share.

A source checkout (tests, the plain-Python runner from the repo) uses the files next to the package; an installed
package (colcon, Docker) uses share/roarm_vla_bringup from the ament index. ROS-free: ament_index_python is plain
Python and only tried when the source files are absent.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_NAME = "roarm_vla_bringup"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_root() -> Path:
    """The folder holding config/, launch/ and rviz/."""
    if (SOURCE_ROOT / "config").is_dir():
        return SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError as exc:  # pragma: no cover - only without the source tree and without ament_index
        raise FileNotFoundError(f"{PACKAGE_NAME}'s data files are not next to {__file__} and "
                                "ament_index_python is missing") from exc
    return Path(get_package_share_directory(PACKAGE_NAME))


def share_path(*parts: str) -> Path:
    """Path of a data file, e.g. share_path('config', 'sim.yaml'); raises FileNotFoundError if it is missing."""
    path = share_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return path
