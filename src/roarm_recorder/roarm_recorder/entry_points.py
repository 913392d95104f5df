"""Console-script targets (roarm_common.entry: a stop signal during the node module's imports is a clean stop)."""

from roarm_common.entry import deferred_main

episode_recorder = deferred_main("roarm_recorder.episode_recorder_node")
teleop_relay = deferred_main("roarm_recorder.teleop_relay_node")
sim_leader = deferred_main("roarm_recorder.sim_leader")
