"""ros2 launch roarm_vla_bringup view.launch.py [gui:=true] [rviz:=true]

The robot model alone, to check the URDF: robot_state_publisher with urdf/roarm_m3.urdf, joint_state_publisher
(its GUI with gui:=true, package joint_state_publisher_gui) and RViz with rviz/roarm_vla.rviz.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from roarm_vla_bringup import graph


def generate_launch_description() -> LaunchDescription:
    gui = LaunchConfiguration("gui")
    rsp_yaml = str(graph.config_path("robot_state_publisher.yaml"))
    return LaunchDescription([
        DeclareLaunchArgument("gui", default_value="false", description="joint_state_publisher_gui sliders"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz"),
        Node(package="robot_state_publisher", executable="robot_state_publisher", name="robot_state_publisher",
             output="screen",
             parameters=[rsp_yaml, {"robot_description": ParameterValue(graph.urdf_text(), value_type=str)}]),
        Node(package="joint_state_publisher", executable="joint_state_publisher", name="joint_state_publisher",
             condition=UnlessCondition(gui)),
        Node(package="joint_state_publisher_gui", executable="joint_state_publisher_gui",
             name="joint_state_publisher_gui", condition=IfCondition(gui)),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", str(graph.share_path("rviz", "roarm_vla.rviz"))],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
