"""`roarm-vla-train eval` and the success-rate helper.

A tiny SmolVLA is fit for a few steps by `roarm-vla-train fit` (LeRobot's trainer) on a dataset made by the
converter; the evaluation must default to its held-out episodes, write the JSON report and PNG plots, and give other
figures than the untrained policy. The checks are shown to fail where they must: the collapse detector on a constant
policy and on the mean-action baseline, the image-reliance check on a policy that never reads the image (same
state, same start noise, another episode's image). Oracles that return the ground truth show the checks can pass, with
figures worked out by hand (reliance 1, diversity 1, error 0).
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

from bag_fixtures import custom_data, regular_episode  # noqa: E402
from eval_data import dataset_stats, make_pick_dataset  # noqa: E402
from roarm_training import evaluate as ev  # noqa: E402
from roarm_training.convert import ConvertOptions, convert  # noqa: E402
from roarm_training.small_smolvla import build_tiny_checkpoint  # noqa: E402
from roarm_training.stats import success_rate, success_rate_of  # noqa: E402

FIT_STEPS = 6
CHUNK = 5
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "roarm_training.train_cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def stats_of(root):
    stats = json.loads((Path(root) / "meta" / "stats.json").read_text())
    return {k: {s: np.asarray(stats[k][s], dtype=np.float32) for s in ("mean", "std", "min", "max")}
            for k in ("observation.state", "action")}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Five episode bags -> the converter -> a LeRobotDataset (64x64 images), as in the fit tests."""
    root = tmp_path_factory.mktemp("eval_conv")
    for k in range(5):
        regular_episode(root / "bags" / f"ep_{k}", seconds=0.8, fps=10, custom=custom_data(fps=10))
    return convert([root / "bags"], ConvertOptions(out=root / "dataset", use_videos=False, image_size=(64, 64),
                                                   progress=False)).out


@pytest.fixture(scope="module")
def untrained(converted, tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("eval_ckpt") / "tiny", stats=stats_of(converted),
                                 chunk_size=CHUNK, fps=10)


@pytest.fixture(scope="module")
def fitted(converted, untrained, tmp_path_factory):
    """`roarm-vla-train fit` for a few steps, episodes 3 and 4 held out; returns the run folder."""
    out = tmp_path_factory.mktemp("eval_fit") / "run"
    result = run_cli("fit", "--dataset", converted, "--output", out, "--policy-path", untrained, "--batch-size", 8,
                     "--num-workers", 0, "--device", "cpu", "--log-freq", 1, "--steps", FIT_STEPS,
                     "--save-freq", FIT_STEPS, "--lr", "1e-3", "--eval-episodes", "3,4")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def cli_eval(converted, fitted, tmp_path_factory):
    """`roarm-vla-train eval` on the fitted checkpoint with no --episodes: (process result, report folder)."""
    out = tmp_path_factory.mktemp("eval_out")
    result = run_cli("eval", "--checkpoint", fitted / "checkpoints" / "last" / "pretrained_model",
                     "--dataset", converted, "--out", out, "--max-samples", 8, "--reliance-samples", 4)
    return result, out


@pytest.fixture(scope="module")
def pick(tmp_path_factory):
    """Four episodes whose target depends on the box in the image (each episode has its own image)."""
    return make_pick_dataset(tmp_path_factory.mktemp("eval_pick") / "pick", episodes=4, frames=10)


@pytest.fixture(scope="module")
def pick_view(pick):
    return ev.load_dataset(pick)


# ================================================================================================ CLI, split
@pytest.mark.slow
def test_eval_cli_defaults_to_held_out_episodes_and_writes_json_report_and_pngs(cli_eval):
    result, out = cli_eval
    report = json.loads((out / "eval_report.json").read_text())
    assert result.returncode == (1 if report["verdict"] == "FAIL" else 0), result.stderr[-3000:]
    assert report["split"]["eval_episodes"] == [3, 4] and report["split"]["train_episodes"] == [0, 1, 2]
    assert report["split"]["source"].endswith("episode_split.json") and not report["split"]["on_training_episodes"]
    assert report["horizon"] == CHUNK and report["samples"] == 8
    assert len(report["policy"]["mae"]) == 6 and all(np.isfinite(report["policy"]["mae_deg"]))
    np.testing.assert_allclose(report["policy"]["mae_deg"], np.degrees(report["policy"]["mae"]))
    assert {row["episode"] for row in report["table"]} <= {3, 4}
    for name in ("episode_trace", "checks", "loss_curve"):
        png = Path(report["plots"][name])
        assert png.parent == out and png.read_bytes()[:8] == PNG_MAGIC
    assert report["loss_curve"]["source"].endswith("train_log.jsonl") and report["loss_curve"]["points"] == FIT_STEPS
    summary = json.loads(result.stdout.strip().splitlines()[-1])  # the last line: headline figures
    assert summary["verdict"] == report["verdict"]
    assert summary["mean_mae"] == pytest.approx(report["policy"]["mean_mae"], abs=1e-5)


