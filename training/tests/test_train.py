"""`roarm-vla-train fit` on LeRobot's trainer: a tiny SmolVLA and a tiny ACT on a dataset made by the converter,
LoRA (resume keeps the adapter, merged export loads in the node's runtime), and every guard rail.

Fits run as real `roarm-vla-train` processes for a few steps; guard rails are checked in-process through
`train.prepare` (everything fit checks before its first step).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lerobot")

from bag_fixtures import custom_data, regular_episode  # noqa: E402
from roarm_description.joints import JOINT_NAMES  # noqa: E402
from roarm_training.convert import ConvertOptions, convert  # noqa: E402
from roarm_training.small_smolvla import build_tiny_checkpoint, build_tiny_vlm  # noqa: E402
from roarm_training.train import (SPLIT_FILENAME, TRAIN_LOG_FILENAME, FitOptions, TrainSetupError,  # noqa: E402
                                  prepare, split_episodes)

IMAGE_KEY = "observation.images.top"
TINY_ACT = ["--set", "pretrained_backbone_weights=null", "--set", "dim_model=32", "--set", "n_heads=2",
            "--set", "dim_feedforward=64", "--set", "n_encoder_layers=1", "--set", "latent_dim=8",
            "--set", "n_vae_encoder_layers=1"]


def run_cli(*args, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "roarm_training.train_cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def fit_args(dataset, output, *extra):
    return ["fit", "--dataset", dataset, "--output", output, "--batch-size", 8, "--num-workers", 0, "--device", "cpu",
            "--log-freq", 1, *extra]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Five episode bags (10 fps, 0.8 s) -> the converter -> a LeRobotDataset with 64x64 images."""
    root = tmp_path_factory.mktemp("train")
    for k in range(5):
        regular_episode(root / "bags" / f"ep_{k}", seconds=0.8, fps=10, custom=custom_data(fps=10))
    return convert([root / "bags"], ConvertOptions(out=root / "dataset", use_videos=False, image_size=(64, 64),
                                                   progress=False)).out


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory):
    """A tiny 'pretrained' SmolVLA with the dataset's stats (stands in for lerobot/smolvla_base offline)."""
    stats = json.loads((Path(dataset) / "meta" / "stats.json").read_text())
    stats = {k: {s: np.asarray(stats[k][s], dtype=np.float32) for s in ("mean", "std", "min", "max")}
             for k in ("observation.state", "action")}
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", stats=stats, chunk_size=5, fps=10)


def options(dataset, output, checkpoint, **kwargs):
    kwargs.setdefault("policy_path", str(checkpoint) if checkpoint else None)
    kwargs.setdefault("batch_size", 8)
    return FitOptions(dataset=dataset, output=output, steps=10, num_workers=0, device="cpu", **kwargs)


def codes(plan, severity):
    return {f.code for f in plan.findings if f.severity == severity}


def load_runtime(path):
    from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig

    return PolicyRuntime(RuntimeConfig(checkpoint=str(path)))


def image(value):
    return np.full((64, 64, 3), value, dtype=np.uint8)


