from glob import glob

from setuptools import find_packages, setup

package_name = "roarm_description"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/urdf", glob("urdf/*.urdf")),
    ],
    install_requires=["setuptools", "numpy"],
    zip_safe=True,
    maintainer="roarm-vla maintainers",
    maintainer_email="roarm-vla@example.com",
    description="The RoArm-M3's URDF, joint table (names, order, limits, units) and kinematics, read from the URDF.",
    license="Apache-2.0",
    tests_require=["pytest"],
)
