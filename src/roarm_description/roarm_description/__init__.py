"""The RoArm-M3 description: URDF, joint table and kinematics (ROS-free)."""