@pytest.mark.slow
def test_trained_and_untrained_policies_get_different_figures_against_the_same_baseline(converted, untrained,
                                                                                        cli_eval):
    trained = json.loads((cli_eval[1] / "eval_report.json").read_text())
    config = ev.EvalConfig(checkpoint=str(untrained), dataset=str(converted), episodes=[3, 4], max_samples=8,
                           reliance_samples=4, plots=False)
    fresh = ev.evaluate(config)
    # the untrained checkpoint has no training record: it says so, and its baseline is the other episodes' mean
    assert any("unknown" in w for w in fresh["split"]["warnings"])
    np.testing.assert_allclose(fresh["baseline"]["mean_action"], trained["baseline"]["mean_action"])
    assert fresh["baseline"]["mean_mae"] == pytest.approx(trained["baseline"]["mean_mae"])
    assert fresh["policy"]["mean_mae"] != pytest.approx(trained["policy"]["mean_mae"], rel=1e-3)
    assert not np.allclose(fresh["policy"]["mae"], trained["policy"]["mae"], rtol=1e-3)


def test_eval_refuses_training_episodes_unless_allowed_and_then_flags_them(converted, fitted, capsys):
    checkpoint = fitted / "checkpoints" / "last" / "pretrained_model"
    code = ev.main(["eval", "--checkpoint", str(checkpoint), "--dataset", str(converted), "--episodes", "0", "3"])
    assert code == 2
    assert "[0] were used for TRAINING" in capsys.readouterr().err
    record = ev.read_training_record(checkpoint)
    split = ev.resolve_split(record, [0, 1, 2, 3, 4], [0, 3], allow_train_episodes=True)
    assert split.on_training_episodes and any("MEMORISATION" in w.upper() for w in split.warnings)
    with pytest.raises(ev.EvaluationError, match="not in the dataset"):
        ev.resolve_split(record, [0, 1, 2, 3, 4], [7], allow_train_episodes=False)
    with pytest.raises(ev.EvaluationError, match="cannot tell which episodes"):
        ev.resolve_split({}, [0, 1, 2, 3, 4], None, allow_train_episodes=False)


# ================================================================================================ collapse
def test_collapse_detector_fails_a_constant_policy_and_the_mean_action_baseline(pick, pick_view):
    constant = ev.ConstantPredictor(pick_view.actions.mean(axis=0), CHUNK)
    config = ev.EvalConfig(checkpoint="none", dataset=str(pick), episodes=[2, 3], max_samples=12, plots=False)
    report = ev.evaluate(config, predictor=constant, view=pick_view)
    assert report["collapse"]["verdict"] == "FAIL" and report["collapse"]["min_ratio"] == 0.0
    assert report["baseline_collapse"]["verdict"] == "FAIL" and report["baseline_collapse"]["min_ratio"] == 0.0
    assert report["verdict"] == "FAIL"
    # a constant policy ignores its image as well
    assert report["image_reliance"]["reliance"] == 0.0 and report["image_reliance"]["verdict"] == "FAIL"


