"""Demonstration recording: episode_recorder, teleop_relay, the roarm-vla-record terminal client."""
