"""End to end through real ROS: firmware simulator (pty) -> arm_driver (serial, lifecycle) -> sim_world ->
scripted_expert -> joint_trajectory -> arm_driver. Two episodes from different seeded boxes and start poses must
succeed, the arm's start pose must have been reached through the driver, and the camera must show the lift."""

import numpy as np
import pytest

from roarm_interfaces.msg import EpisodeOutcome

from roarm_sim.demo import FrameRecorder, wilson_interval
from roarm_sim.scene import draw_episode
from roarm_sim.sim_session import SimSession


def white_rows(image):
    mask = np.all(image >= 190, axis=2) & (image.max(axis=2) - image.min(axis=2) < 20)
    return np.nonzero(mask)[0]


@pytest.mark.slow
def test_scripted_expert_picks_the_box_through_driver_and_firmware_simulator():
    recorder = FrameRecorder(every=3)
    with SimSession(world_params={"camera_rate": 15.0, "time_limit": 20.0}, frame_callback=recorder) as session:
        outcomes = []
        for seed in (5, 6):
            recorder.start()
            reply = session.reset(seed)
            assert reply.success and reply.seed_used == seed
            # the arm went to the episode's start pose through the driver and the firmware simulator
            measured = session.simulator.joints
            assert np.max(np.abs(measured[:5] - draw_episode(seed).start_pose[:5])) < 0.05
            outcomes.append(session.wait_for_outcome(reply.episode_index, timeout=40.0))
            recorder.stop()
        snapshot = session.nodes["arm_driver"].snapshot()
        rates = session.topic_rates()
    assert [o.status for o in outcomes] == [EpisodeOutcome.SUCCESS] * 2, [o.detail for o in outcomes]
    assert all(o.grasped and o.box_height >= 0.05 for o in outcomes)
    assert snapshot["setpoints_sent"] > 50 and not any(k.startswith("rejected_") for k in snapshot)
    assert rates["joint_states"] > 20 and rates["camera/image_raw"] > 5 and rates["joint_trajectory"] > 5
    # the camera saw the box go up (white pixels higher in the last frame than in the first)
    first, last = recorder.frames[0][1], recorder.frames[-1][1]
    assert white_rows(last).mean() < white_rows(first).mean() - 5


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(5, 5)
    assert low == pytest.approx(0.5655, abs=1e-3) and high == 1.0
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