def test_diversity_and_reliance_hand_worked():
    # joint 0: pred std 1, truth std 2 -> 0.5; joint 1: truth does not move -> not judged
    out = ev.diversity(np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[0.0, 3.0], [4.0, 3.0]]), threshold=0.3)
    assert out["ratio"] == [0.5, None] and out["verdict"] == "PASS"
    assert ev.diversity(np.array([[0.0], [0.5]]), np.array([[0.0], [4.0]]), threshold=0.3)["verdict"] == "FAIL"
    # the swap moves the prediction half as far as the truth, in the same direction (per-joint scale 2)
    truth_own, truth_other = np.zeros((1, 2, 1)), np.array([[[2.0], [4.0]]])
    pred_own = np.ones((1, 2, 1))
    pred_swapped = pred_own + 0.5 * (truth_other - truth_own)
    out = ev.reliance(pred_own, pred_swapped, truth_own, truth_other, np.ones((1, 2), bool), np.array([2.0]), 0.2)
    # dpred/2 = [0.5, 1] -> rms sqrt(1.25/2); dtruth/2 = [1, 2] -> rms sqrt(5/2); ratio 0.5
    assert out["moved_rms"] == pytest.approx(np.sqrt(0.625)) and out["truth_rms"] == pytest.approx(np.sqrt(2.5))
    assert out["reliance"] == pytest.approx(0.5) and out["cosine"] == pytest.approx(1.0) and out["verdict"] == "PASS"
    # toward: sum(dpred . dtruth) / sum(dtruth^2) = 0.5 (the prediction makes half of the true change)
    assert out["toward"] == pytest.approx(0.5)
    # the same magnitude across the true change (dtruth/2 = [1, 2] -> dpred/2 = [1, -0.5]): moved, not towards it
    across = pred_own + np.array([[[2.0], [-1.0]]])
    out = ev.reliance(pred_own, across, truth_own, truth_other, np.ones((1, 2), bool), np.array([2.0]), 0.2)
    # dpred . dtruth = 1*1 + (-0.5)*2 = 0 -> toward 0; reliance sqrt(1.25/2) / sqrt(5/2) = 0.5 still
    assert out["reliance"] == pytest.approx(0.5) and out["toward"] == pytest.approx(0.0)
    assert out["verdict"] == "FAIL"


# ================================================================================================ reliance
class Oracle:
    """Returns the ground-truth chunk. ``reads_image``: the episode comes from the image (each pick episode has its
    own image) and the frame from the state; otherwise both come from the state (a state-only policy)."""

    def __init__(self, view, reads_image: bool) -> None:
        self.view, self.reads_image, self.chunk_size = view, reads_image, CHUNK
        self.by_state = {view.states[p].tobytes(): p for p in range(len(view.states))}
        self.by_image = {view.image(view.positions_of(e)[0]).tobytes(): e for e in view.episodes}

    def __call__(self, image, state, task, noise_seed):
        p = self.by_state[np.asarray(state, dtype=float).tobytes()]
        q = p
        if self.reads_image:
            own = self.view.positions_of(self.by_image[image.tobytes()])
            q = own[self.view.frame[own] == self.view.frame[p]][0]
        return ev.ground_truth_chunks(self.view.actions, self.view.episode, [q], CHUNK)[0][0]


def test_an_image_reading_oracle_passes_with_reliance_one_and_a_state_only_one_fails(pick, pick_view):
    config = ev.EvalConfig(checkpoint="none", dataset=str(pick), episodes=[1, 2, 3], max_samples=15, plots=False)
    seeing = ev.evaluate(config, predictor=Oracle(pick_view, reads_image=True), view=pick_view)
    assert seeing["policy"]["mean_mae"] == pytest.approx(0.0, abs=1e-12)
    assert seeing["collapse"]["verdict"] == "PASS" and seeing["collapse"]["min_ratio"] == pytest.approx(1.0)
    assert seeing["image_reliance"]["reliance"] == pytest.approx(1.0)
    assert seeing["image_reliance"]["cosine"] == pytest.approx(1.0)
    assert seeing["verdict"] == "PASS"
    blind = ev.evaluate(config, predictor=Oracle(pick_view, reads_image=False), view=pick_view)
    assert blind["policy"]["mean_mae"] == pytest.approx(0.0, abs=1e-12)  # perfect on its own episodes...
    assert blind["collapse"]["verdict"] == "PASS"  # ...diverse, not collapsed...
    assert blind["image_reliance"]["reliance"] == 0.0  # ...and blind: the camera changes nothing
    assert blind["image_reliance"]["verdict"] == "FAIL" and blind["verdict"] == "FAIL"


