from setuptools import find_packages, setup

package_name = "roarm_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy"],
    zip_safe=True,
    maintainer="roarm-vla maintainers",
    maintainer_email="roarm-vla@example.com",
    description="Simulated tabletop pick world (rendered camera, white box, episode outcome) and the scripted expert.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_world = roarm_sim.entry_points:sim_world",
            "scripted_expert = roarm_sim.entry_points:scripted_expert",
        ],
    },
)
