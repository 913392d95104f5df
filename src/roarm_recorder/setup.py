from setuptools import find_packages, setup

package_name = "roarm_recorder"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "rosbags", "numpy"],
    zip_safe=True,
    maintainer="roarm-vla maintainers",
    maintainer_email="roarm-vla@example.com",
    description="Demonstration recording: episode_recorder (one rosbag2 per episode), teleop_relay, terminal client.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "episode_recorder = roarm_recorder.entry_points:episode_recorder",
            "teleop_relay = roarm_recorder.entry_points:teleop_relay",
            "roarm-vla-record = roarm_recorder.record_client:main",
            "roarm-sim-leader = roarm_recorder.sim_leader:main",
            "sim_leader = roarm_recorder.entry_points:sim_leader",
            "roarm-vla-record-expert = roarm_recorder.expert_demos:main",
        ],
    },
)
