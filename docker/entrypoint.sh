#!/bin/bash
# Source ROS 2 Jazzy and the workspace, then run the command (default: ros2 launch roarm_vla_bringup pick.launch.py).
set -e
. /opt/ros/jazzy/setup.bash
. /ws/install/setup.bash
exec "$@"
