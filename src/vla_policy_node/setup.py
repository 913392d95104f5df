from setuptools import find_packages, setup

package_name = "vla_policy_node"

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
    description="SmolVLA policy node: quantized inference, asynchronous action chunks, EMA-smoothed command stream.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vla_policy = vla_policy_node.entry_points:vla_policy",
        ],
    },
)
