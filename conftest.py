"""Repository-wide pytest set-up: package sources first on sys.path, one private ROS domain per test run."""

import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
for package_dir in ("src/roarm_description", "src/roarm_common", "src/roarm_driver", "src/roarm_sim", "src/roarm_recorder", "src/vla_policy_node", "src/roarm_vla_bringup", "training"):
    path = str(ROOT / package_dir)
    if path not in sys.path:
        sys.path.insert(0, path)

# Tests start nodes in this process and in child processes: a private DDS domain per run keeps two runs on the
# same machine (or a developer's demo) from seeing each other's topics. Children inherit the environment.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(30, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
