"""`roarm-vla-train export`: a tiny SmolVLA exported in each CPU mode loads in the policy node's runtime with
precision 'auto' in that mode; the report's deviation is finite and matches a recomputation; mixed's plan is
calibrated on dataset samples; bad requests stop with a clear error before anything is written.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lerobot")

from eval_data import dataset_stats, make_pick_dataset  # noqa: E402
from roarm_training import evaluate as ev  # noqa: E402
from roarm_training import export as ex  # noqa: E402
from roarm_training.small_smolvla import build_tiny_checkpoint  # noqa: E402
from vla_policy_node.observation import actions_to_urdf  # noqa: E402
from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig  # noqa: E402

CHUNK = 5


@pytest.fixture(scope="module")
def pick(tmp_path_factory):
    return make_pick_dataset(tmp_path_factory.mktemp("export_pick") / "pick", episodes=4, frames=10)


@pytest.fixture(scope="module")
def checkpoint(pick, tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("export_ckpt") / "tiny", stats=dataset_stats(pick),
                                 chunk_size=CHUNK, fps=10)


def run_cli(*args, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "roarm_training.train_cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def load(path, precision="auto"):
    return PolicyRuntime(RuntimeConfig(checkpoint=str(path), precision=precision))


def config(checkpoint, pick, out, precision, **kwargs):
    kwargs.setdefault("samples", 3)
    kwargs.setdefault("repeats", 1)
    return ex.ExportConfig(checkpoint=str(checkpoint), precision=precision, out=str(out), dataset=str(pick),
                           progress=False, **kwargs)


@pytest.mark.slow
def test_int8_export_loads_in_the_node_runtime_in_int8_and_its_deviation_checks_out(checkpoint, pick, tmp_path):
    out = tmp_path / "int8"
    result = run_cli("export", "--checkpoint", checkpoint, "--precision", "int8", "--dataset", pick, "--out", out,
                     "--samples", 4, "--repeats", 2, "--noise-seed", 3)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / ex.REPORT_FILENAME).read_text())
    headline = json.loads(result.stdout.strip().splitlines()[-1])
    assert headline["precision"] == "int8" and headline["verdict"] == report["verdict"] == "PASS"
    # the recipe: the node's 'auto' applies int8 (action head fp32), the original is untouched
    meta = json.loads((out / "roarm_vla_meta.json").read_text())
    assert meta["precision"]["mode"] == "int8" and meta["joint_names"] == json.loads(
        (checkpoint / "roarm_vla_meta.json").read_text())["joint_names"]
    assert "precision" not in json.loads((checkpoint / "roarm_vla_meta.json").read_text())
    assert (out / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()
    runtime = load(out)
    assert runtime.precision_report.mode == "int8" and "vision_model" in runtime.precision_report.converted
    assert "action_out_proj" in runtime.precision_report.kept_fp32
    assert report["converted"] == runtime.precision_report.converted
    # report figures: finite, consistent, and smaller in memory
    dev = report["deviation"]
    assert dev["samples"] == 4 and dev["steps"] == CHUNK
    for key in ("mean_rad", "max_rad", "mean_frac_of_gt_std", "max_frac_of_gt_std"):
        assert np.isfinite(dev[key]) and dev[key] >= 0
    assert dev["mean_rad"] <= dev["max_rad"] and 0 < dev["mean_rad"]  # int8 changes something
    assert 0 < report["size"]["ratio"] < 1
    assert report["latency"]["original_median_s"] > 0 and report["latency"]["exported_median_s"] > 0
    # recompute sample 0's deviation: same frame, same noise seed (report seed + sample number)
    view = ev.load_dataset(pick)
    p = int(np.flatnonzero(view.index == report["dataset_indices"][0])[0])
    state = actions_to_urdf(view.states[[p]], view.spec)[0]
    original = load(checkpoint, "fp32")
    args = (view.image(p), state, view.task(p))
    diff = np.abs(runtime.predict_chunk(*args, noise_seed=3) - original.predict_chunk(*args, noise_seed=3))
    assert diff.mean() == pytest.approx(dev["per_sample_mean_rad"][0], rel=1e-4, abs=1e-9)
    spread = np.nanstd(actions_to_urdf(view.actions, view.spec), axis=0)
    np.testing.assert_allclose(dev["gt_std_rad"], spread)


@pytest.mark.parametrize("precision", ["bf16", "int4"])
def test_bf16_and_int4_exports_load_in_their_mode_with_a_finite_deviation(checkpoint, pick, tmp_path, precision):
    report = ex.export(config(checkpoint, pick, tmp_path / precision, precision))
    assert report["precision"] == precision and report["calibration"]["needed"] is False
    assert np.isfinite(report["deviation"]["mean_rad"]) and report["deviation"]["max_rad"] > 0
    runtime = load(tmp_path / precision)
    assert runtime.precision_report.mode == precision
    assert "action_in_proj" in runtime.precision_report.kept_fp32


def test_mixed_plan_is_calibrated_on_dataset_samples(checkpoint, pick, tmp_path):
    # tolerance 0: every quantized part moves the actions a little, so every part steps up to fp32
    strict = ex.export(config(checkpoint, pick, tmp_path / "strict", "mixed", part_tolerance=0.0,
                              calibration_samples=2))
    assert strict["plan"] == {"vision_model": "fp32", "connector": "fp32", "text_mlp": "fp32", "expert_mlp": "fp32"}
    tried = [(t["part"], t["mode"]) for t in strict["calibration"]["trials"]]
    assert tried == [("vision_model", "int8"), ("connector", "int8"), ("text_mlp", "int8")]  # CPU plan
    assert all(t["mean_frac_of_gt_std"] > 0 and not t["kept"] for t in strict["calibration"]["trials"])
    # calibration frames are not the report's frames
    assert not set(strict["calibration"]["dataset_indices"]) & set(strict["dataset_indices"])
    assert load(tmp_path / "strict").precision_report.converted == []
    assert strict["deviation"]["max_rad"] == pytest.approx(0.0, abs=1e-6)  # all fp32: the original's actions
    # a loose tolerance keeps the default plan: early layers int8, the action expert fp32
    loose = ex.export(config(checkpoint, pick, tmp_path / "loose", "mixed", part_tolerance=1.0,
                             calibration_samples=2))
    assert loose["plan"] == {"vision_model": "int8", "connector": "int8", "text_mlp": "int8", "expert_mlp": "fp32"}
    meta = json.loads((tmp_path / "loose" / "roarm_vla_meta.json").read_text())
    assert meta["precision"]["plan"] == loose["plan"]
    runtime = load(tmp_path / "loose")
    assert runtime.precision_report.mode == "mixed"
    assert "vision_model:int8" in runtime.precision_report.converted
    assert not any(name.startswith("lm_expert") for name in runtime.precision_report.converted)


def test_bad_requests_stop_with_a_clear_error_and_write_nothing(checkpoint, pick, tmp_path, capsys):
    out = tmp_path / "never"

    def export_error(*extra):
        code = ex.main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--dataset", str(pick),
                        *extra])
        assert code == 2 and not out.exists()
        return capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        ex.main(["export", "--checkpoint", str(checkpoint), "--precision", "int3"])
    assert exc.value.code == 2 and "invalid choice: 'int3'" in capsys.readouterr().err
    assert "fp16 needs a CUDA device" in export_error("--precision", "fp16")
    assert "'tpu' is not supported" in export_error("--precision", "int8", "--device", "tpu")
    if not torch.cuda.is_available():
        assert "CUDA is not available" in export_error("--precision", "int8", "--device", "cuda")
    with pytest.raises(ex.ExportError, match="no config.json"):
        ex.check_request(ex.ExportConfig(checkpoint=str(tmp_path), precision="int8"))
    act = tmp_path / "act"
    act.mkdir()
    (act / "config.json").write_text(json.dumps({"type": "act"}))
    with pytest.raises(ex.ExportError, match="'act' policy"):
        ex.check_request(ex.ExportConfig(checkpoint=str(act), precision="int8"))
    with pytest.raises(ex.ExportError, match="outside the checkpoint"):
        ex.check_request(ex.ExportConfig(checkpoint=str(checkpoint), precision="int8", out=str(checkpoint / "q")))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(ex.ExportError, match="--overwrite"):
        ex.check_request(ex.ExportConfig(checkpoint=str(checkpoint), precision="int8", out=str(busy)))
    with pytest.raises(ex.ExportError, match="no --dataset given"):
        ex.resolve_dataset(ex.ExportConfig(checkpoint=str(checkpoint), precision="int8"), Path(checkpoint))
    # the default folder is <checkpoint>_<precision> beside it
    assert ex.check_request(ex.ExportConfig(checkpoint=str(checkpoint), precision="bf16"))[2] == \
        Path(checkpoint).resolve().with_name("tiny_bf16")
