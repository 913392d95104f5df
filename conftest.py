"""Repository-wide pytest set-up: package sources first on sys.path, one private ROS domain per test run."""

import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
for package_dir in ("src/roarm_driver", "src/roarm_sim", "src/vla_policy_node", "src/roarm_vla_bringup", "training"):
    path = str(ROOT / package_dir)
    if path not in sys.path:
        sys.path.insert(0, path)

# Tests start nodes in this process and in child processes: a private DDS domain per run keeps two runs on the
# same machine (or a developer's demo) from seeing each other's topics. Children inherit the environment.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(30, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests compose nodes, the firmware simulator, camera capture and inference threads in ONE process (under
# `ros2 launch` they are separate processes), so all of them share one GIL. With CPython's default 5 ms switch
# interval every hand-off between those threads can wait 5 ms (convoy effect): measured here, the driver's
# request-mode polling fell from 78 Hz to 20 Hz, a 30 Hz camera test published 6-19 Hz in 2 runs of 5, and the
# in-process SmolVLA produced 0-2 chunks in 6 s instead of 10-22. roarm_vla_bringup's GraphRunner sets the same
# value for the same reason.
sys.setswitchinterval(0.0005)
