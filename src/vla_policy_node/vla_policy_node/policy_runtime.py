"""Load a LeRobot policy checkpoint and turn (image, joint state, task) into a chunk of joint positions.

Any LeRobot policy type: the class comes from the checkpoint's config (``type``: smolvla by default, act, ...);
LoRA checkpoints are merged at load. Precision modes other than fp32 are SmolVLA's.

ROS-free. Loading follows LeRobot's own inference path (``async_inference/policy_server.py``,
``lerobot_record``): ``PreTrainedConfig.from_pretrained`` -> ``<policy class>.from_pretrained`` ->
``make_pre_post_processors(cfg, pretrained_path=...)`` with device and rename overrides. Normalization therefore
comes from the checkpoint's saved processor stats, never from code here. Observations are converted with
``lerobot.policies.utils.prepare_observation_for_inference`` (HWC uint8 -> CHW float in [0, 1], batch dim).

Units are explicit: the arm speaks URDF radians (``roarm_description.joints``); a checkpoint trained on the SDK degree
convention gets ``urdf_to_sdk_degrees`` on the way in and ``sdk_degrees_to_urdf`` on the way out. The convention
comes from the ``joint_units`` argument or, with ``"auto"``, from ``roarm_vla_meta.json`` in the checkpoint
(written by our builders and training), defaulting to radians.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from roarm_description.joints import JOINT_NAMES, sdk_degrees_to_urdf, urdf_to_sdk_degrees

from .observation import ObservationSpec, actions_to_urdf, build_observation, crop_from_meta, joint_vector
from .precision import PrecisionReport
from .precision_plan import apply_load_precision, check_load_mode

LOG = logging.getLogger(__name__)
JOINT_UNITS = ("auto", "radians", "degrees")
# Written beside a checkpoint by roarm-vla's training and model builders: joint names, units, fps.
ROARM_META_FILENAME = "roarm_vla_meta.json"


class PolicyLoadError(RuntimeError):
    """The checkpoint cannot serve this arm (missing, wrong state size, unknown camera key, ...)."""


@dataclass
class RuntimeConfig:
    checkpoint: str  # local pretrained_model folder or hub id (e.g. lerobot/smolvla_base)
    camera_key: str = "observation.images.top"  # the checkpoint's image feature fed with the camera
    state_joint_names: Sequence[str] = tuple(JOINT_NAMES)  # URDF joint names in the checkpoint's state order
    joint_units: str = "auto"  # auto | radians | degrees (the checkpoint's convention)
    precision: str = "fp32"
    device: str = "cpu"
    vlm_path: str = ""  # override the checkpoint's vlm_model_name (e.g. a local SmolVLM folder); "" = keep
    num_threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    rtc_enabled: bool = False  # LeRobot real-time chunking (guidance towards the previous chunk's leftover)
    rtc_execution_horizon: int = 10
    rtc_max_guidance_weight: float = 10.0
    flow_steps: int = 0  # flow-matching steps per chunk (SmolVLA num_steps); 0 = the checkpoint's (issue 13)


@dataclass
class ChunkPrediction:
    actions: np.ndarray  # [T, 6] URDF radians, JOINT_NAMES order
    model_actions: Any  # torch [1, T, A] in the model's normalized space (RTC leftover input)
    latency_s: float  # preprocess + model + postprocess


@dataclass
class CheckpointInfo:
    path: str
    policy_type: str
    state_dim: int
    action_dim: int
    image_keys: list[str]
    chunk_size: int
    fps: float | None  # from roarm_vla_meta.json, or the training dataset's meta/info.json, when found
    joint_units: str
    extra: dict = field(default_factory=dict)


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not os.path.exists(text)


def _read_meta(path: Path) -> dict:
    meta_file = path / ROARM_META_FILENAME
    if meta_file.is_file():
        return json.loads(meta_file.read_text())
    return {}


def _dataset_fps(path: Path) -> float | None:
    """fps of the training dataset (train_config.json -> dataset.root -> meta/info.json), when reachable."""
    train_config = path / "train_config.json"
    try:
        dataset = json.loads(train_config.read_text()).get("dataset", {})
        root = dataset.get("root")
        if root and (Path(root) / "meta" / "info.json").is_file():
            return float(json.loads((Path(root) / "meta" / "info.json").read_text())["fps"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


class PolicyRuntime:
    """A loaded policy + its LeRobot processors; ``predict_chunk`` is safe to call from one thread at a time."""

    def __init__(self, config: RuntimeConfig) -> None:
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        self.config = config
        units = str(config.joint_units).lower()
        if units not in JOINT_UNITS:
            raise PolicyLoadError(f"joint_units must be one of {JOINT_UNITS}, got {config.joint_units!r}")
        precision = check_load_mode(config.precision, config.device)  # 'auto': the export's recorded mode
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise PolicyLoadError(f"device {config.device!r} requested but CUDA is not available")
        if config.num_threads > 0:
            torch.set_num_threads(int(config.num_threads))
        checkpoint = str(config.checkpoint).strip()
        if not checkpoint:
            raise PolicyLoadError("no checkpoint given: set the 'checkpoint' parameter to a pretrained_model "
                                  "folder or a hub id")
        path = Path(checkpoint).expanduser()
        is_local = path.exists()
        if not is_local and not _looks_like_hub_id(checkpoint):
            raise PolicyLoadError(f"checkpoint {checkpoint!r} not found (not a folder, not a hub id 'org/name')")
        if is_local and not (path / "config.json").is_file():
            raise PolicyLoadError(f"checkpoint folder {path} has no config.json: point 'checkpoint' at the "
                                  "'pretrained_model' folder of a LeRobot training run")
        load_from = str(path.resolve()) if is_local else checkpoint
        try:
            policy_cfg = PreTrainedConfig.from_pretrained(load_from)
        except Exception as exc:  # hub offline, bad json, ...
            raise PolicyLoadError(f"cannot read the policy config of {checkpoint!r}: {exc} (offline? "
                                  "HF_HUB_OFFLINE=1 is set by scripts/env.sh)") from exc
        meta = _read_meta(path) if is_local else {}
        policy_cfg.device = config.device
        preprocessor_overrides: dict[str, Any] = {"device_processor": {"device": config.device}}
        vlm = self._resolve_vlm(policy_cfg, path if is_local else None)
        if vlm is not None:
            policy_cfg.vlm_model_name = vlm
            preprocessor_overrides["tokenizer_processor"] = {"tokenizer_name": vlm}
        self._check_features(policy_cfg)
        self.info = CheckpointInfo(
            path=load_from,
            policy_type=policy_cfg.type,
            state_dim=policy_cfg.robot_state_feature.shape[0],
            action_dim=policy_cfg.action_feature.shape[0],
            image_keys=list(policy_cfg.image_features),
            chunk_size=int(getattr(policy_cfg, "chunk_size", 1)),
            fps=float(meta["fps"]) if "fps" in meta else (_dataset_fps(path) if is_local else None),
            joint_units=str(meta.get("joint_units", "radians")) if units == "auto" else units,
        )
        if self.info.joint_units not in ("radians", "degrees"):
            raise PolicyLoadError(f"checkpoint meta says joint_units={self.info.joint_units!r}")
        if config.rtc_enabled:
            self._enable_rtc(policy_cfg)
        policy_class = get_policy_class(policy_cfg.type)
        try:
            self.policy = self._load_policy(policy_class, load_from, policy_cfg)
            self.preprocessor, self.postprocessor = make_pre_post_processors(
                policy_cfg,
                pretrained_path=load_from,
                preprocessor_overrides=preprocessor_overrides,
                postprocessor_overrides={"device_processor": {"device": "cpu"}},
            )
        except Exception as exc:
            raise PolicyLoadError(f"cannot load checkpoint {checkpoint!r}: {type(exc).__name__}: {exc}") from exc
        self.policy.eval()
        if config.flow_steps > 0:  # read by sample_actions at every call: fewer steps = faster, less exact
            if not hasattr(self.policy.config, "num_steps"):
                raise PolicyLoadError(f"flow_steps is for flow-matching policies; this one is {policy_cfg.type!r}")
            self.policy.config.num_steps = int(config.flow_steps)
        if policy_cfg.type == "smolvla":
            self.precision_report: PrecisionReport = apply_load_precision(self.policy, precision, config.device, meta)
        elif precision in ("fp32", "auto") and not meta.get("precision"):
            self.precision_report = PrecisionReport(mode="fp32", device=config.device, converted=[], kept_fp32=[])
        else:  # the precision modes name SmolVLA's submodules (vision encoder, text model, action expert)
            raise PolicyLoadError(f"precision {config.precision!r} is for SmolVLA checkpoints; this one is a "
                                  f"{policy_cfg.type!r} policy: use precision fp32")
        self._torch = torch
        LOG.info("loaded %s (%s, state %d, chunk %d, %s, %s)", load_from, policy_cfg.type, self.info.state_dim,
                 self.info.chunk_size, self.info.joint_units, self.precision_report.mode)

    # ------------------------------------------------------------------------------------------------ set-up
    @staticmethod
    def _load_policy(policy_class, load_from: str, policy_cfg):
        """The policy class named by the checkpoint's config (any LeRobot type). A LoRA checkpoint (``use_peft``:
        adapter_config.json + adapter weights, as ``roarm-vla-train fit --lora-rank`` saves it) is loaded on its
        base policy and merged, so inference runs one plain model."""
        if not getattr(policy_cfg, "use_peft", False):
            return policy_class.from_pretrained(load_from, config=policy_cfg)
        from peft import PeftConfig, PeftModel

        base = PeftConfig.from_pretrained(load_from).base_model_name_or_path
        if not base:
            raise PolicyLoadError(f"LoRA checkpoint {load_from} names no base policy in adapter_config.json")
        policy_cfg.use_peft = False
        policy = policy_class.from_pretrained(base, config=policy_cfg)
        return PeftModel.from_pretrained(policy, load_from).merge_and_unload()

    def _resolve_vlm(self, policy_cfg, local_path: Path | None) -> str | None:
        """The VLM folder to use instead of the saved vlm_model_name, or None to keep it."""
        if self.config.vlm_path:
            if not Path(self.config.vlm_path).is_dir():
                raise PolicyLoadError(f"vlm_path {self.config.vlm_path!r} is not a folder")
            return str(Path(self.config.vlm_path).resolve())
        saved = getattr(policy_cfg, "vlm_model_name", None)
        if saved is None or local_path is None:
            return None
        # A checkpoint built by tiny_smolvla stores an absolute path; if the folder moved, use its own vlm/.
        if (saved.startswith("/") and not Path(saved).is_dir()) and (local_path / "vlm" / "config.json").is_file():
            return str((local_path / "vlm").resolve())
        return None

    def _check_features(self, policy_cfg) -> None:
        names = list(self.config.state_joint_names)
        unknown = [n for n in names if n not in JOINT_NAMES]
        if unknown:
            raise PolicyLoadError(f"state_joint_names has unknown joints {unknown}; the arm's are {list(JOINT_NAMES)}")
        state = policy_cfg.robot_state_feature
        if state is None:
            raise PolicyLoadError("the checkpoint has no observation.state input")
        if state.shape[0] != len(names):
            raise PolicyLoadError(
                f"state dimension mismatch: the checkpoint expects observation.state of size {state.shape[0]}, "
                f"the arm provides {len(names)} joints ({names}); set state_joint_names or use a matching checkpoint")
        action = policy_cfg.action_feature
        if action is None or action.shape[0] != len(names):
            size = None if action is None else action.shape[0]
            raise PolicyLoadError(f"action dimension mismatch: the checkpoint outputs {size} values per step, the "
                                  f"arm needs {len(names)}")
        if self.config.camera_key not in policy_cfg.image_features:
            raise PolicyLoadError(
                f"camera key {self.config.camera_key!r} is not an image input of the checkpoint; it has "
                f"{list(policy_cfg.image_features)}: set the 'camera_key' parameter to one of them")

    def _enable_rtc(self, policy_cfg) -> None:
        from lerobot.policies.rtc.configuration_rtc import RTCConfig

        if not hasattr(policy_cfg, "rtc_config"):
            raise PolicyLoadError(f"policy type {policy_cfg.type!r} has no real-time chunking in this LeRobot")
        policy_cfg.rtc_config = RTCConfig(
            enabled=True,
            execution_horizon=int(self.config.rtc_execution_horizon),
            max_guidance_weight=float(self.config.rtc_max_guidance_weight),
        )

    # ---------------------------------------------------------------------------------------------- inference
    @property
    def chunk_size(self) -> int:
        return self.info.chunk_size

    def make_noise(self, seed: int):
        """The flow-matching start noise SmolVLA would sample, from a seeded generator (same on every device)."""
        torch = self._torch
        cfg = self.policy.config
        if not hasattr(cfg, "max_action_dim"):  # not a flow-matching policy (ACT, ...): no start noise
            return None
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn((1, cfg.chunk_size, cfg.max_action_dim), generator=generator, dtype=torch.float32)
        return noise.to(self.config.device)

    @property
    def spec(self) -> ObservationSpec:
        """What the policy reads and writes (joint order and units, image key and size): see :meth:`resolve_spec`."""
        spec = getattr(self, "_spec", None)
        return spec if spec is not None else self.resolve_spec()

    def resolve_spec(self, image_size: Sequence[int] | int | None = None) -> ObservationSpec:
        """The observation spec, from the checkpoint's ``roarm_vla_meta.json`` (``joint_names``, ``image_key``,
        ``image_size``, ``image_crop``: what the dataset converter used) where it has them, else from the config
        (``state_joint_names``, ``camera_key``) and ``image_size`` (None = the camera's size). Joint units as
        resolved at load. The live observation is then built exactly as the converter built the training frames."""
        path = Path(self.info.path)
        meta = _read_meta(path) if path.is_dir() else {}
        names = tuple(meta.get("joint_names") or self.config.state_joint_names)
        unknown = [n for n in names if n not in JOINT_NAMES]
        if unknown or len(names) != self.info.state_dim:
            raise PolicyLoadError(f"joint names {list(names)} do not fit the checkpoint (state size "
                                  f"{self.info.state_dim}; the arm's joints are {list(JOINT_NAMES)})")
        key = meta.get("image_key") or self.config.camera_key
        if key not in self.info.image_keys:
            key = self.config.camera_key
        size = meta.get("image_size") or image_size
        if isinstance(size, (int, float)) and size:
            size = (int(size), int(size))
        size = tuple(int(v) for v in size) if size and all(int(v) > 0 for v in size) else None
        self._spec = ObservationSpec(state_joint_names=names, joint_units=self.info.joint_units, image_key=key,
                                     image_size=size, image_crop=crop_from_meta(meta))
        return self._spec

    def predict(
        self,
        image_rgb: np.ndarray,
        state_urdf: Sequence[float],
        task: str,
        *,
        noise_seed: int | None = None,
        noise=None,
        prev_chunk_left_over=None,
        inference_delay: int | None = None,
        from_camera: bool = True,
    ) -> ChunkPrediction:
        """One chunk from one observation. ``image_rgb``: HxWx3 uint8, the camera's (cropped and resized as the
        spec says) or, with ``from_camera=False``, a policy image already (a dataset frame); ``state_urdf``: 6 URDF
        radians. Returns actions in URDF radians; joints the policy does not command keep ``state_urdf``'s
        value."""
        from lerobot.policies.utils import prepare_observation_for_inference

        torch = self._torch
        spec = self.spec
        state = np.asarray(state_urdf, dtype=float)
        if state.shape != (len(JOINT_NAMES),):
            raise ValueError(f"state must hold {len(JOINT_NAMES)} URDF joint positions, got shape {state.shape}")
        start = time.perf_counter()
        observation = build_observation(image_rgb, joint_vector(JOINT_NAMES, state, spec), spec,
                                        from_camera=from_camera)
        if noise is None and noise_seed is not None:
            noise = self.make_noise(noise_seed)
        kwargs = {} if noise is None else {"noise": noise}  # only flow-matching policies take noise
        if prev_chunk_left_over is not None:
            kwargs |= {"prev_chunk_left_over": prev_chunk_left_over, "inference_delay": int(inference_delay or 0),
                      "execution_horizon": int(self.config.rtc_execution_horizon)}
        with torch.inference_mode() if not self.config.rtc_enabled else torch.no_grad():
            batch = prepare_observation_for_inference(observation, torch.device(self.config.device), task, "roarm_m3")
            batch = self.preprocessor(batch)
            model_actions = self.policy.predict_action_chunk(batch, **kwargs)
            actions = self.postprocessor(model_actions)
        chunk = actions_to_urdf(actions.detach().float().cpu().numpy()[0].astype(float), spec)
        uncommanded = np.isnan(actions_to_urdf(np.zeros((1, spec.state_dim)), spec)[0])
        chunk[:, uncommanded] = state[uncommanded]  # a model's own NaN stays NaN (rejected downstream)
        return ChunkPrediction(
            actions=chunk,
            model_actions=model_actions.detach().float(),
            latency_s=time.perf_counter() - start,
        )

    def warm_up(self, task: str) -> None:
        """One inference on a black policy image (the first call is much slower: allocations, lazy init). A policy
        image, not a camera one: a crop window would not fit an arbitrary camera size."""
        spec = self.spec
        if spec.image_size:
            height, width = spec.image_size
        elif spec.image_crop:
            width, height = spec.image_crop[2:]
        else:
            height, width = 64, 64
        self.predict(np.zeros((int(height), int(width), 3), np.uint8), np.zeros(len(JOINT_NAMES)), task,
                     noise_seed=0, from_camera=False)

    def predict_chunk(self, image_rgb: np.ndarray, state_urdf: Sequence[float], task: str,
                      noise_seed: int | None = None, from_camera: bool = True) -> np.ndarray:
        """[T, 6] URDF radians (JOINT_NAMES order) for the observation; see :meth:`predict`."""
        return self.predict(image_rgb, state_urdf, task, noise_seed=noise_seed, from_camera=from_camera).actions


def rtc_available() -> bool:
    """True when the installed LeRobot has real-time chunking for SmolVLA (0.4.4 has)."""
    try:
        from lerobot.policies.rtc.modeling_rtc import RTCProcessor  # noqa: F401
        from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    except ImportError:
        return False
    return "rtc_config" in SmolVLAConfig.__dataclass_fields__


def default_step_period(info: CheckpointInfo, fallback_fps: float = 30.0) -> float:
    fps = info.fps if info.fps and info.fps > 0 else fallback_fps
    return 1.0 / fps if not math.isclose(fps, 0.0) else 1.0 / fallback_fps
