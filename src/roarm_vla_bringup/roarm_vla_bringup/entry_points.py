"""Console-script targets (roarm_common.entry: a stop signal during the node module's imports is a clean stop)."""

from roarm_common.entry import deferred_main

action_visualizer = deferred_main("roarm_vla_bringup.action_visualizer_node")
