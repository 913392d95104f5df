from setuptools import find_packages, setup

package_name = "roarm_driver"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "pyserial", "numpy"],
    zip_safe=True,
    maintainer="roarm-vla maintainers",
    maintainer_email="roarm-vla@example.com",
    description="RoArm-M3 serial driver node, firmware simulator on a pty, camera publisher, kinematics.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "arm_driver = roarm_driver.entry_points:arm_driver",
            "roarm-firmware-sim = roarm_driver.firmware_sim:main",
            "camera_publisher = roarm_driver.entry_points:camera_publisher",
        ],
    },
)
