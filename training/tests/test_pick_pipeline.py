"""The learned-pick pipeline (issue 12): stamp logic with hand-worked inputs, the stage graph's digests, the eval
gate, the mean-action baseline checkpoint through the policy node's runtime, and a tiny end-to-end run (slow)
through the real nodes: record -> convert -> fit -> eval -> trials -> report, then a second run that goes straight
to the trials."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roarm_training import pick_stamps
from roarm_training.pick_pipeline import (STAGES, Pipeline, PipelineConfig, PipelineError, PolicyCollapsed,
                                          check_config, digests, eval_gate, stage_inputs)


# ================================================================================================ stamps
def test_canonical_json_sorts_keys_and_drops_whitespace():
    assert pick_stamps.canonical_json({"b": [2, 3], "a": 1}) == '{"a":1,"b":[2,3]}'
    assert pick_stamps.canonical_json({"p": Path("/x/y"), "t": (1, 2)}) == '{"p":"/x/y","t":[1,2]}'


def test_stage_digest_is_the_sha256_of_the_hand_written_canonical_text():
    text = '{"inputs":{"image_px":96},"stage":"convert","upstream":{"record":"abc"}}'
    assert pick_stamps.stage_digest("convert", {"image_px": 96}, {"record": "abc"}) == \
        hashlib.sha256(text.encode()).hexdigest()
    # another upstream digest or input value gives another digest; key order does not matter
    assert pick_stamps.stage_digest("convert", {"image_px": 96}, {"record": "abd"}) != \
        hashlib.sha256(text.encode()).hexdigest()
    assert pick_stamps.stage_digest("fit", {"a": 1, "b": 2}) == pick_stamps.stage_digest("fit", {"b": 2, "a": 1})
    assert pick_stamps.stage_digest("fit", {"steps": 2000}) != pick_stamps.stage_digest("fit", {"steps": 2001})


def test_up_to_date_needs_the_same_digest_and_every_output(tmp_path):
    stamp, output = tmp_path / "stamps" / "fit.json", tmp_path / "model.bin"
    output.write_bytes(b"w")
    assert not pick_stamps.is_up_to_date(stamp, "d1", [output])
    assert pick_stamps.stale_reason(stamp, "d1", [output]) == "not built yet"
    written = pick_stamps.write_stamp(stamp, "fit", "d1", {"steps": 2000, "lr": 0.0003}, [output], wall_s=12.345)
    assert written["wall_s"] == 12.35 and json.loads(stamp.read_text())["digest"] == "d1"
    assert pick_stamps.is_up_to_date(stamp, "d1", [output])
    assert pick_stamps.stale_reason(stamp, "d1", [output]) is None
    assert not pick_stamps.is_up_to_date(stamp, "d2", [output])
    assert pick_stamps.stale_reason(stamp, "d2", [output], {"steps": 3000, "lr": 0.0003}) == \
        "inputs changed (steps)"
    assert pick_stamps.stale_reason(stamp, "d2", [output], {"steps": 2000, "lr": 0.0003}) == \
        "inputs changed (upstream stage rebuilt)"
    output.unlink()
    assert not pick_stamps.is_up_to_date(stamp, "d1", [output])
    assert pick_stamps.stale_reason(stamp, "d1", [output]).startswith("output missing")


def test_a_torn_stamp_counts_as_not_built(tmp_path):
    stamp = tmp_path / "record.json"
    stamp.write_text('{"digest": "d1", "inp')  # killed while writing (write_stamp renames, but a disk may lie)
    assert pick_stamps.read_stamp(stamp) is None
    assert not pick_stamps.is_up_to_date(stamp, "d1")


def test_file_digest_follows_content_not_date(tmp_path):
    path = tmp_path / "sim_world.yaml"
    path.write_text("a: 1\n")
    first = pick_stamps.file_digest(path)
    assert first == hashlib.sha256(b"a: 1\n").hexdigest()
    os.utime(path, (1, 1))
    assert pick_stamps.file_digest(path) == first
    path.write_text("a: 2\n")
    assert pick_stamps.file_digest(path) != first


# ================================================================================================ stage graph
def test_changing_a_stage_input_rebuilds_it_and_everything_downstream_only(tmp_path):
    base = digests(PipelineConfig(out=tmp_path))
    more_steps = digests(PipelineConfig(out=tmp_path, steps=3000))
    assert [s for s in STAGES if base[s] != more_steps[s]] == ["fit", "eval", "trials", "report"]
    more_trials = digests(PipelineConfig(out=tmp_path, trials=30))
    assert [s for s in STAGES if base[s] != more_trials[s]] == ["trials", "report"]
    bigger_images = digests(PipelineConfig(out=tmp_path, image_px=128))
    assert [s for s in STAGES if base[s] != bigger_images[s]] == ["convert", "fit", "eval", "trials", "report"]
    # options that do not change what a stage produces are not inputs
    assert digests(PipelineConfig(out=tmp_path, threads=1, verbose=True, allow_collapse=True)) == base


def test_fixed_start_pose_records_and_tries_from_home_and_rebuilds_everything(tmp_path):
    from roarm_recorder.expert_demos import record_graph
    from roarm_vla_bringup.graph import load_graph
    from roarm_vla_bringup.runner import parse_sets

    default, fixed = PipelineConfig(out=tmp_path), PipelineConfig(out=tmp_path, fixed_start_pose=True)
    # the default run's record inputs are those of earlier runs (their stamps stay valid); the option rebuilds all
    assert "fixed_start_pose" not in stage_inputs(default, "record")
    assert [s for s in STAGES if digests(default)[s] != digests(fixed)[s]] == list(STAGES)
    assert Pipeline(default).record_overrides() == {}
    graph = record_graph(tmp_path / "bags", overrides=Pipeline(fixed).record_overrides())
    assert graph.node("sim_world").parameters()["random_start_pose"] is False
    assert record_graph(tmp_path / "bags").node("sim_world").parameters()["random_start_pose"] is True
    trial_sets = parse_sets(Pipeline(fixed).trial_overrides())
    pick = load_graph("pick", sim=True, controller="policy", overrides=trial_sets)
    assert pick.node("sim_world").parameters()["random_start_pose"] is False
    assert "sim_world.random_start_pose" not in parse_sets(Pipeline(default).trial_overrides())


def test_perturbation_rebuilds_from_the_recording_and_is_range_checked(tmp_path):
    clean, dart = PipelineConfig(out=tmp_path, perturbation=0.0), PipelineConfig(out=tmp_path)
    assert dart.perturbation == 0.05  # DART by default
    assert "perturbation" not in stage_inputs(clean, "record")  # clean runs' stamps from before the option stay valid
    assert stage_inputs(dart, "record")["perturbation"] == 0.05
    assert [s for s in STAGES if digests(clean)[s] != digests(dart)[s]] == list(STAGES)
    with pytest.raises(PipelineError, match="--perturbation"):
        check_config(PipelineConfig(out=tmp_path, perturbation=0.9))
    misses = PipelineConfig(out=tmp_path, miss_fraction=0.3)
    assert stage_inputs(misses, "record")["miss_fraction"] == 0.3 and "miss_fraction" not in stage_inputs(dart,
                                                                                                          "record")
    assert [s for s in STAGES if digests(misses)[s] != digests(dart)[s]] == list(STAGES)
    with pytest.raises(PipelineError, match="--miss-fraction"):
        check_config(PipelineConfig(out=tmp_path, miss_fraction=1.5))


def test_convert_stops_with_the_cure_when_under_two_demonstrations_survive_it(tmp_path):
    pytest.importorskip("lerobot")
    from bag_fixtures import regular_episode, write_episode

    bags = tmp_path / "bags"
    bags.mkdir()
    regular_episode(bags / "episode_000000_20260101T000000", seconds=1.0)
    # the camera silent from 200 to 700 ms: 4 of the 11 frames at 10 fps have no image within two frame periods
    write_episode(bags / "episode_000001_20260101T000010",
                  image_ms=[k * 1000.0 / 30 for k in range(31) if not 200 <= k * 1000.0 / 30 < 700],
                  state_ms=list(range(0, 1021, 20)), command_ms=list(range(0, 1101, 100)))
    logged = []
    strict = Pipeline(PipelineConfig(out=tmp_path, image_px=32), log=logged.append, as_child=True)
    with pytest.raises(PipelineError, match=r"only 1 of the 2 recorded demonstrations were converted.*"
                                            r"--max-dropped, now 0\.1"):
        strict._stage_convert()
    Pipeline(PipelineConfig(out=tmp_path, image_px=32, max_dropped=0.5), log=logged.append,
             as_child=True)._stage_convert()
    assert json.loads((tmp_path / "dataset" / "meta" / "info.json").read_text())["total_episodes"] == 2
    assert logged[-1] == "[convert] 2 of 2 recorded demonstrations converted"
    assert stage_inputs(PipelineConfig(max_dropped=0.5), "convert")["max_dropped"] == 0.5
    assert "max_dropped" not in stage_inputs(PipelineConfig(), "convert")
    with pytest.raises(PipelineError, match="--max-dropped"):
        check_config(PipelineConfig(out=tmp_path, max_dropped=1.0))


def test_seeds_training_and_trials_are_disjoint_or_refused(tmp_path):
    cfg = PipelineConfig(out=tmp_path, episodes=4, seed=0, trials=3, baseline_trials=2, expert_trials=1,
                         eval_seed=100)
    assert cfg.train_seeds == [0, 1, 2, 3] and cfg.eval_seeds == [100, 101, 102]
    assert stage_inputs(cfg, "record")["seeds"] == [0, 1, 2, 3]
    check_config(cfg)
    with pytest.raises(PipelineError, match="trial seeds 3..3 were used for training"):
        check_config(PipelineConfig(out=tmp_path, episodes=4, seed=0, trials=2, eval_seed=3))
    with pytest.raises(PipelineError, match="--episodes must be >= 2"):
        check_config(PipelineConfig(out=tmp_path, episodes=1))


# ================================================================================================ eval gate
def _eval_report(collapse, reliance, min_ratio=0.05):
    return {"collapse": {"verdict": collapse, "min_ratio": min_ratio, "threshold": 0.3, "ratio": [min_ratio, 0.9]},
            "image_reliance": {"verdict": reliance, "reliance": 0.01, "threshold": 0.2}}


def test_eval_gate_stops_on_a_collapsed_policy_with_the_figures():
    with pytest.raises(PolicyCollapsed, match=r"COLLAPSED.*0\.050 < threshold 0\.3.*--allow-collapse"):
        eval_gate(_eval_report("FAIL", "FAIL"))
    warnings = eval_gate(_eval_report("FAIL", "FAIL"), allow_collapse=True)
    assert len(warnings) == 1 and warnings[0].startswith("WARNING (--allow-collapse)")
    assert eval_gate(_eval_report("PASS", "FAIL")) == [
        "WARNING: image reliance FAIL (reliance 0.010 < 0.2): the policy hardly looks at the camera"]
    assert eval_gate(_eval_report("PASS", "PASS")) == []
    aimless = _eval_report("PASS", "FAIL")
    aimless["image_reliance"].update(reliance=0.3, toward=0.004, toward_threshold=0.05)
    assert eval_gate(aimless) == ["WARNING: image reliance FAIL (toward 0.004 < 0.05): the image moves the policy, "
                                  "but not towards where the box is"]


def test_eval_gate_names_a_collapse_at_frame_0_as_the_state_shortcut():
    report = _eval_report("FAIL", "FAIL", min_ratio=0.95)
    report["collapse"].update(all_samples_verdict="PASS", frame0={"min_ratio": 0.04, "samples": 5, "verdict": "FAIL",
                                                                  "mean_skill": 0.5, "skill_threshold": 0.2})
    with pytest.raises(PolicyCollapsed, match=r"at frame 0.*0\.040 < threshold 0\.3\) \(5 episodes\).*state"):
        eval_gate(report)
    # diverse first chunks that do not follow the boxes: the skill names it
    report["collapse"]["frame0"].update(min_ratio=1.1, mean_skill=-1.36)
    with pytest.raises(PolicyCollapsed, match=r"at frame 0.*explain -1\.36 .* < 0\.2: no better than one chunk"):
        eval_gate(report)


# ================================================================================================ grasp diagnosis
def test_grasp_diagnosis_classes_from_hand_written_steps():
    from roarm_training.pick_diagnose import StepRecord, classify

    def steps(*rows):  # (gap cm, axial cm, lateral cm, grasped)
        return [StepRecord(0.1 * k, [], g / 100, a / 100, l / 100, False, bool(h)) for k, (g, a, l, h) in
                enumerate(rows)]

    box, tol_a, tol_l = 0.03, 0.015, 0.012
    # closes at the right height but 2.5 cm beside the box: the closest step is the one with the smallest
    # max(axial / 1.5, lateral / 1.2) = max(0.2, 2.08) at step 2
    far = steps((5, 6, 8, 0), (5, 1, 3, 0), (4, 0.3, 2.5, 0), (1, 0.3, 2.7, 0))
    assert classify(far, box, tol_a, tol_l, False) == ("never_within_tolerance", 2, 0)
    # inside the tolerance only with the jaws already narrower than the box (3 cm)
    shut = steps((5, 6, 8, 0), (2, 0.5, 0.5, 0), (1, 0.3, 0.4, 0))
    assert classify(shut, box, tol_a, tol_l, False) == ("jaws_not_open_inside", 2, 0)
    # open around the box for one step (step 1), then it moved away and closed beside it
    left = steps((5, 6, 8, 0), (5, 1.4, 1.1, 0), (4, 0.2, 2.5, 0), (1, 0.2, 2.6, 0))
    assert classify(left, box, tol_a, tol_l, False) == ("closed_outside", 1, 1)
    held = steps((5, 1, 1, 0), (2, 0.1, 0.5, 1))
    assert classify(held, box, tol_a, tol_l, False)[0] == "grasped_not_lifted"
    assert classify(held, box, tol_a, tol_l, True)[0] == "success"


# ================================================================================================ baseline
def test_mean_action_checkpoint_answers_the_mean_action_for_every_input(tmp_path):
    pytest.importorskip("lerobot")
    from roarm_training.pick_trials import mean_action_checkpoint
    from roarm_training.small_smolvla import build_tiny_checkpoint
    from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig

    mean = np.array([0.1, -0.2, 1.3, 0.4, -0.5, 0.6], dtype=np.float32)
    one = {"mean": mean, "std": np.full(6, 0.4, np.float32), "min": mean - 1, "max": mean + 1}
    trained = build_tiny_checkpoint(tmp_path / "policy", stats={"observation.state": dict(one), "action": dict(one)},
                                    chunk_size=5)
    baseline = mean_action_checkpoint(trained, tmp_path / "baseline")
    assert (baseline / "model.safetensors").is_symlink()  # the same weights
    task = "Pick up the white box"
    policy = PolicyRuntime(RuntimeConfig(checkpoint=str(trained)))
    constant = PolicyRuntime(RuntimeConfig(checkpoint=str(baseline)))
    inputs = [(np.full((64, 64, 3), 30, np.uint8), np.zeros(6)), (np.full((64, 64, 3), 220, np.uint8),
                                                                   np.full(6, 0.7))]
    chunks = [constant.predict_chunk(image, state, task, noise_seed=k) for k, (image, state) in enumerate(inputs)]
    for chunk in chunks:
        assert chunk.shape == (5, 6)
        np.testing.assert_allclose(chunk, np.tile(mean, (5, 1)), atol=1e-6)
    # the original still answers something else (the random policy's spread around the mean)
    assert not np.allclose(policy.predict_chunk(*inputs[0], task, noise_seed=0), np.tile(mean, (5, 1)), atol=1e-3)


# ================================================================================================ end to end
TINY = ["--episodes", "3", "--steps", "4", "--model", "tiny", "--image-px", "64", "--batch-size", "8",
        "--num-workers", "0", "--eval-samples", "20", "--eval-seed", "100", "--time-limit", "8", "--allow-collapse",
        "--max-dropped", "0.5"]  # a busy CI machine's camera gaps must not leave under two demonstrations


def run_pipeline(out, *args, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-m", "roarm_training.pick_pipeline", "--out", str(out), *TINY, *args],
                            capture_output=True, text=True, env=env, timeout=timeout)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0:  # the lines that say why, then the end of the output
        why = [line for line in lines if any(w in line for w in ("Error", "error", "failed", "Traceback"))]
        pytest.fail("\n".join(why[-20:]) + "\n...\n" + result.stdout[-2500:] + result.stderr[-1500:])
    return json.loads(lines[-1]), result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_pipeline_end_to_end_then_a_second_run_goes_straight_to_the_trials(tmp_path):
    pytest.importorskip("lerobot")
    out = tmp_path / "pick"
    report, log = run_pipeline(out, "--trials", "1", "--baseline-trials", "1", "--expert-trials", "1")
    from roarm_training.pick_report import REQUIRED_KEYS

    assert set(REQUIRED_KEYS) <= set(report)
    assert report["stages_run"] == ["record", "convert", "fit", "eval", "trials"]
    assert report["policy_trials"] == 1 and report["eval_seeds"] == [100]
    assert not set(report["eval_seeds"]) & set(range(report["train_seeds"][0], report["train_seeds"][1] + 1))
    assert report["baseline_success_rate"] == 0.0  # the mean pose never reaches the box
    assert 0.0 <= report["policy_success_rate"] <= 1.0 and 0.0 <= report["expert_success_rate"] <= 1.0
    assert all(report["stage_wall_s"][s] > 0 for s in ("record", "convert", "fit", "eval", "trials"))
    # every stage's output, built by the real tools
    bags = sorted(p for p in (out / "bags").iterdir() if p.is_dir())
    assert len(bags) >= 2 and all((b / "metadata.yaml").is_file() for b in bags)
    info = json.loads((out / "dataset" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and 2 <= info["total_episodes"] <= len(bags)
    assert f"[convert] {info['total_episodes']} of {len(bags)} recorded demonstrations converted" in log
    checkpoint = Path(report["checkpoint"])
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "roarm_vla_meta.json").is_file()
    eval_report = json.loads((out / "eval" / "eval_report.json").read_text())
    assert eval_report["collapse"]["verdict"] in ("PASS", "FAIL") and report["collapse"] == \
        eval_report["collapse"]["verdict"]
    trials = {name: json.loads((out / "trials" / f"{name}.json").read_text()) for name in
              ("policy", "baseline", "expert")}
    assert [r["seed"] for r in trials["policy"]["results"]] == [100]
    assert all(r["status"] in ("SUCCESS", "TIMEOUT") for t in trials.values() for r in t["results"])
    assert (out / "report" / "success.png").stat().st_size > 0
    assert (out / "report" / "contact_sheet.png").stat().st_size > 0
    assert json.loads((out / "report" / "report.json").read_text())["policy_trials"] == 1
    for stage in ("record", "convert", "fit", "eval", "trials"):
        assert f"stage {STAGES.index(stage) + 1}/6 {stage}: running (not built yet)" in log

    # Same demonstrations, dataset, policy and eval; two policy trials, no baseline/expert: only the trials rerun.
    report, log = run_pipeline(out, "--trials", "2", "--baseline-trials", "0", "--expert-trials", "0")
    assert report["stages_run"] == ["trials"]
    for stage in ("record", "convert", "fit", "eval"):
        assert f"stage {STAGES.index(stage) + 1}/6 {stage}: up to date, skipped" in log
    assert "stage 5/6 trials: running (inputs changed (baseline_trials, eval_seeds, expert_trials, trials))" in log
    assert report["policy_trials"] == 2 and report["checkpoint"] == str(checkpoint)
    assert report["expert_trials"] == 0 and report["eval_seeds"] == [100, 101]

    # One more demonstration: the record stage keeps the earlier bags untouched and records only the new seed
    before = {p: (p / "metadata.yaml").read_bytes() for p in (out / "bags").iterdir() if p.is_dir()}
    _, log = run_pipeline(out, "--episodes", "4", "--stage", "record")
    assert f"keeping the {len(before)} demonstrations of the earlier recording (seeds 0..2" in log
    assert "[record] 1 scripted episodes, seeds 3..3" in log
    after = {p: (p / "metadata.yaml").read_bytes() for p in (out / "bags").iterdir() if p.is_dir()}
    assert {p: after[p] for p in before} == before and len(after) <= len(before) + 1


def test_a_success_rate_over_no_trials_is_reported_as_unknown():
    from roarm_training.pick_pipeline import _ci_or_none, _rate_or_none
    from roarm_training.pick_report import rate_of, summary_lines

    none, two_of_four = rate_of([]), rate_of([True, False, True, False])
    assert _rate_or_none(none) is None and _ci_or_none(none) is None
    assert _rate_or_none(two_of_four) == 0.5 and 0.0 < _ci_or_none(two_of_four)[0] < 0.5 < _ci_or_none(two_of_four)[1]
    assert summary_lines({"baseline": none}) == ["baseline: not run (0 trials)"]