# ================================================================================================ fit
@pytest.mark.slow
def test_fit_tiny_smolvla_writes_checkpoints_meta_split_and_log_and_the_node_loads_it(dataset, checkpoint, tmp_path):
    out = tmp_path / "run"
    result = run_cli(*fit_args(dataset, out, "--policy-path", checkpoint, "--steps", 4, "--save-freq", 2,
                               "--eval-episodes", "1,3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SmolVLA loss fixes applied" in result.stdout
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000002", "000004", "last"]
    split = json.loads((out / SPLIT_FILENAME).read_text())
    assert split["eval_episodes"] == [1, 3] and split["train_episodes"] == [0, 2, 4]
    train_config = json.loads((out / "checkpoints" / "last" / "pretrained_model" / "train_config.json").read_text())
    assert train_config["dataset"]["episodes"] == [0, 2, 4]  # LeRobot's trainer saw the training episodes only
    assert train_config["batch_size"] == 8 and train_config["policy"]["type"] == "smolvla"
    assert train_config["scheduler"]["type"] == "cosine_decay_with_warmup"  # LeRobot's SmolVLA recipe
    for step in ("000002", "000004"):
        meta = json.loads((out / "checkpoints" / step / "pretrained_model" / "roarm_vla_meta.json").read_text())
        assert meta["joint_names"] == list(JOINT_NAMES) and meta["joint_units"] == "radians"
        assert meta["image_key"] == IMAGE_KEY and meta["image_size"] == [64, 64] and meta["fps"] == 10
    log = [json.loads(line) for line in (out / TRAIN_LOG_FILENAME).read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    assert all(np.isfinite(row["loss"]) and row["loss"] > 0 for row in log)
    assert log[-1]["lr"] < log[0]["lr"]  # cosine decay over the run
    runtime = load_runtime(out / "checkpoints" / "last" / "pretrained_model")
    assert runtime.info.policy_type == "smolvla" and runtime.info.fps == 10
    chunk = runtime.predict_chunk(image(128), np.zeros(6), "Pick up the white box", noise_seed=0)
    assert chunk.shape == (5, 6) and np.all(np.isfinite(chunk))


@pytest.mark.slow
def test_fit_tiny_act_end_to_end_loads_in_the_policy_runtime(dataset, tmp_path):
    out = tmp_path / "act"
    result = run_cli(*fit_args(dataset, out, "--policy-type", "act", "--steps", 3, "--chunk-size", 5, *TINY_ACT))
    assert result.returncode == 0, result.stderr[-3000:]
    model = out / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((model / "config.json").read_text())["type"] == "act"
    assert json.loads((model / "roarm_vla_meta.json").read_text())["joint_names"] == list(JOINT_NAMES)
    runtime = load_runtime(model)  # the class comes from the checkpoint's config
    assert type(runtime.policy).__name__ == "ACTPolicy" and runtime.chunk_size == 5
    chunk = runtime.predict_chunk(image(128), np.zeros(6), "Pick up the white box", noise_seed=0)
    assert chunk.shape == (5, 6) and np.all(np.isfinite(chunk))
    other = runtime.predict_chunk(image(250), np.zeros(6), "Pick up the white box")
    assert not np.allclose(chunk, other)  # the camera reaches the policy


@pytest.mark.slow
def test_lora_resume_keeps_the_adapter_and_the_merged_export_loads(dataset, checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "lora"
    result = run_cli(*fit_args(dataset, out, "--policy-path", checkpoint, "--steps", 2, "--save-freq", 2,
                               "--lora-rank", 4, "--lora-alpha", 8))
    assert result.returncode == 0, result.stderr[-3000:]
    model = out / "checkpoints" / "last" / "pretrained_model"
    adapter_config = json.loads((model / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == 8
    assert sorted(adapter_config["target_modules"]) == ["gate_proj", "q_proj", "up_proj", "v_proj"]
    assert Path(adapter_config["base_model_name_or_path"]) == Path(checkpoint).resolve()
    # Plant known adapter values: a resume that kept the adapter continues from them (LeRobot 0.4.4 alone loads
    # the saved adapter frozen and trains a NEW zero/random-initialised one on top).
    weights_file = model / "adapter_model.safetensors"
    planted = {k: torch.full_like(v, 0.125) for k, v in load_file(weights_file).items()}
    save_file(planted, weights_file)
    resumed = run_cli("fit", "--dataset", dataset, "--output", out, "--resume", "--steps", 3, "--num-workers", 0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "checkpoints" / "000003").is_dir()
    after = load_file(out / "checkpoints" / "000003" / "pretrained_model" / "adapter_model.safetensors")
    assert after.keys() == planted.keys()
    values = torch.cat([v.flatten() for v in after.values()])
    assert torch.allclose(values, torch.full_like(values, 0.125), atol=1e-3)  # kept ...
    assert not torch.equal(values, torch.full_like(values, 0.125))  # ... and trained (one more step)

    merged = tmp_path / "merged"
    result = run_cli("merge-lora", "--checkpoint", out / "checkpoints" / "000003" / "pretrained_model",
                     "--output", merged)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(merged.glob("adapter_*")) and (merged / "roarm_vla_meta.json").is_file()
    base, full = load_file(Path(checkpoint) / "model.safetensors"), load_file(merged / "model.safetensors")
    key = "model.vlm_with_expert.lm_expert.layers.0.self_attn.q_proj.weight"
    lora = {k.split("q_proj.")[1]: v for k, v in after.items() if "lm_expert.layers.0.self_attn.q_proj." in k}
    expected = base[key] + (8 / 4) * lora["lora_B.weight"] @ lora["lora_A.weight"]  # W + alpha/r * B A
    assert torch.allclose(full[key], expected, atol=1e-5)
    merged_runtime = load_runtime(merged)
    adapter_runtime = load_runtime(out / "checkpoints" / "000003" / "pretrained_model")  # merged at load
    args = (image(128), np.zeros(6), "Pick up the white box")
    np.testing.assert_allclose(merged_runtime.predict_chunk(*args, noise_seed=1),
                               adapter_runtime.predict_chunk(*args, noise_seed=1), atol=1e-4)
    assert not np.allclose(merged_runtime.predict_chunk(*args, noise_seed=1),
                           load_runtime(checkpoint).predict_chunk(*args, noise_seed=1), atol=1e-3)


@pytest.mark.slow
def test_accelerate_launch_single_process_dry_run(dataset, checkpoint, tmp_path):
    """The multi-GPU / multi-node path: `accelerate launch` starts LeRobot's trainer (one CPU process here)."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    out = tmp_path / "accel"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(
        [accelerate, "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "roarm_training.train_cli",
         *map(str, fit_args(dataset, out, "--policy-path", checkpoint, "--steps", 2))],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Effective batch size: 8 x 1 = 8" in result.stdout + result.stderr
    assert (out / "checkpoints" / "last" / "pretrained_model" / "roarm_vla_meta.json").is_file()


# ================================================================================================ guard rails
def test_a_plain_plan_passes_and_batch_size_below_8_only_warns(dataset, checkpoint, tmp_path):
    plan = prepare(options(dataset, tmp_path / "a", checkpoint))
    assert codes(plan, "error") == set() and "batch-size" not in codes(plan, "warning")
    small = prepare(options(dataset, tmp_path / "b", checkpoint, batch_size=2))
    assert "batch-size" in codes(small, "warning")
    assert small.train_config.batch_size == 2


def test_missing_stats_stop_before_the_first_step(dataset, checkpoint, tmp_path):
    copy = tmp_path / "nostats"
    shutil.copytree(dataset, copy)
    (copy / "meta" / "stats.json").unlink()
    with pytest.raises(TrainSetupError, match="no-stats"):
        prepare(options(copy, tmp_path / "out", checkpoint))
    assert not (tmp_path / "out").exists()


def test_state_shape_mismatch_stops(dataset, tmp_path):
    five = build_tiny_checkpoint(tmp_path / "five", state_dim=5, chunk_size=5)
    with pytest.raises(TrainSetupError, match="feature-shape.*observation.state.*\\[5\\].*\\[6\\]"):
        prepare(options(dataset, tmp_path / "out", five))


def test_camera_name_mismatch_stops_and_a_rename_map_fixes_it(dataset, tmp_path):
    other = build_tiny_checkpoint(tmp_path / "cam1", camera_key="observation.images.camera1", chunk_size=5)
    with pytest.raises(TrainSetupError, match="image-key.*--rename-map"):
        prepare(options(dataset, tmp_path / "out", other))
    plan = prepare(options(dataset, tmp_path / "out", other,
                           rename_map={IMAGE_KEY: "observation.images.camera1"}))
    assert codes(plan, "error") == set()


def test_joint_units_and_joint_names_mismatch_stop(dataset, checkpoint, tmp_path):
    degrees = tmp_path / "deg"
    shutil.copytree(checkpoint, degrees)
    meta = json.loads((degrees / "roarm_vla_meta.json").read_text())
    (degrees / "roarm_vla_meta.json").write_text(json.dumps({**meta, "joint_units": "degrees"}))
    with pytest.raises(TrainSetupError, match="joint-units"):
        prepare(options(dataset, tmp_path / "out", degrees))
    swapped = tmp_path / "swapped"
    shutil.copytree(checkpoint, swapped)
    names = list(JOINT_NAMES)
    names[0], names[1] = names[1], names[0]
    (swapped / "roarm_vla_meta.json").write_text(json.dumps({**meta, "joint_names": names}))
    with pytest.raises(TrainSetupError, match="joint-names"):
        prepare(options(dataset, tmp_path / "out", swapped))


def test_a_random_action_expert_needs_the_flag_and_from_scratch_unfreezes_the_vlm(dataset, tmp_path):
    vlm = build_tiny_vlm(tmp_path / "vlm")  # an architecture without weights: nothing pretrained
    fresh = dict(policy_path=None, policy_type="smolvla", vlm=str(vlm), chunk_size=5)
    with pytest.raises(TrainSetupError, match="random-expert.*--allow-random-expert"):
        prepare(options(dataset, tmp_path / "out", None, **fresh))
    plan = prepare(options(dataset, tmp_path / "out", None, allow_random_expert=True, **fresh))
    policy = plan.train_config.policy
    assert policy.load_vlm_weights is False
    assert policy.train_expert_only is False and policy.freeze_vision_encoder is False
    assert any("train_expert_only=false" in note for note in plan.notes)  # said, not silent


def test_lora_needs_a_pretrained_policy_and_output_must_be_new(dataset, checkpoint, tmp_path):
    with pytest.raises(TrainSetupError, match="lora-from-scratch"):
        prepare(options(dataset, tmp_path / "out", None, policy_path=None, policy_type="act", lora_rank=8,
                        overrides={"pretrained_backbone_weights": None}))
    (tmp_path / "exists").mkdir()
    with pytest.raises(TrainSetupError, match="exists.*--resume"):
        prepare(options(dataset, tmp_path / "exists", checkpoint))


def test_split_is_by_whole_episode_seeded_and_explicit_episodes_win():
    train, held = split_episodes(range(20), None, 0.2, seed=3)
    assert len(held) == 4 and sorted(train + held) == list(range(20)) and not set(train) & set(held)
    assert split_episodes(range(20), None, 0.2, seed=3) == (train, held)
    assert split_episodes(range(20), None, 0.2, seed=4) != (train, held)
    assert split_episodes(range(5), None, 0.01, seed=0)[1].__len__() == 1  # at least one held-out episode
    assert split_episodes(range(5), [4, 0], 0.5, seed=0) == ([1, 2, 3], [0, 4])
    assert split_episodes(range(5), None, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(TrainSetupError, match="not in the dataset"):
        split_episodes(range(5), [7], 0.1, seed=0)
    with pytest.raises(TrainSetupError, match="no training episode"):
        split_episodes(range(2), [0, 1], 0.1, seed=0)


def test_cli_reports_a_guard_rail_with_exit_status_2(dataset, tmp_path):
    result = run_cli(*fit_args(dataset, tmp_path / "out", "--policy-type", "smolvla", "--vlm",
                               build_tiny_vlm(tmp_path / "vlm"), "--steps", 2))
    assert result.returncode == 2
    assert "random-expert" in result.stderr and "nothing was started" in result.stderr
    assert not (tmp_path / "out").exists()
