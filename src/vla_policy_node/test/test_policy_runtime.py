"""PolicyRuntime, precision modes and the inference worker on a real tiny SmolVLA checkpoint (offline)."""

import threading
import time

import numpy as np
import pytest

from roarm_description.joints import HOME_POSITIONS, JOINT_NAMES
from vla_policy_node.inference_worker import InferenceWorker, Observation
from vla_policy_node.policy_runtime import PolicyLoadError, PolicyRuntime, RuntimeConfig, rtc_available
from vla_policy_node.precision_compare import compare_precisions

TASK = "Pick up the white box"


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint):
    return PolicyRuntime(RuntimeConfig(checkpoint=str(tiny_checkpoint)))


def observation(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), HOME_POSITIONS + rng.normal(0, 0.1, 6)


def test_predict_chunk_shape_units_and_seeded_noise(runtime):
    image, state = observation()
    chunk = runtime.predict_chunk(image, state, TASK, noise_seed=3)
    assert chunk.shape == (10, len(JOINT_NAMES)) and np.all(np.isfinite(chunk))
    again = runtime.predict_chunk(image, state, TASK, noise_seed=3)
    np.testing.assert_array_equal(chunk, again)  # same observation + same noise -> same chunk
    other = runtime.predict_chunk(image, state, TASK, noise_seed=4)
    assert np.abs(other - chunk).max() > 1e-4  # the noise matters (it is a flow-matching policy)
    assert runtime.info.fps == 30.0 and runtime.info.joint_units == "radians" and runtime.chunk_size == 10


def test_normalization_comes_from_checkpoint_stats(tmp_path, tiny_vlm, runtime):
    """Same weights, stats shifted by +1 rad: the unnormalized actions shift by exactly the stats' change."""
    from roarm_training.small_smolvla import build_tiny_checkpoint, default_stats

    stats = default_stats(6)
    for key in stats:
        for name in ("mean", "min", "max"):
            stats[key][name] = stats[key][name] + 1.0
    shifted = PolicyRuntime(RuntimeConfig(checkpoint=str(build_tiny_checkpoint(tmp_path, stats=stats,
                                                                                vlm_folder=tiny_vlm))))
    image, state = observation()
    base = runtime.predict_chunk(image, state, TASK, noise_seed=1)
    moved = shifted.predict_chunk(image, state + 1.0, TASK, noise_seed=1)
    np.testing.assert_allclose(moved, base + 1.0, atol=1e-4)


def test_degree_checkpoint_converted_explicitly(tmp_path, tiny_vlm, runtime):
    """A checkpoint trained in SDK degrees (stats in degrees) gives the same URDF-radian chunk as its radian twin."""
    from roarm_training.small_smolvla import build_tiny_checkpoint, default_stats

    stats = default_stats(6)
    deg = {k: {n: np.degrees(v) for n, v in entry.items()} for k, entry in stats.items()}
    path = build_tiny_checkpoint(tmp_path, stats=deg, vlm_folder=tiny_vlm, joint_units="degrees")
    degrees_runtime = PolicyRuntime(RuntimeConfig(checkpoint=str(path)))  # joint_units auto -> meta says degrees
    assert degrees_runtime.info.joint_units == "degrees"
    image, state = observation()
    np.testing.assert_allclose(degrees_runtime.predict_chunk(image, state, TASK, noise_seed=2),
                               runtime.predict_chunk(image, state, TASK, noise_seed=2), atol=1e-4)
    # Forcing the wrong unit changes the result: the conversion is really applied.
    wrong = PolicyRuntime(RuntimeConfig(checkpoint=str(path), joint_units="radians"))
    assert np.abs(wrong.predict_chunk(image, state, TASK, noise_seed=2)
                  - runtime.predict_chunk(image, state, TASK, noise_seed=2)).max() > 0.1


def test_clear_errors_for_missing_checkpoint_state_dim_and_camera_key(tmp_path, tiny_vlm, tiny_checkpoint):
    from roarm_training.small_smolvla import build_tiny_checkpoint

    with pytest.raises(PolicyLoadError, match="not found"):
        PolicyRuntime(RuntimeConfig(checkpoint=str(tmp_path / "nowhere")))
    with pytest.raises(PolicyLoadError, match="no config.json"):
        PolicyRuntime(RuntimeConfig(checkpoint=str(tmp_path)))
    with pytest.raises(PolicyLoadError, match="camera key 'observation.images.wrist'.*observation.images.top"):
        PolicyRuntime(RuntimeConfig(checkpoint=str(tiny_checkpoint), camera_key="observation.images.wrist"))
    seven = build_tiny_checkpoint(tmp_path / "seven", state_dim=7, vlm_folder=tiny_vlm)
    with pytest.raises(PolicyLoadError, match="state dimension mismatch.*size 7.*6 joints"):
        PolicyRuntime(RuntimeConfig(checkpoint=str(seven)))
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        PolicyRuntime(RuntimeConfig(checkpoint=str(tiny_checkpoint), precision="fp16"))


def test_bad_observation_is_a_clear_error(runtime):
    image, state = observation()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        runtime.predict_chunk(image.astype(np.float32), state, TASK)
    with pytest.raises(ValueError, match="6 URDF joint positions"):
        runtime.predict_chunk(image, state[:5], TASK)


