"""LeRobot 0.4.4's SmolVLA loss is wrong three ways; roarm_training.lerobot_fixes makes it right.

A tiny real SmolVLA (local VLM folder) whose output projection is zeroed predicts velocity v = 0, so the
flow-matching element loss is (noise - action)^2, computable by hand. One sample, chunk 4, 6 robot dims, padded to
max_action_dim 32 with zeros; noise = 1 everywhere; the first 2 steps are real (action 3.0), the last 2 are padding
(action 2.0, the episode's last action repeated):

    real steps, robot dims:   (1 - 3)^2 = 4   x 2 steps x 6 dims  = 48
    padded steps, robot dims: (1 - 2)^2 = 1   x 2 steps x 6 dims  = 12
    padded action dims:       (1 - 0)^2 = 1   x 4 steps x 26 dims = 104

    stock 0.4.4 (no mask: wrong key; mean over all 32 dims and 4 steps): (48 + 12 + 104) / 128 = 1.28125
    0.4.4 given its own misspelt key (bug 1 alone fixed):  (48 + 26 x 2 x 1) / 128             = 0.78125
    fixed (valid steps, robot dims, valid-element mean):   48 / (2 x 6)                        = 4.0
"""

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lerobot")

from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig  # noqa: E402
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy  # noqa: E402

from roarm_training import lerobot_fixes  # noqa: E402
from roarm_training.small_smolvla import build_tiny_vlm  # noqa: E402

CHUNK, DIM, VALID = 4, 6, 2


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    vlm = build_tiny_vlm(tmp_path_factory.mktemp("vlm"))
    config = SmolVLAConfig(
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(DIM,)),
                        "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 64))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(DIM,))},
        chunk_size=CHUNK, n_action_steps=CHUNK, vlm_model_name=str(vlm), load_vlm_weights=False,
        resize_imgs_with_padding=(64, 64), num_vlm_layers=4, device="cpu")
    torch.manual_seed(0)
    policy = SmolVLAPolicy(config)
    with torch.no_grad():  # v_t = 0: the element loss is (noise - action)^2
        policy.model.action_out_proj.weight.zero_()
        policy.model.action_out_proj.bias.zero_()
    policy.eval()
    yield policy
    lerobot_fixes.revert()


def batch(pad_key="action_is_pad", samples=1, valid=(VALID,)):
    action = torch.full((samples, CHUNK, DIM), 2.0)
    is_pad = torch.ones(samples, CHUNK, dtype=torch.bool)
    for b, n in enumerate(valid):
        action[b, :n] = 3.0
        is_pad[b, :n] = False
    return {
        "observation.state": torch.zeros(samples, DIM),
        "observation.images.top": torch.full((samples, 3, 64, 64), 0.5),
        "observation.language.tokens": torch.tensor([[5, 6, 7]] * samples),
        "observation.language.attention_mask": torch.ones(samples, 3, dtype=torch.bool),
        "action": action,
        pad_key: is_pad,
    }


def loss_of(policy, data, **kwargs):
    noise = torch.ones(data["action"].shape[0], CHUNK, policy.config.max_action_dim)
    time = torch.full((data["action"].shape[0],), 0.5)
    with torch.no_grad():
        return policy.forward(data, noise=noise, time=time, **kwargs)[0]


def test_stock_044_loss_is_wrong_and_the_fix_makes_it_right(policy):
    assert policy.config.max_action_dim == 32
    lerobot_fixes.revert()
    assert loss_of(policy, batch()).item() == pytest.approx(1.28125, abs=1e-5)  # bugs 1, 2, 3
    # bug 1 alone: given the misspelt key, 0.4.4 masks the padded steps but still averages over 32 dims and all steps
    assert loss_of(policy, batch(pad_key="actions_id_pad")).item() == pytest.approx(0.78125, abs=1e-5)
    status = lerobot_fixes.apply()
    assert status.applied and status.lerobot_version == "0.4.4"
    assert loss_of(policy, batch()).item() == pytest.approx(4.0, abs=1e-5)


def test_fixed_loss_per_sample_and_per_batch(policy):
    lerobot_fixes.apply()
    data = batch(samples=2, valid=(VALID, CHUNK))  # sample 0 half padded, sample 1 not padded
    per_sample = loss_of(policy, data, reduction="none")
    assert per_sample.tolist() == pytest.approx([4.0, 4.0], abs=1e-5)  # padding no longer dilutes sample 0
    # batch mean over valid elements: (2 + 4) steps x 6 dims, all of loss 4
    assert loss_of(policy, data).item() == pytest.approx(4.0, abs=1e-5)
    # no mask at all (a dataset without action chunks): robot dims only, every step counts
    no_mask = batch()
    del no_mask["action_is_pad"]
    assert loss_of(policy, no_mask).item() == pytest.approx((48 + 12) / (CHUNK * DIM), abs=1e-5)


def test_masked_action_loss_by_hand():
    losses = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # B=2, T=3, padded D=4
    is_pad = torch.tensor([[False, True, True], [False, False, False]])
    # robot dims 2: sample 0 keeps step 0 -> [0, 1]; sample 1 keeps all steps -> [12, 13, 16, 17, 20, 21]
    per_sample = lerobot_fixes.masked_action_loss(losses, is_pad, 2, reduction="none")
    assert per_sample.tolist() == pytest.approx([0.5, 16.5])
    assert lerobot_fixes.masked_action_loss(losses, is_pad, 2).item() == pytest.approx((0 + 1 + 99) / 8)
    all_pad = torch.ones(2, 3, dtype=torch.bool)
    assert lerobot_fixes.masked_action_loss(losses, all_pad, 2).item() == 0.0  # no NaN on an all-padded batch
    with pytest.raises(ValueError, match="reduction"):
        lerobot_fixes.masked_action_loss(losses, is_pad, 2, reduction="sum")


def test_steps_aside_with_a_warning_on_a_lerobot_that_has_the_upstream_fix(policy):
    lerobot_fixes.revert()
    stock = SmolVLAPolicy.forward
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = lerobot_fixes.apply(version="0.6.0")
    assert not status.applied and "steps aside" in status.reason
    assert any("0.6.0" in str(w.message) for w in caught)
    assert SmolVLAPolicy.forward is stock
    assert loss_of(policy, batch()).item() == pytest.approx(1.28125, abs=1e-5)  # untouched
