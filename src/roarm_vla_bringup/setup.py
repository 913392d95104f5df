from glob import glob

from setuptools import find_packages, setup

package_name = "roarm_vla_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools", "pyyaml", "numpy"],
    zip_safe=True,
    maintainer="roarm-vla maintainers",
    maintainer_email="roarm-vla@example.com",
    description="Launch files, URDF, RViz config, parameter YAMLs, plain-Python runner and recorder of roarm-vla.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "action_visualizer = roarm_vla_bringup.entry_points:action_visualizer",
            "roarm-vla = roarm_vla_bringup.runner:main",
            "roarm-vla-demo = roarm_vla_bringup.demo:main",
        ],
    },
)