def test_the_checkpoint_crop_is_applied_to_camera_images_only(tmp_path, tiny_checkpoint, runtime):
    """roarm_vla_meta.json's image_crop (written by fit from the dataset's metadata): a camera image is cropped,
    then resized; a policy image (a dataset frame, from_camera=False) is used as it is."""
    import json
    import shutil

    from vla_policy_node.observation import crop_image, policy_image

    cropped_checkpoint = tmp_path / "cropped"
    shutil.copytree(tiny_checkpoint, cropped_checkpoint)
    meta_file = cropped_checkpoint / "roarm_vla_meta.json"
    meta = json.loads(meta_file.read_text())
    meta["image_crop"] = [8, 4, 40, 30]
    meta_file.write_text(json.dumps(meta))
    cropped = PolicyRuntime(RuntimeConfig(checkpoint=str(cropped_checkpoint)))
    assert cropped.spec.image_crop == (8, 4, 40, 30) and runtime.spec.image_crop is None
    image, state = observation()  # 48 x 64 camera image
    assert crop_image(image, (8, 4, 40, 30)).shape == (30, 40, 3)
    np.testing.assert_array_equal(crop_image(image, (8, 4, 40, 30)), image[4:34, 8:48])
    as_policy_sees_it = policy_image(image, cropped.spec)
    assert as_policy_sees_it.shape[:2] == tuple(cropped.spec.image_size)
    from_camera = cropped.predict_chunk(image, state, TASK, noise_seed=5)
    np.testing.assert_array_equal(from_camera, cropped.predict_chunk(as_policy_sees_it, state, TASK, noise_seed=5,
                                                                     from_camera=False))
    assert np.abs(from_camera - runtime.predict_chunk(image, state, TASK, noise_seed=5)).max() > 1e-5
    with pytest.raises(ValueError, match="policy image must be"):
        cropped.predict_chunk(image, state, TASK, from_camera=False)  # not the policy's size
    with pytest.raises(ValueError, match="does not fit the 32x24 camera image"):
        cropped.predict_chunk(image[:24, :32], state, TASK)
    cropped.warm_up(TASK)  # the node's configure: a policy image, whatever the crop


def test_precision_modes_report_latency_and_deviation(tiny_checkpoint):
    results = {r.mode: r for r in compare_precisions(str(tiny_checkpoint), ["bf16", "int8", "fp16"],
                                                       repeats=2, warmup=1)}
    # int4 weight-only is a GPU mode (on the CPU it dequantizes at every call: slow): one run is enough here.
    results["int4"] = compare_precisions(str(tiny_checkpoint), ["int4"], repeats=1, warmup=0)[1]
    assert results["fp32"].rel_dev == 0.0 and results["fp32"].ratio_to_fp32 == pytest.approx(1.0)
    for mode in ("bf16", "int8", "int4"):
        r = results[mode]
        assert not r.error, r.error
        assert r.median_latency_s > 0 and np.isfinite(r.ratio_to_fp32)
        # Converted, so not bit-identical, yet close to fp32 on the same observation and noise.
        assert 0.0 < r.rel_dev < 0.25, (mode, r.rel_dev)
        assert r.max_abs_dev_rad < 0.5
    assert "CUDA" in results["fp16"].error  # no GPU here: a clear per-mode error, the others still ran


def test_nan_weights_give_nan_chunk_and_worker_rejects_it(nan_checkpoint):
    runtime = PolicyRuntime(RuntimeConfig(checkpoint=str(nan_checkpoint)))
    image, state = observation()
    assert np.isnan(runtime.predict_chunk(image, state, TASK)).all()
    accepted, rejected, done = [], [], threading.Event()

    def predict(obs):
        p = runtime.predict(obs.image, obs.state, obs.task)
        return p.actions, p.model_actions

    worker = InferenceWorker(predict, accepted.append, lambda reason: (rejected.append(reason), done.set()))
    worker.start()
    try:
        assert worker.submit(Observation(image, state, 0.0, TASK))
        assert done.wait(30.0)
    finally:
        assert worker.stop(30.0)
    assert accepted == [] and worker.counters.rejected_nonfinite == 1 and "NaN" in rejected[0]


def test_worker_is_one_at_a_time_and_never_blocks_submit():
    release = threading.Event()
    results = []

    def slow(obs):
        release.wait(10.0)
        return np.zeros((3, 6)), None

    worker = InferenceWorker(slow, results.append)
    worker.start()
    try:
        obs = Observation(np.zeros((2, 2, 3), np.uint8), np.zeros(6), 0.0, TASK)
        assert worker.submit(obs)
        start = time.perf_counter()
        assert not worker.submit(obs)  # busy: refused at once, not queued
        assert time.perf_counter() - start < 0.05
        assert worker.busy
        release.set()
        deadline = time.time() + 5
        while worker.busy and time.time() < deadline:
            time.sleep(0.01)
        assert len(results) == 1 and not worker.busy
    finally:
        release.set()
        assert worker.stop(5.0)


@pytest.mark.skipif(not rtc_available(), reason="installed LeRobot has no real-time chunking")
def test_rtc_guides_the_next_chunk_towards_the_previous_leftover(tiny_checkpoint):
    rtc = PolicyRuntime(RuntimeConfig(checkpoint=str(tiny_checkpoint), rtc_enabled=True,
                                      rtc_execution_horizon=8, rtc_max_guidance_weight=10.0))
    image, state = observation()
    first = rtc.predict(image, state, TASK, noise_seed=5)
    leftover = first.model_actions[:, 2:]
    free = rtc.predict(image, state, TASK, noise_seed=6)
    guided = rtc.predict(image, state, TASK, noise_seed=6, prev_chunk_left_over=leftover, inference_delay=2)
    target = first.actions[2:6]
    # With guidance the first steps of the new chunk are closer to what the previous chunk planned for them.
    assert np.abs(guided.actions[:4] - target).mean() < np.abs(free.actions[:4] - target).mean()
