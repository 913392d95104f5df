"""Small pick-like LeRobot datasets and short LeRobot training runs for the evaluation and export tests.

Each episode: a white box at a random place on a grey table (64x64 RGB), a 6-joint state that starts at a random
pose and moves to a target that depends on the box, action = the next state. So the action is mostly
"state + a small step" (learnable from the state in a few dozen steps) and the direction of the step depends on
the image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from roarm_description.joints import HOME_POSITIONS, JOINT_NAMES

IMAGE_KEY = "observation.images.top"
TASK = "Pick up the white box"


def render(box_xy: np.ndarray, size: int = 64) -> np.ndarray:
    image = np.full((size, size, 3), 90, dtype=np.uint8)
    cx, cy = (np.clip(box_xy, 0.1, 0.9) * size).astype(int)
    image[max(cy - 5, 0):cy + 5, max(cx - 5, 0):cx + 5] = 250
    return image


def make_pick_dataset(root: Path, episodes: int = 10, frames: int = 16, seed: int = 0, fps: int = 10,
                      fixed_start: bool = False) -> Path:
    """A LeRobotDataset v3 at ``root`` (images in parquet, no video) + meta/roarm_vla.json (radians, URDF names).
    fixed_start: every episode starts from the home pose (the seed's state shortcut)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    rng = np.random.default_rng(seed)
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": list(JOINT_NAMES)},
        "action": {"dtype": "float32", "shape": (6,), "names": list(JOINT_NAMES)},
        IMAGE_KEY: {"dtype": "image", "shape": (64, 64, 3), "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create(repo_id="local/pick", fps=fps, features=features, root=root, robot_type="roarm_m3",
                               use_videos=False)
    for _ in range(episodes):
        box = rng.uniform(0.15, 0.85, 2)
        target = HOME_POSITIONS + np.array([(box[0] - 0.5) * 2.0, 0.6 + box[1] * 0.6, 0.3 - box[1] * 0.5,
                                            0.2, 0.0, 0.5])
        start = HOME_POSITIONS + rng.normal(0.0, 0.3, 6) * (0.0 if fixed_start else 1.0)
        image = render(box)
        path = [start + (target - start) * min(1.0, k / (frames - 4)) for k in range(frames + 1)]
        for k in range(frames):
            ds.add_frame({"observation.state": path[k].astype(np.float32),
                          "action": path[k + 1].astype(np.float32),
                          IMAGE_KEY: image, "task": TASK})
        ds.save_episode()
    ds.finalize()
    meta = {"joint_names": list(JOINT_NAMES), "joint_units": "radians", "image_key": IMAGE_KEY,
            "image_size": [64, 64], "fps": float(fps)}
    (Path(root) / "meta" / "roarm_vla.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(root)


def dataset_stats(root: Path) -> dict:
    stats = json.loads((Path(root) / "meta" / "stats.json").read_text())
    return {key: {name: np.asarray(stats[key][name], dtype=np.float32) for name in ("mean", "std", "min", "max")}
            for key in ("observation.state", "action")}


def lerobot_train(checkpoint: Path, dataset: Path, output: Path, steps: int, episodes: list[int],
                  batch_size: int = 8, log_freq: int = 5) -> Path:
    """``lerobot-train`` (LeRobot's own trainer) from ``checkpoint`` for ``steps`` steps on ``episodes``.

    Its console log goes to ``output/train.log`` (the loss curve's source). Returns the last pretrained_model.
    """
    command = [
        sys.executable, "-m", "lerobot.scripts.lerobot_train",
        f"--policy.path={checkpoint}", "--policy.push_to_hub=false", "--policy.device=cpu",
        f"--dataset.repo_id=local/pick", f"--dataset.root={dataset}", f"--dataset.episodes={episodes}",
        f"--output_dir={output}", f"--steps={steps}", f"--batch_size={batch_size}", "--num_workers=0",
        f"--save_freq={steps}", f"--log_freq={log_freq}", "--wandb.enable=false", "--eval_freq=0",
        "--policy.optimizer_lr=1e-3", "--policy.scheduler_warmup_steps=2", f"--policy.scheduler_decay_steps={steps}",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    output.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"lerobot-train failed ({result.returncode}):\n{log[-4000:]}")
    (output / "train.log").write_text(log)
    return output / "checkpoints" / "last" / "pretrained_model"
