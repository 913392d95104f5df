from setuptools import find_packages, setup

package_name = "roarm_common"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="roarm-vla maintainers",
    maintainer_email="roarm-vla@example.com",
    description="Node plumbing every roarm-vla node shares: the console-script body and typed parameter descriptors.",
    license="Apache-2.0",
    tests_require=["pytest"],
)
