"""Console-script targets (roarm_common.entry: a stop signal during the node module's imports is a clean stop)."""

from roarm_common.entry import deferred_main

arm_driver = deferred_main("roarm_driver.arm_driver_node")
camera_publisher = deferred_main("roarm_driver.camera_publisher_node")
