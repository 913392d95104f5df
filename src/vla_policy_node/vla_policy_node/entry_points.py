"""Console-script targets (roarm_common.entry: a stop signal during the node module's imports is a clean stop)."""

from roarm_common.entry import deferred_main

vla_policy = deferred_main("vla_policy_node.vla_policy_node")
