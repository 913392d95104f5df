"""Pre-flight checks catch the seed report's failures on real LeRobot configs and real LeRobotDatasets."""

import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

pytest.importorskip("lerobot")
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig  # noqa: E402

from roarm_training.preflight import check_dataset, check_plan  # noqa: E402


def codes(findings, severity=None):
    return {f.code for f in findings if severity is None or f.severity == severity}


def make_dataset(root, start_spread, episodes=6, frames=8, seed=0):
    rng = np.random.default_rng(seed)
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
        "action": {"dtype": "float32", "shape": (6,), "names": None},
    }
    ds = LeRobotDataset.create(repo_id="local/preflight", fps=30, features=features, root=root,
                               robot_type="roarm_m3", use_videos=False)
    for _ in range(episodes):
        start = rng.normal(0.0, start_spread, 6)
        target = rng.normal(0.0, 1.0, 6)
        for k in range(frames):
            state = start + (target - start) * k / frames
            ds.add_frame({"observation.state": state.astype(np.float32),
                          "action": (start + (target - start) * (k + 1) / frames).astype(np.float32),
                          "task": "Pick up the white box"})
        ds.save_episode()
    ds.finalize()
    return root


def test_lerobot_defaults_from_a_pretrained_policy_pass():
    assert codes(check_plan(asdict(SmolVLAConfig()), batch_size=64, steps=20_000,
                            pretrained_path="lerobot/smolvla_base"), "error") == set()


def test_seed_report_failures_are_errors_and_a_small_batch_warns():
    fresh = asdict(SmolVLAConfig())  # train_expert_only=True, freeze_vision_encoder=True
    findings = check_plan(fresh, batch_size=1, steps=20_000, pretrained_path=None)
    assert "random-expert" in codes(findings, "error")
    assert "batch-size" in codes(findings, "warning")  # the issue: below 8 warns (the seed's batch 1 collapsed)
    no_norm = asdict(SmolVLAConfig(normalization_mapping={"VISUAL": "IDENTITY", "STATE": "IDENTITY",
                                                           "ACTION": "IDENTITY"}))
    assert "no-normalization" in codes(check_plan(no_norm, 64, 20_000, "lerobot/smolvla_base"), "error")
    no_schedule = asdict(SmolVLAConfig(scheduler_decay_steps=0))
    assert "no-lr-schedule" in codes(check_plan(no_schedule, 64, 20_000, "lerobot/smolvla_base"), "error")
    short = asdict(SmolVLAConfig(scheduler_warmup_steps=100, scheduler_decay_steps=500))
    assert "short-decay" in codes(check_plan(short, 8, 20_000, "lerobot/smolvla_base"), "warning")


def test_from_scratch_needs_unfrozen_vlm_and_expert():
    scratch = asdict(SmolVLAConfig(train_expert_only=False, freeze_vision_encoder=False))
    assert "random-expert" not in codes(check_plan(scratch, 32, 5000, None))


def test_same_start_pose_is_flagged_and_varied_start_poses_are_not(tmp_path):
    same = check_dataset(make_dataset(tmp_path / "same", start_spread=0.0))
    varied = check_dataset(make_dataset(tmp_path / "varied", start_spread=1.0))
    assert "same-start-pose" in codes(same, "warning")
    assert "same-start-pose" not in codes(varied)
    assert codes(varied, "error") == set()


def test_cli_warns_on_batch_size_one_and_exits_nonzero_on_errors(tmp_path):
    root = make_dataset(tmp_path / "ds", start_spread=1.0)
    small = subprocess.run([sys.executable, "-m", "roarm_training.train_cli", "preflight", "--dataset", str(root),
                            "--policy-path", "lerobot/smolvla_base", "--batch-size", "1"], capture_output=True, text=True)
    assert small.returncode == 0 and "[WARNING] batch-size" in small.stdout
    missing = subprocess.run([sys.executable, "-m", "roarm_training.train_cli", "preflight",
                              "--dataset", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 1 and "not-a-dataset" in missing.stderr
