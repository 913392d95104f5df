# Source me (bash): puts the project's venv, the colcon install space and the ament prefix together.
# `make test`, `make demo` and every script of the project run inside this environment.
# On a stock ROS 2 Jazzy install (no .venv here), source /opt/ros/jazzy/setup.bash and install/setup.bash instead.
_roarm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$_roarm_root/.venv/bin/python" ]; then
  echo "roarm-vla: $_roarm_root/.venv is missing: run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_roarm_root/.venv/bin/activate"
# The ROS wheels install an ament prefix at the venv root (share/<pkg>, share/ament_index, lib/).
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$VIRTUAL_ENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -f "$_roarm_root/install/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  . "$_roarm_root/install/local_setup.bash"
fi
# ament_python installs console scripts under install/<pkg>/lib/<pkg> (where `ros2 run` looks). Without ros2cli,
# put them on PATH so `roarm-vla`, `arm_driver`, `roarm-firmware-sim`, ... run directly.
for _roarm_bin in "$_roarm_root"/install/*/lib/*/; do
  case ":$PATH:" in *":${_roarm_bin%/}:"*) ;; *) [ -d "$_roarm_bin" ] && PATH="${_roarm_bin%/}:$PATH" ;; esac
done
export PATH
unset _roarm_bin
# Keep DDS traffic on this machine (tests and the simulated demo never need the network).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Hugging Face: never reach the hub from tests or the demo (real users unset these to load lerobot/smolvla_base).
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export ROARM_VLA_ROOT="$_roarm_root"
unset _roarm_root
