"""Console-script targets (roarm_common.entry: a stop signal during the node module's imports is a clean stop)."""

from roarm_common.entry import deferred_main

sim_world = deferred_main("roarm_sim.sim_world_node")
scripted_expert = deferred_main("roarm_sim.scripted_expert_node")
