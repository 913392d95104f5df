"""The three SmolVLA training-loss bugs of LeRobot 0.4.4, fixed in ONE place, for the LeRobot versions that have them.

``SmolVLAPolicy.forward`` (lerobot/policies/smolvla/modeling_smolvla.py, 0.4.4) computes the flow-matching loss
``losses`` of shape [batch, chunk, max_action_dim=32] and then reduces it wrongly, three ways:

1. It reads ``batch.get("actions_id_pad")``; the dataset's key is ``action_is_pad``, so the mask of padded time steps
   is always None and padded steps are trained on (upstream issue #1707, fix #1717).
2. It "removes padding" with ``losses[:, :, :max_action_dim]``, a no-op: the loss is averaged over all 32 padded
   action dimensions instead of the robot's 6. The 26 padded dimensions (targets 0) dilute the robot's error and
   spend capacity on predicting zeros (#3133).
3. Even with the mask applied, ``losses.mean()`` divides by every element, padded ones included, so a sample's loss
   shrinks with its share of padding (#3433, fix #3434).

A padded step is a copy of the episode's last action (LeRobot clamps the query index), so training on it teaches
"stay in the final pose": the seed report's "mean action" symptom. The fixed reduction is

    loss = sum over valid steps t and robot dims d of losses[b, t, d]  /  (number of valid steps * action_dim)

(per batch for ``reduction="mean"``; per sample for ``reduction="none"``), as upstream computes it from 0.6.0 on.

:func:`apply` replaces ``SmolVLAPolicy.forward`` with :func:`fixed_smolvla_forward` when the installed LeRobot is
a version whose ``forward`` this module was written against (``PATCHED_VERSIONS``); on a newer LeRobot, which has
the upstream fixes (0.5.1: #1717 and #3133; 0.6.0: #3434), it steps aside with a warning and changes nothing.
``roarm-vla-train fit`` calls it before building the policy; a policy that is only run (inference) is unaffected.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

LOG = logging.getLogger(__name__)

# The LeRobot versions whose SmolVLAPolicy.forward has all three bugs and the exact shape fixed_smolvla_forward
# replaces (read in 0.4.4's sources). Upstream fixed them in 0.5.1 (#1717, #3133) and 0.6.0 (#3434).
PATCHED_VERSIONS = ("0.4.4",)
UPSTREAM_FIXES = {"0.5.1": ("#1717 action_is_pad key", "#3133 loss over the robot's action dims"),
                  "0.6.0": ("#3434 loss over valid steps only",)}


@dataclass(frozen=True)
class FixStatus:
    lerobot_version: str
    applied: bool
    reason: str


_STATUS: FixStatus | None = None


def masked_action_loss(losses, action_is_pad, action_dim: int, reduction: str = "mean"):
    """Reduce a [B, T, D_padded] element loss over the robot's ``action_dim`` dims and the unpadded steps.

    ``action_is_pad``: [B, T] bool (True = step past the episode's end) or None (no step is padded).
    Returns a scalar for ``reduction="mean"``, a [B] tensor for ``"none"``. A sample (or batch) with no valid step
    gives 0, not NaN.
    """
    import torch

    losses = losses[:, :, :action_dim]
    if action_is_pad is None:
        valid = torch.ones(losses.shape[:2], dtype=losses.dtype, device=losses.device)
    else:
        valid = (~action_is_pad.bool()).to(losses.dtype)
    masked = losses * valid.unsqueeze(-1)
    if reduction == "none":
        return masked.sum(dim=(1, 2)) / (valid.sum(dim=1) * action_dim).clamp_min(1)
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return masked.sum() / (valid.sum() * action_dim).clamp_min(1)


def fixed_smolvla_forward(self, batch, noise=None, time=None, reduction: str = "mean"):
    """``SmolVLAPolicy.forward`` of LeRobot 0.4.4 with its loss reduction fixed (see the module's docstring).

    Everything before the reduction is 0.4.4's code unchanged (the pi-aloha adaptation, image/state/action
    preparation, ``self.model.forward``); the loss dict keeps 0.4.4's keys so LeRobot's logging is unchanged.
    """
    from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE

    if self.config.adapt_to_pi_aloha:
        batch[OBS_STATE] = self._pi_aloha_decode_state(batch[OBS_STATE])
        batch[ACTION] = self._pi_aloha_encode_actions_inv(batch[ACTION])
    images, img_masks = self.prepare_images(batch)
    state = self.prepare_state(batch)
    lang_tokens = batch[OBS_LANGUAGE_TOKENS]
    lang_masks = batch[OBS_LANGUAGE_ATTENTION_MASK]
    actions = self.prepare_action(batch)
    action_is_pad = batch.get(f"{ACTION}_is_pad")  # fix 1: the dataset's key
    losses = self.model.forward(images, img_masks, lang_tokens, lang_masks, state, actions, noise, time)
    loss_dict = {"losses_after_forward": losses.detach().mean().item()}
    action_dim = int(self.config.action_feature.shape[0])  # fix 2: the robot's dims, not max_action_dim
    # fix 3: divide by the number of valid (step, dim) elements
    loss = masked_action_loss(losses, action_is_pad, action_dim, reduction)
    loss_dict["loss"] = loss.detach().mean().item()
    return loss, loss_dict


def installed_version() -> str:
    from importlib.metadata import version

    return version("lerobot")


def needs_fix(version: str) -> bool:
    """True for the LeRobot versions whose SmolVLA loss this module fixes."""
    return version in PATCHED_VERSIONS


def apply(version: str | None = None) -> FixStatus:
    """Patch SmolVLAPolicy.forward on the LeRobot versions that need it; warn and step aside on others.

    ``version`` defaults to the installed LeRobot's (tests pass another to see the step-aside). Idempotent.
    """
    global _STATUS
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    version = installed_version() if version is None else version
    if needs_fix(version):
        if SmolVLAPolicy.forward is not fixed_smolvla_forward:
            SmolVLAPolicy._lerobot_forward = SmolVLAPolicy.forward
            SmolVLAPolicy.forward = fixed_smolvla_forward
            LOG.info("LeRobot %s: SmolVLA loss fixed (roarm_training.lerobot_fixes)", version)
        _STATUS = FixStatus(version, True, "SmolVLA loss: action_is_pad mask, robot action dims, valid-step mean")
    else:
        fixes = "; ".join(f"{v}: {', '.join(f)}" for v, f in UPSTREAM_FIXES.items())
        reason = (f"LeRobot {version} is not one of {PATCHED_VERSIONS}: roarm_training.lerobot_fixes steps aside "
                  f"and trains with LeRobot's own SmolVLA loss. Upstream fixes: {fixes}.")
        warnings.warn(reason, stacklevel=2)
        _STATUS = FixStatus(version, False, reason)
    return _STATUS


def revert() -> None:
    """Put LeRobot's own SmolVLAPolicy.forward back (tests compare both losses in one process)."""
    global _STATUS
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    if SmolVLAPolicy.forward is fixed_smolvla_forward:
        SmolVLAPolicy.forward = SmolVLAPolicy._lerobot_forward
    _STATUS = None


def status() -> FixStatus | None:
    """What :func:`apply` did in this process (None before it ran)."""
    return _STATUS