def test_frame0_collapse_hand_worked():
    # two frame-0 samples and one later one; horizon 3, the second frame-0 chunk ends after step 1
    truth = np.array([[[0.0], [1.0], [2.0]], [[0.0], [3.0], [3.0]], [[5.0], [5.0], [5.0]]])
    mask = np.array([[True, True, True], [True, True, False], [True, True, True]])
    first = np.array([True, True, False])
    blind = truth.copy()
    blind[1] = blind[0]  # one chunk for both episodes' first frame: what a state-only policy does there
    out = ev.frame0_diversity(blind, truth, mask, first, threshold=0.3)
    assert out["step"] == 1 and out["samples"] == 2  # the last step both frame-0 chunks have
    assert out["ratio"] == [0.0] and out["verdict"] == "FAIL"  # truth at step 1: 1 vs 3 (std 1); blind: 1 vs 1
    # skill = 1 - SSE / SST: truth 1, 3 (mean 2, SST 2); blind 1, 1 (SSE 0 + 4) -> 1 - 4 / 2 = -1
    assert out["skill"] == [pytest.approx(-1.0)] and out["mean_skill"] == pytest.approx(-1.0)
    # first chunks as diverse as the truth, but each episode gets the other's (the image moves it, not towards
    # the box): the std ratio passes, the skill fails it (SSE 4 + 4 -> 1 - 8 / 2 = -3)
    crossed = truth.copy()
    crossed[0, 1], crossed[1, 1] = 3.0, 1.0
    out = ev.frame0_diversity(crossed, truth, mask, first, threshold=0.3, skill_threshold=0.2)
    assert out["ratio"] == [pytest.approx(1.0)] and out["skill"] == [pytest.approx(-3.0)]
    assert out["verdict"] == "FAIL"
    exact = ev.frame0_diversity(truth, truth, mask, first, threshold=0.3, skill_threshold=0.2)
    assert exact["mean_skill"] == pytest.approx(1.0) and exact["verdict"] == "PASS"
    check = ev.collapse_check(blind, truth, mask, first, threshold=0.3)
    # across all samples the first actions are [0, 0, 5] both ways: diverse; the frame-0 view fails the check
    assert check["all_samples_verdict"] == "PASS" and check["min_ratio"] == pytest.approx(1.0)
    assert check["verdict"] == "FAIL" and check["frame0"]["verdict"] == "FAIL"
    assert ev.collapse_check(truth, truth, mask, first, threshold=0.3)["verdict"] == "PASS"
    assert ev.frame0_diversity(truth, truth, mask, np.array([True, False, False]), 0.3)["verdict"] == "NOT_MEASURED"


