"""The runner's TopicMonitor over a long run: counts every message, keeps only RATE_WINDOW_S of arrival times."""

import pytest
import rclpy
from rclpy.context import Context

from roarm_vla_bringup.graph import load_graph
from roarm_vla_bringup.runner import RATE_WINDOW_S, TopicMonitor


def test_a_long_run_keeps_a_bounded_window_of_arrival_times():
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("monitor_test", context=context)
    try:
        now = [0.0]
        monitor = TopicMonitor(node, load_graph("pick", sim=True, controller="expert"), log=lambda _m: None,
                               clock=lambda: now[0])
        for i in range(3000):  # 50 Hz for 60 s, then 10 more minutes at 1 Hz
            now[0] = i * 0.02
            monitor._arrived("joint_states")
        for _ in range(600):
            now[0] += 1.0
            monitor._arrived("joint_states")
        assert monitor.counts["joint_states"] == 3600
        stamps = monitor.stamps["joint_states"]
        assert len(stamps) == int(RATE_WINDOW_S) + 1 and stamps[0] >= now[0] - RATE_WINDOW_S
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_rate_window_longer_than_kept_is_refused():
    from roarm_vla_bringup.runner import GraphRunner

    runner = GraphRunner.__new__(GraphRunner)  # topic_rates' argument check needs no running graph
    with pytest.raises(ValueError, match="keeps"):
        runner.topic_rates(window=RATE_WINDOW_S + 1)