def test_a_state_only_policy_from_one_start_pose_fails_the_collapse_check_at_frame_0(tmp_path):
    """The seed's failure on purpose: every episode starts from the home pose, so the state cannot say where the box
    is at frame 0. A perfect state-only oracle is right everywhere else (diverse across all samples) but answers one
    chunk for every episode's first frame; the image-reading oracle does not."""
    fixed = make_pick_dataset(tmp_path / "fixed", episodes=4, frames=10, fixed_start=True)
    view = ev.load_dataset(fixed)
    config = ev.EvalConfig(checkpoint="none", dataset=str(fixed), episodes=[0, 1, 2, 3], max_samples=15,
                           plots=False)
    blind = ev.evaluate(config, predictor=Oracle(view, reads_image=False), view=view)
    assert blind["collapse"]["all_samples_verdict"] == "PASS"
    assert blind["collapse"]["frame0"]["min_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert blind["collapse"]["frame0"]["mean_skill"] <= 0.0  # one chunk: at best the truths' mean
    assert blind["collapse"]["verdict"] == "FAIL" and blind["image_reliance"]["verdict"] == "FAIL"
    seeing = ev.evaluate(config, predictor=Oracle(view, reads_image=True), view=view)
    assert seeing["collapse"]["frame0"]["min_ratio"] == pytest.approx(1.0)
    assert seeing["collapse"]["frame0"]["mean_skill"] == pytest.approx(1.0)
    assert seeing["collapse"]["verdict"] == "PASS" and seeing["verdict"] == "PASS"


class Recording:
    """Wraps a predictor; records every call; ``zero_image`` feeds black pixels instead of the camera image."""

    def __init__(self, inner, zero_image: bool) -> None:
        self.inner, self.zero_image, self.chunk_size, self.calls = inner, zero_image, inner.chunk_size, []

    def __call__(self, image, state, task, noise_seed):
        self.calls.append((image.tobytes(), np.asarray(state).tobytes(), noise_seed))
        return self.inner(np.zeros_like(image) if self.zero_image else image, state, task, noise_seed)


@pytest.mark.slow
def test_image_reliance_fails_a_smolvla_whose_image_is_zeroed_same_state_same_noise(pick, pick_view, untrained,
                                                                                   tmp_path):
    checkpoint = build_tiny_checkpoint(tmp_path / "pick_tiny", stats=dataset_stats(pick), chunk_size=CHUNK, fps=10,
                                       vlm_folder=Path(untrained) / "vlm")
    policy = ev.PolicyPredictor(checkpoint, pick_view.spec)
    config = ev.EvalConfig(checkpoint=str(checkpoint), dataset=str(pick), episodes=[2, 3], max_samples=6,
                           reliance_samples=4, noise_seed=7, plots=False)
    blind = Recording(policy, zero_image=True)
    report = ev.evaluate(config, predictor=blind, view=pick_view)
    assert report["image_reliance"]["reliance"] == 0.0 and report["image_reliance"]["verdict"] == "FAIL"
    own_calls, swap_calls = blind.calls[:report["samples"]], blind.calls[report["samples"]:]
    assert len(swap_calls) >= report["image_reliance"]["pairs"] == 4
    own = {state: image for image, state, _ in own_calls}
    for image, state, seed in swap_calls[:4]:  # the swap: same state and noise, the other episode's image
        assert state in own and image != own[state] and seed == 7
    assert {seed for _, _, seed in blind.calls} == {7}
    # the same policy reading its image moves when the image changes (the zero above comes from the image alone)
    seeing = ev.evaluate(config, predictor=Recording(policy, zero_image=False), view=pick_view)
    assert seeing["image_reliance"]["reliance"] > 0.0


# ================================================================================================ stats
def test_success_rate_wilson_interval_hand_worked():
    # 7/10, z = 1.96: centre (0.7 + z^2/20) / (1 + z^2/10) = 0.64449, half z*sqrt(0.021 + z^2/400) / 1.38415 = 0.24772
    rate = success_rate(7, 10)
    assert rate.rate == 0.7
    assert rate.ci95_low == pytest.approx(0.39677, abs=1e-4) and rate.ci95_high == pytest.approx(0.89221, abs=1e-4)
    assert rate.summary() == "7/10 = 70% (95% Wilson CI 40% .. 89%)"
    # 0/10: low 0, high (z^2/10) / (1 + z^2/10) = 0.38415 / 1.38415
    zero = success_rate(0, 10)
    assert zero.ci95_low == 0.0 and zero.ci95_high == pytest.approx(0.27753, abs=1e-4)
    assert success_rate(10, 10).ci95_low == pytest.approx(1 - 0.27753, abs=1e-4)
    assert success_rate_of([True, False, True, True]).as_dict() == success_rate(3, 4).as_dict()
    assert success_rate(0, 0).rate == 0.0 and (success_rate(0, 0).ci95_low, success_rate(0, 0).ci95_high) == (0, 1)
    for bad in ((11, 10), (-1, 10), (1, -1)):
        with pytest.raises(ValueError, match="successes"):
            success_rate(*bad)


@pytest.mark.slow
def test_an_export_of_the_fitted_checkpoint_keeps_its_held_out_split_and_is_evaluated_in_its_mode(
        converted, fitted, tmp_path):
    from roarm_training import export as ex

    exported = tmp_path / "int8"  # outside the run folder: the split must travel with the export
    ex.export(ex.ExportConfig(checkpoint=str(fitted / "checkpoints" / "last" / "pretrained_model"),
                              precision="int8", out=str(exported), samples=2, repeats=1, progress=False))
    assert json.loads((exported / "episode_split.json").read_text())["eval_episodes"] == [3, 4]
    report = ev.evaluate(ev.EvalConfig(checkpoint=str(exported), dataset=str(converted), max_samples=4,
                                       reliance_samples=2, plots=False))
    assert report["precision"] == "int8" and report["split"]["eval_episodes"] == [3, 4]
    assert report["split"]["source"] == str(exported / "episode_split.json")
