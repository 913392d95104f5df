"""`make demo`: the learned pick end to end, on this CPU, offline, through the real nodes (issue 12).

    python -m roarm_training.pick_pipeline --out outputs/pick                 # every stage not yet up to date
    python -m roarm_training.pick_pipeline --out outputs/pick --trials 30     # more trials: only trials + report
    python -m roarm_training.pick_pipeline --out outputs/pick --stage eval    # one stage alone

Stages (each a folder under --out; a stamp in <out>/stamps/ records the SHA-256 of the stage's inputs and of the
stages it reads, so a stage is skipped when its output is there and built from the same inputs; pick_stamps.py):

1. record   scripted demonstrations in the simulated world to rosbag2 by the recorder node (the `record` graph under
            GraphRunner: roarm_recorder.expert_demos.record_expert_episodes), one seed per episode: random start
            pose and box place per seed (a fixed start pose teaches the state shortcut: shared/learning_notes.md);
            DART demonstrations by default (--perturbation 0.05; roarm_sim.perturbation: the expert executes
            perturbed setpoints, each frame is labelled with its clean one; --perturbation 0: clean ones)
2. convert  `roarm-vla-data convert` -> LeRobotDataset v3.0 (images resized to --image-px, --fps grid)
3. fit      `roarm-vla-train fit`: a small SmolVLA on a local VLM folder (offline; VLM unfrozen, loss fixes), or
            --policy-path (lerobot/smolvla_base or a local checkpoint) to fine-tune
4. eval     roarm_training.evaluate on the held-out episodes: errors vs the mean-action baseline, collapse detector,
            image reliance. A collapse FAIL stops the pipeline here (--allow-collapse goes on anyway)
5. trials   closed loop in the simulated `pick` graph (one process per node): vla_policy with the checkpoint, the
            mean-action baseline (the same checkpoint answering the dataset's mean action: pick_trials.py) and the
            scripted expert, on seeds disjoint from the training seeds
6. report   <out>/report/report.json, success bars with 95 % Wilson CIs, a contact sheet; always rebuilt

The last line printed is the report's JSON object (policy_success_rate, policy_trials, baseline_success_rate,
expert_success_rate, eval_seeds, checkpoint, stage wall times, ...). Exit status: 0 done, 2 a stage failed,
3 the policy collapsed (eval).

Defaults are sized for about half an hour on 2 cores (measured figures: README "Learned pick"): 50 episodes, a
small SmolVLA (local VLM: text 96 x 4 layers, vision 64 x 3 layers) on 96 px images, 2,000 steps, 20 policy
trials, 5 baseline and 5 expert trials. `--trials 30` for the issue's 30-trial goal (only the trials rerun).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from roarm_training import pick_stamps

STAGES = ("record", "convert", "fit", "eval", "trials", "report")
UPSTREAM = {"record": (), "convert": ("record",), "fit": ("convert",), "eval": ("fit",), "trials": ("fit",),
            "report": ("eval", "trials")}
DEFAULT_TASK = "Pick up the white box"
EXIT_STAGE_FAILED, EXIT_COLLAPSED = 2, 3

# The learning notes' small local VLM (text hidden 96 x 4 layers, vision hidden 64 x 3 layers, patch 8, 96 px:
# 36 image tokens; 879k parameters as a SmolVLA): image-driven after ~3k steps on 2 cores. "tiny" = the test size.
VLM_SIZES = {
    "small": (dict(hidden_size=96, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=24, vocab_size=512, rope_theta=100000.0),
              dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                   patch_size=8), 2),
    "tiny": (None, None, None),  # small_smolvla.TINY_TEXT / TINY_VISION
}
# Config files whose content changes what a stage produces (their bytes are part of its inputs).
RECORD_CONFIGS = ("sim_world.yaml", "scripted_expert.yaml", "arm_driver.yaml", "episode_recorder.yaml")
TRIAL_CONFIGS = ("sim_world.yaml", "scripted_expert.yaml", "arm_driver.yaml", "vla_policy.yaml")


class PipelineError(RuntimeError):
    """A stage could not be built (the message says which and why)."""


class PolicyCollapsed(PipelineError):
    """The offline evaluation's collapse detector FAILed: deploying this policy would prove nothing."""


@dataclass
class PipelineConfig:
    out: Path = Path("outputs/pick")
    # record
    episodes: int = 50
    seed: int = 0  # training episode i uses seed + i
    task: str = DEFAULT_TASK
    storage: str = "mcap"
    # True: every demonstration (and trial) starts from the home pose (sim_world.random_start_pose false): the
    # seed's state shortcut reproduced on purpose, to show that the offline checks FAIL on such a policy
    fixed_start_pose: bool = False
    # > 0: DART demonstrations: the expert executes a smoothly perturbed setpoint (this std, rad) and each frame is
    # labelled with its clean one, so the dataset shows how to get back to the box from beside it (README, Learned
    # pick: 200 demonstrations 9/30 against 6/30 clean; 400: 19/30). 0 = clean demonstrations
    perturbation: float = 0.05
    # > 0: this share of the demonstrations misses its first grasp on purpose (the jaws close beside the box) and
    # shows the expert's recovery: reopen, back up, pick again (roarm_sim.perturbation)
    miss_fraction: float = 0.0
    # convert
    fps: int = 10
    image_px: int = 96
    image_crop: list[int] | None = None  # [x, y, width, height] of sim_world's camera image before the resize
    max_dropped: float = 0.1  # the converter skips a demonstration that drops more than this fraction of its frames
    # fit
    model: str = "small"  # small | tiny (a fresh SmolVLA on a local VLM folder); ignored with policy_path
    policy_path: str | None = None  # fine-tune this (hub id or local pretrained_model) instead
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    chunk_size: int = 10
    n_action_steps: int = 5  # closed loop only: the policy re-plans every n_action_steps steps (trials stage)
    holdout_fraction: float = 0.1
    train_seed: int = 1000
    fit_args: list[str] = field(default_factory=list)  # passed on to `roarm-vla-train fit`
    num_workers: int = 1
    threads: int = 1  # 2 OpenMP threads on a busy 2-core machine ran 0.25 steps/s, 1 thread 2.5 (README)
    # eval
    eval_samples: int = 120
    allow_collapse: bool = False
    # trials
    trials: int = 20
    baseline_trials: int = 5
    expert_trials: int = 5
    eval_seed: int = 10_000  # trial i uses eval_seed + i; must not meet the training seeds
    time_limit: float = 15.0  # s per trial (the expert needs about 3.5 s)
    trial_set: list[str] = field(default_factory=list)  # graph overrides NAME:=VALUE for the trials
    verbose: bool = False  # echo the node processes' output

    # -- seeds --------------------------------------------------------------------------------------------------
    @property
    def train_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.episodes)]

    @property
    def eval_seeds(self) -> list[int]:
        return [self.eval_seed + i for i in range(max(self.trials, self.baseline_trials, self.expert_trials))]

    # -- paths --------------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return Path(self.out) / Path(*parts)

    @property
    def checkpoint(self) -> Path:
        return self.path("fit", "checkpoints", "last", "pretrained_model")


def check_config(cfg: PipelineConfig) -> None:
    """Refuse option sets that would measure the wrong thing (before anything runs)."""
    if cfg.episodes < 2:
        raise PipelineError("--episodes must be >= 2 (one is held out for the offline evaluation)")
    if min(cfg.trials, cfg.baseline_trials, cfg.expert_trials) < 0 or cfg.trials < 1:
        raise PipelineError("--trials must be >= 1, --baseline-trials and --expert-trials >= 0")
    overlap = sorted(set(cfg.train_seeds) & set(cfg.eval_seeds))
    if overlap:
        raise PipelineError(f"trial seeds {overlap[0]}..{overlap[-1]} were used for training demonstrations: "
                            f"choose --eval-seed >= {cfg.seed + cfg.episodes} or below {cfg.seed}")
    if cfg.model not in VLM_SIZES:
        raise PipelineError(f"--model must be one of {sorted(VLM_SIZES)}")
    if not 1 <= cfg.n_action_steps <= cfg.chunk_size:
        raise PipelineError("--n-action-steps must be between 1 and --chunk-size")
    if not 0.0 <= cfg.miss_fraction <= 1.0:
        raise PipelineError("--miss-fraction must be within [0, 1]")
    if not 0.0 <= cfg.max_dropped < 1.0:
        raise PipelineError("--max-dropped must be within [0, 1)")
    if cfg.time_limit <= 0 or cfg.steps < 1 or cfg.image_px < 16:
        raise PipelineError("--time-limit and --steps must be > 0, --image-px >= 16")
    from roarm_sim.perturbation import MAX_STD

    if not 0.0 <= cfg.perturbation <= MAX_STD:
        raise PipelineError(f"--perturbation must be within [0, {MAX_STD}] rad")


def _config_digests(names: tuple[str, ...]) -> dict[str, str]:
    from roarm_vla_bringup.graph import config_path

    out = {}
    for name in names:
        try:
            out[name] = pick_stamps.file_digest(config_path(name))
        except FileNotFoundError:
            out[name] = "missing"
    return out


def stage_inputs(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """What a stage's output depends on (besides its upstream stages). Changing any of these rebuilds it."""
    if stage == "record":
        inputs = {"seeds": cfg.train_seeds, "task": cfg.task, "storage": cfg.storage,
                  "configs": _config_digests(RECORD_CONFIGS)}
        if cfg.fixed_start_pose:  # only when set: the default run's digests (and stamps) stay as they were
            inputs["fixed_start_pose"] = True
        if cfg.perturbation:
            inputs["perturbation"] = cfg.perturbation
        if cfg.miss_fraction:  # only when set, as above
            inputs["miss_fraction"] = cfg.miss_fraction
        return inputs
    if stage == "convert":
        inputs = {"fps": cfg.fps, "image_px": cfg.image_px}
        if cfg.image_crop:  # only when set: the default run's digests (and stamps) stay as they were
            inputs["image_crop"] = list(cfg.image_crop)
        if cfg.max_dropped != PipelineConfig.max_dropped:
            inputs["max_dropped"] = cfg.max_dropped
        return inputs
    if stage == "fit":
        return {"model": None if cfg.policy_path else cfg.model, "policy_path": cfg.policy_path, "steps": cfg.steps,
                "batch_size": cfg.batch_size, "lr": cfg.lr, "chunk_size": cfg.chunk_size,
                "holdout_fraction": cfg.holdout_fraction,
                "train_seed": cfg.train_seed, "fit_args": list(cfg.fit_args)}
    if stage == "eval":
        return {"eval_samples": cfg.eval_samples}
    if stage == "trials":
        return {"trials": cfg.trials, "baseline_trials": cfg.baseline_trials, "expert_trials": cfg.expert_trials,
                "eval_seeds": cfg.eval_seeds, "time_limit": cfg.time_limit, "n_action_steps": cfg.n_action_steps,
                "trial_set": list(cfg.trial_set),
                "configs": _config_digests(TRIAL_CONFIGS)} | ({"fixed_start_pose": True} if cfg.fixed_start_pose
                                                             else {})
    if stage == "report":
        return {}
    raise KeyError(stage)


def stage_outputs(cfg: PipelineConfig, stage: str) -> list[Path]:
    return {
        "record": [cfg.path("bags")],
        "convert": [cfg.path("dataset", "meta", "info.json")],
        "fit": [cfg.checkpoint / "model.safetensors"],
        "eval": [cfg.path("eval", "eval_report.json")],
        "trials": [cfg.path("trials", f"{name}.json") for name in ("policy", "baseline", "expert")],
        "report": [cfg.path("report", "report.json")],
    }[stage]


def digests(cfg: PipelineConfig) -> dict[str, str]:
    """Every stage's digest, upstream first (a digest includes its upstream stages' digests)."""
    out: dict[str, str] = {}
    for stage in STAGES:
        out[stage] = pick_stamps.stage_digest(stage, stage_inputs(cfg, stage), {u: out[u] for u in UPSTREAM[stage]})
    return out


def stamp_path(cfg: PipelineConfig, stage: str) -> Path:
    return cfg.path("stamps", f"{stage}.json")


def eval_gate(report: dict, allow_collapse: bool = False) -> list[str]:
    """Stop (PolicyCollapsed) when the collapse detector FAILed; else warnings to print (image reliance FAIL...)."""
    collapse = report.get("collapse", {})
    reliance = report.get("image_reliance", {})
    if collapse.get("verdict") == "FAIL":
        frame0 = collapse.get("frame0") or {}
        if collapse.get("all_samples_verdict", "FAIL") == "FAIL":
            ratios = [r for r in collapse.get("ratio", []) if r is not None]
            what = (f"its predictions barely vary across held-out samples (lowest per-joint std ratio "
                    f"{collapse.get('min_ratio', float('nan')):.3f} < threshold {collapse.get('threshold')}; "
                    f"{len(ratios)} joints judged). It would answer one pose whatever it sees")
        else:
            skill, ratio = frame0.get("mean_skill"), frame0.get("min_ratio", float("nan"))
            if skill is not None and skill < frame0.get("skill_threshold", 0.0):
                judged = (f"its first chunks explain {skill:.2f} of their variance across held-out episodes < "
                          f"{frame0.get('skill_threshold')}: no better than one chunk for every first frame")
            else:
                judged = (f"it predicts nearly one chunk for every held-out episode (lowest per-joint std ratio "
                          f"{ratio:.3f} < threshold {collapse.get('threshold')})")
            what = (f"at frame 0, where only the image tells where the box is, {judged} ({frame0.get('samples')} "
                    "episodes). It reads its answer from the state (demonstrations from one start pose?)")
        message = (f"the policy COLLAPSED: {what}; trials would only measure that. Train longer or on more varied "
                   "demonstrations (shared/learning_notes.md), or pass --allow-collapse to run the trials anyway")
        if not allow_collapse:
            raise PolicyCollapsed(message)
        return [f"WARNING (--allow-collapse): {message}"]
    warnings = []
    if reliance.get("verdict") == "FAIL":
        if (reliance.get("reliance") or 0.0) < reliance.get("threshold", 0.0):
            warnings.append(f"WARNING: image reliance FAIL (reliance {reliance.get('reliance') or 0.0:.3f} < "
                            f"{reliance.get('threshold')}): the policy hardly looks at the camera")
        else:
            warnings.append(f"WARNING: image reliance FAIL (toward {reliance.get('toward') or 0.0:.3f} < "
                            f"{reliance.get('toward_threshold')}): the image moves the policy, but not towards "
                            "where the box is")
    return warnings


# ================================================================================================ stages
class Pipeline:
    def __init__(self, cfg: PipelineConfig, log: Callable[[str], None] | None = None,
                 child_argv: list[str] | None = None, announce: bool = True, as_child: bool = False):
        """child_argv: the pipeline's own command-line options; when given, every stage but the report runs in a
        fresh `python -m roarm_training.pick_pipeline <options> --stage NAME` process (see _run_child).
        as_child: this process is such a stage process (its parent prepared the stage)."""
        self.as_child = as_child
        self.cfg = cfg
        self.log = log or (lambda m: print(m, flush=True))
        self.child_argv = child_argv
        self.announce = announce  # the stage lines (a child's parent prints them)
        self.digests = digests(cfg)
        self.wall: dict[str, float] = {}
        self.status: dict[str, str] = {}

    # -- driving ------------------------------------------------------------------------------------------------
    def up_to_date(self, stage: str) -> bool:
        return pick_stamps.is_up_to_date(stamp_path(self.cfg, stage), self.digests[stage],
                                         stage_outputs(self.cfg, stage))

    def run(self, only: str | None = None, force: tuple[str, ...] = ()) -> dict:
        """Run every stage (or just ``only``) not up to date; returns the report (None unless report ran)."""
        stages = [only] if only else list(STAGES)
        if only:
            for upstream in _all_upstream(only):
                if not self.up_to_date(upstream):
                    raise PipelineError(f"stage {only} needs stage {upstream} built with these options first: run "
                                        f"without --stage (or --stage {upstream})")
        report = None
        for k, stage in enumerate(stages, 1):
            reason = pick_stamps.stale_reason(stamp_path(self.cfg, stage), self.digests[stage],
                                              stage_outputs(self.cfg, stage), stage_inputs(self.cfg, stage))
            if stage == "report":
                reason = reason or "always rebuilt"
            elif stage in force:
                reason = "forced"
            prefix = f"[pick] stage {STAGES.index(stage) + 1}/{len(STAGES)} {stage}"
            if reason is None:
                built = pick_stamps.read_stamp(stamp_path(self.cfg, stage)) or {}
                self.log(f"{prefix}: up to date, skipped (built {built.get('finished_at', '?')} in "
                         f"{built.get('wall_s', 0):.0f} s)")
                self.status[stage], self.wall[stage] = "skipped", 0.0
                if stage == "eval":
                    for warning in eval_gate(self._eval_report(), self.cfg.allow_collapse):
                        self.log(f"[pick] {warning}")
                continue
            if self.announce:
                self.log(f"{prefix}: running ({reason})")
            if stage == "record" and not self.as_child:
                # more episodes: the recorded ones are kept (_reusable_bags); --force record records them all anew
                _keep_previous_stamp(self.cfg, keep=stage not in force)
            pick_stamps.remove_stamp(stamp_path(self.cfg, stage))
            started = time.monotonic()
            if self.child_argv is not None and stage != "report":
                self._run_child(stage)
                self.wall[stage], self.status[stage] = time.monotonic() - started, "ran"
                self.log(f"{prefix}: done in {self.wall[stage]:.1f} s")
                continue
            try:
                extra = getattr(self, f"_stage_{stage}")() or {}
            except PipelineError:
                raise
            except Exception as exc:  # a node that died, a tool's error: one clear line naming the stage
                raise PipelineError(f"{stage}: {type(exc).__name__}: {exc}") from exc
            wall = time.monotonic() - started
            self.wall[stage], self.status[stage] = wall, "ran"
            if stage == "report":
                report = extra
            else:
                pick_stamps.write_stamp(stamp_path(self.cfg, stage), stage, self.digests[stage],
                                        stage_inputs(self.cfg, stage), stage_outputs(self.cfg, stage), wall)
            if self.announce:
                self.log(f"{prefix}: done in {wall:.1f} s")
            if stage == "eval":
                for warning in eval_gate(self._eval_report(), self.cfg.allow_collapse):
                    self.log(f"[pick] {warning}")
        return report

    def _run_child(self, stage: str) -> None:
        """One stage in a fresh interpreter. Why: after the in-process eval (torch, LeRobot's video decoding
        threads) the trials' GraphRunner in the same process stalled (its node processes then spun at full CPU on
        their unread DDS traffic); a fresh process per stage keeps torch, rclpy and the encoders apart, and a stage
        killed half-way never leaves its stamp."""
        command = [sys.executable, "-m", "roarm_training.pick_pipeline", *self.child_argv, "--stage", stage,
                   "--force", stage, "--as-child"]
        code = _stream(command, dict(os.environ), self.log)
        if code == EXIT_COLLAPSED:
            raise PolicyCollapsed(f"see the eval report {self.cfg.path('eval', 'eval_report.json')}")
        if code != 0:
            raise PipelineError(f"{stage}: the stage's process exited with code {code} (its output is above)")

    # -- 1 record -----------------------------------------------------------------------------------------------
    def _stage_record(self) -> None:
        try:
            from roarm_recorder.expert_demos import record_expert_episodes
        except ImportError as exc:
            raise PipelineError(f"record: roarm_recorder.expert_demos is not available ({exc}); it records the "
                                "demonstrations (issue 10)") from exc
        bags = self.cfg.path("bags")
        reused, tried = self._reusable_bags()
        if reused or tried:
            for path, _complete in _episode_dirs(bags):
                if path not in reused.values():
                    _clear(path, self.cfg.out)  # a partial or foreign episode: not part of the kept recording
            self.log(f"[record] keeping the {len(reused)} demonstrations of the earlier recording (seeds "
                     f"{min(tried)}..{max(tried)}: same options, fewer episodes)")
        else:
            _clear(bags, self.cfg.out)
            bags.mkdir(parents=True)
        seeds = [s for s in self.cfg.train_seeds if s not in tried]
        start = ("the HOME start pose in every episode (--fixed-start-pose: the state shortcut on purpose), random "
                 "box place per seed" if self.cfg.fixed_start_pose else "random start pose and box place per seed")
        if self.cfg.perturbation:
            start += f"; DART: executed setpoints perturbed by {self.cfg.perturbation} rad std, labels clean"
        if self.cfg.miss_fraction:
            start += f"; {self.cfg.miss_fraction:.0%} of them miss the first grasp and pick again"
        self.log(f"[record] {len(seeds)} scripted episodes, seeds {seeds[0]}..{seeds[-1]} ({start})")
        kept = list(reused.values()) + record_expert_episodes(
            bags, seeds, task=self.cfg.task, storage=self.cfg.storage, log=lambda m: self.log(f"[record] {m}"),
            overrides=self.record_overrides(), perturbation=self.cfg.perturbation,
            miss_fraction=self.cfg.miss_fraction)
        if len(kept) < 2:
            raise PipelineError(f"record: only {len(kept)} successful demonstration(s) were kept in {bags}")
        self.log(f"[record] kept {len(kept)} of {self.cfg.episodes} episodes")
        _previous_stamp_path(self.cfg).unlink(missing_ok=True)

    def _reusable_bags(self) -> tuple[dict[int, Path], set[int]]:
        """({seed: bag} to keep, seeds already tried) when the earlier record stage had the same inputs but fewer
        seeds, all of them among today's (``--episodes`` raised): only the new seeds are recorded. A seed tried and
        discarded then (the expert failed) is not tried again. Else nothing is reused."""
        previous = pick_stamps.read_stamp(_previous_stamp_path(self.cfg)) or {}
        old = dict(previous.get("inputs") or {})
        now = json.loads(pick_stamps.canonical_json(stage_inputs(self.cfg, "record")))
        old_seeds, new_seeds = old.pop("seeds", None), now.pop("seeds")
        if not old_seeds or old != now or not set(old_seeds) < set(new_seeds):
            return {}, set()
        reused = {}
        for path, complete in _episode_dirs(self.cfg.path("bags")):
            seed = _bag_seed(path) if complete else None
            if seed in old_seeds:
                reused[seed] = path
        return reused, set(old_seeds)

    def record_overrides(self) -> dict[str, Any]:
        """sim_world's start-pose draw for the demonstrations (the YAML's random_start_pose unless fixed)."""
        return {"sim_world.random_start_pose": False} if self.cfg.fixed_start_pose else {}

    # -- 2 convert ----------------------------------------------------------------------------------------------
    def _stage_convert(self) -> None:
        from roarm_training import data_cli

        dataset = self.cfg.path("dataset")
        _clear(dataset, self.cfg.out)
        argv = ["convert", str(self.cfg.path("bags")), "--out", str(dataset), "--fps", str(self.cfg.fps),
                "--image-size", str(self.cfg.image_px), str(self.cfg.image_px), "--max-dropped",
                str(self.cfg.max_dropped), "--skip-bad"]
        if self.cfg.image_crop:
            argv += ["--image-crop", *map(str, self.cfg.image_crop)]
        self.log(f"[convert] roarm-vla-data {' '.join(argv)}")
        if data_cli.main(argv) != 0:
            raise PipelineError("convert: roarm-vla-data convert failed (its message is above)")
        recorded = len(_episode_dirs(self.cfg.path("bags")))
        converted = json.loads((dataset / "meta" / "info.json").read_text())["total_episodes"]
        if converted < 2:
            raise PipelineError(
                f"convert: only {converted} of the {recorded} recorded demonstrations were converted (the skipped "
                f"ones are listed above with their dropped frames); the fit needs 2 or more, to hold one out. Record "
                f"more (--episodes), on a less loaded machine, or accept more dropped frames (--max-dropped, now "
                f"{self.cfg.max_dropped})")
        self.log(f"[convert] {converted} of {recorded} recorded demonstrations converted")

    # -- 3 fit --------------------------------------------------------------------------------------------------
    def fit_command(self) -> list[str]:
        cfg = self.cfg
        argv = [sys.executable, "-m", "roarm_training.train_cli", "fit", "--dataset", str(cfg.path("dataset")),
                "--output", str(cfg.path("fit")), "--steps", str(cfg.steps), "--batch-size", str(cfg.batch_size),
                "--lr", str(cfg.lr), "--chunk-size", str(cfg.chunk_size),
                "--holdout-fraction", str(cfg.holdout_fraction), "--seed",
                str(cfg.train_seed), "--num-workers", str(cfg.num_workers), "--save-freq", str(cfg.steps),
                "--log-freq", str(max(1, min(100, cfg.steps // 20)))]
        if cfg.policy_path:
            argv += ["--policy-path", cfg.policy_path]
        else:
            argv += ["--policy-type", "smolvla", "--vlm", str(cfg.path("vlm")), "--no-vlm-weights",
                     "--allow-random-expert", "--set", f"resize_imgs_with_padding=[{cfg.image_px},{cfg.image_px}]",
                     "--set", "num_vlm_layers=4"]
        return argv + list(cfg.fit_args)

    def _stage_fit(self) -> None:
        cfg = self.cfg
        _clear(cfg.path("fit"), cfg.out)
        if not cfg.policy_path:
            build_vlm(cfg.path("vlm"), cfg.model, cfg.image_px)
        command = self.fit_command()
        self.log(f"[fit] {' '.join(command[1:])}")
        env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads),
                   TOKENIZERS_PARALLELISM="false")
        env.setdefault("HF_HUB_OFFLINE", "1")
        code = _stream(command, env, lambda line: self.log(f"[fit] {line}"))
        if code != 0 or not cfg.checkpoint.is_dir():
            raise PipelineError(f"fit: roarm-vla-train fit exited with code {code} (its output is above)")

    # -- 4 eval -------------------------------------------------------------------------------------------------
    def _stage_eval(self) -> None:
        import torch

        from roarm_training.evaluate import EvalConfig, EvaluationError, evaluate, format_summary

        torch.set_num_threads(self.cfg.threads)
        _clear(self.cfg.path("eval"), self.cfg.out)
        try:
            report = evaluate(EvalConfig(checkpoint=str(self.cfg.checkpoint), dataset=str(self.cfg.path("dataset")),
                                         out=str(self.cfg.path("eval")), max_samples=self.cfg.eval_samples,
                                         num_threads=self.cfg.threads))
        except EvaluationError as exc:
            raise PipelineError(f"eval: {exc}") from exc
        for line in format_summary(report).splitlines():
            self.log(f"[eval] {line}")

    def _eval_report(self) -> dict:
        return json.loads(self.cfg.path("eval", "eval_report.json").read_text())

    # -- 5 trials -----------------------------------------------------------------------------------------------
    def _stage_trials(self) -> None:
        import numpy as np

        from roarm_training.pick_trials import mean_action_checkpoint, run_trials, save_run

        cfg = self.cfg
        folder = cfg.path("trials")
        _clear(folder, cfg.out)
        folder.mkdir(parents=True)
        baseline = mean_action_checkpoint(cfg.checkpoint, folder / "baseline_checkpoint")
        echo = (lambda line: self.log(line)) if cfg.verbose else None
        plan = (("policy", "policy", cfg.checkpoint, cfg.trials), ("baseline", "policy", baseline, cfg.baseline_trials),
                ("expert", "expert", None, cfg.expert_trials))
        for name, controller, checkpoint, count in plan:
            seeds = cfg.eval_seeds[:count]
            self.log(f"[trials] {name}: {count} trial(s), seeds {seeds[0] if seeds else '-'}.."
                     f"{seeds[-1] if seeds else '-'}, time limit {cfg.time_limit:.0f} s")
            run = run_trials(controller, seeds, checkpoint=checkpoint, time_limit=cfg.time_limit,
                             overrides=self.trial_overrides(), log=self.log, echo=echo)
            save_run(run, folder / f"{name}.json")
            if run.paths:  # the policy's predicted hand path of each chunk over the first trial's camera frames
                from roarm_sim.report import write_video

                from roarm_training.pick_trials import draw_paths

                video = folder / f"{name}_predicted_paths.mp4"
                if write_video(draw_paths(run.frames, run.paths, run.camera), video, 5.0):
                    self.log(f"[trials] {name}: predicted paths over the camera: {video}")
            frames = _thin_frames(run.frames, 12, 320)
            np.savez_compressed(folder / f"{name}_frames.npz", t=np.array([t for t, _ in frames]),
                                images=np.array([im for _, im in frames]) if frames else np.zeros((0, 1, 1, 3)))

    def trial_overrides(self) -> list[str]:
        """n_action_steps as the policy node knows it: re-plan when chunk - n_action_steps steps are left (the
        node executes whole timed plans, so this is its lead, not LeRobot's queue length); --trial-set wins."""
        lead = max(1, self.cfg.chunk_size - self.cfg.n_action_steps)  # 0 would mean the node's default, half a chunk
        # a fixed-start policy is tried where it was trained: from the home pose
        start = ["sim_world.random_start_pose:=false"] if self.cfg.fixed_start_pose else []
        return [f"vla_policy.inference_lead_steps:={lead}", *start, *self.cfg.trial_set]

    # -- 6 report -----------------------------------------------------------------------------------------------
    def _stage_report(self) -> dict:
        import numpy as np

        from roarm_training.pick_report import plot_success_bars, rate_of, summary_lines, write_contact_sheet
        from roarm_training.pick_trials import load_run

        cfg = self.cfg
        folder = cfg.path("report")
        folder.mkdir(parents=True, exist_ok=True)
        runs = {name: load_run(cfg.path("trials", f"{name}.json")) for name in ("policy", "baseline", "expert")}
        rates = {name: rate_of(run.results) for name, run in runs.items()}
        frames = {}
        for name in runs:
            data = np.load(cfg.path("trials", f"{name}_frames.npz"))
            frames[name] = list(zip(data["t"].tolist(), list(data["images"])))
        bars = plot_success_bars(folder / "success.png", rates,
                                 f"pick: policy {cfg.steps} steps, {cfg.episodes} demos; seeds {cfg.eval_seed}+")
        sheet = write_contact_sheet(folder / "contact_sheet.png", frames)
        ev = self._eval_report()
        stamps = {s: pick_stamps.read_stamp(stamp_path(cfg, s)) or {} for s in STAGES[:-1]}
        checkpoint = cfg.checkpoint.resolve()
        report = {
            "policy_success_rate": _rate_or_none(rates["policy"]),
            "policy_ci95": _ci_or_none(rates["policy"]),
            "policy_trials": rates["policy"].trials,
            "baseline_success_rate": _rate_or_none(rates["baseline"]),
            "baseline_ci95": _ci_or_none(rates["baseline"]),
            "baseline_trials": rates["baseline"].trials,
            "expert_success_rate": _rate_or_none(rates["expert"]),
            "expert_ci95": _ci_or_none(rates["expert"]),
            "expert_trials": rates["expert"].trials,
            "eval_seeds": cfg.eval_seeds[:max(cfg.trials, cfg.baseline_trials, cfg.expert_trials)],
            "train_seeds": [cfg.train_seeds[0], cfg.train_seeds[-1]],
            "checkpoint": str(checkpoint),
            "eval_verdict": ev.get("verdict"),
            "collapse": ev.get("collapse", {}).get("verdict"),
            "min_diversity": _round(ev.get("collapse", {}).get("min_ratio")),
            "min_diversity_frame0": _round((ev.get("collapse", {}).get("frame0") or {}).get("min_ratio")),
            "frame0_skill": _round((ev.get("collapse", {}).get("frame0") or {}).get("mean_skill")),
            "image_reliance": _round(ev.get("image_reliance", {}).get("reliance")),
            "image_reliance_toward": _round(ev.get("image_reliance", {}).get("toward")),
            "ratio_to_mean_action": _round(ev.get("ratio_to_baseline", {}).get("mean_mae")),
            "stage_wall_s": {s: round(self.wall.get(s, 0.0), 1) for s in STAGES[:-1]},
            "stage_built_wall_s": {s: stamps[s].get("wall_s") for s in STAGES[:-1]},
            "stages_run": [s for s in STAGES[:-1] if self.status.get(s) == "ran"],
            "trials_detail": {name: run.as_dict()["results"] for name, run in runs.items()},
            "plots": {"success": str(bars), "contact_sheet": str(sheet) if sheet else None,
                      "predicted_paths_video": _existing(cfg.path("trials", "policy_predicted_paths.mp4"))},
            "config": _jsonable(asdict(cfg)),
        }
        (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        for line in summary_lines(rates):
            self.log(f"[report] {line}")
        self.log(f"[report] {folder / 'report.json'}; plots {bars}" + (f", {sheet}" if sheet else ""))
        return report


# ================================================================================================ helpers
def build_vlm(folder: Path, model: str, image_px: int) -> Path:
    """The local SmolVLM folder (architecture, processor, tokenizer; no weights) the fresh SmolVLA reads."""
    from roarm_training import small_smolvla

    if (folder / "config.json").is_file():
        shutil.rmtree(folder)
    if model == "tiny":
        text, vision, scale = small_smolvla.TINY_TEXT, dict(small_smolvla.TINY_VISION), small_smolvla.TINY_SCALE_FACTOR
    else:
        text, vision, scale = VLM_SIZES[model]
        vision = dict(vision)
    vision["image_size"] = int(image_px)
    return small_smolvla.build_vlm_folder(folder, text, vision, scale)


def _previous_stamp_path(cfg: PipelineConfig) -> Path:
    return cfg.path("stamps", "record.previous.json")


def _keep_previous_stamp(cfg: PipelineConfig, keep: bool) -> None:
    """Copy the record stamp aside before the stage runs (its process reads it: _reusable_bags); keep False or no
    stamp: remove an older copy."""
    stamp = pick_stamps.read_stamp(stamp_path(cfg, "record")) if keep else None
    if stamp is None:
        _previous_stamp_path(cfg).unlink(missing_ok=True)
    else:
        _previous_stamp_path(cfg).write_text(json.dumps(stamp, indent=2) + "\n")


def _episode_dirs(folder: Path) -> list[tuple[Path, bool]]:
    from roarm_recorder.episode_bag import list_episodes

    return list_episodes(folder)


def _bag_seed(bag: Path) -> int | None:
    """The sim seed the recorder stored in the bag's metadata (roarm_vla.seed), None when absent."""
    from roarm_recorder.episode_bag import read_custom_data

    try:
        return int(read_custom_data(bag)["seed"])
    except (KeyError, ValueError):
        return None


def _all_upstream(stage: str) -> list[str]:
    out: list[str] = []
    for u in UPSTREAM[stage]:
        for v in _all_upstream(u) + [u]:
            if v not in out:
                out.append(v)
    return out


def _clear(path: Path, root: Path) -> None:
    """Remove a stage's old output folder; refuses anything outside the pipeline's --out folder."""
    path, root = Path(path).resolve(), Path(root).resolve()
    if root not in path.parents:
        raise PipelineError(f"refusing to delete {path}: not inside {root}")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _stream(command: list[str], env: dict, echo: Callable[[str], None]) -> int:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
    try:
        for line in proc.stdout:
            echo(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise


def _thin_frames(frames: list, count: int, width: int) -> list:
    import cv2
    import numpy as np

    if not frames:
        return []
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    out = []
    for i in picks:
        t, image = frames[i]
        height = int(round(image.shape[0] * width / image.shape[1]))
        out.append((float(t), cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)))
    return out


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def _rate_or_none(rate) -> float | None:
    """A success rate over no trials is unknown, not 0."""
    return round(rate.rate, 4) if rate.trials else None


def _ci_or_none(rate) -> list[float] | None:
    return [round(rate.ci95_low, 4), round(rate.ci95_high, 4)] if rate.trials else None


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _child_options(argv: list[str]) -> list[str]:
    """The command line without --stage/--force (the child gets its own)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in ("--stage", "--force"):
            skip = True
            continue
        if item.startswith(("--stage=", "--force=")):
            continue
        out.append(item)
    return out


# ================================================================================================ CLI
def build_parser() -> argparse.ArgumentParser:
    d = PipelineConfig()
    p = argparse.ArgumentParser(prog="python -m roarm_training.pick_pipeline",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    a = p.add_argument
    a("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    a("--stage", choices=STAGES, default=None, help="run this stage alone (its upstream stages must be up to date)")
    a("--force", choices=STAGES, action="append", default=[], help="rebuild this stage even when up to date")
    a("--as-child", action="store_true", help=argparse.SUPPRESS)  # run --stage in this process (see _run_child)
    g = p.add_argument_group("record")
    g.add_argument("--episodes", type=int, default=d.episodes, help=f"demonstrations (default {d.episodes})")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the first demonstration; episode i: seed + i")
    g.add_argument("--task", default=d.task)
    g.add_argument("--storage", choices=("mcap", "sqlite3"), default=d.storage)
    g.add_argument("--fixed-start-pose", action="store_true",
                   help="every demonstration starts from the home pose (sim_world.random_start_pose false), trials "
                        "too: reproduces the state shortcut on purpose, to check that eval's collapse and "
                        "image-reliance checks FAIL on such a policy (use another --out)")
    g.add_argument("--perturbation", type=float, default=d.perturbation, metavar="RAD",
                   help="DART demonstrations: the expert executes setpoints offset by a smooth random walk of this "
                        f"std and every frame is labelled with its clean setpoint (default {d.perturbation}; 0 = "
                        "clean demonstrations)")
    g.add_argument("--miss-fraction", type=float, default=d.miss_fraction, metavar="SHARE",
                   help="share of the demonstrations whose first grasp misses the box on purpose and that show the "
                        f"expert picking again (default {d.miss_fraction})")
    g = p.add_argument_group("convert")
    g.add_argument("--fps", type=int, default=d.fps, help=f"dataset frame rate (default {d.fps})")
    g.add_argument("--image-px", type=int, default=d.image_px, help=f"square image size (default {d.image_px})")
    g.add_argument("--image-crop", type=int, nargs=4, default=d.image_crop, metavar=("X", "Y", "W", "H"),
                   help="crop sim_world's camera image to this window before the resize (e.g. 160 140 340 340: "
                        "the table where boxes are placed, at about twice the pixels per cm)")
    g.add_argument("--max-dropped", type=float, default=d.max_dropped, metavar="FRACTION",
                   help="skip a demonstration whose camera stream left more than this fraction of its frames without "
                        f"an image (default {d.max_dropped})")
    g = p.add_argument_group("fit")
    g.add_argument("--model", choices=sorted(VLM_SIZES), default=d.model,
                   help="size of the fresh SmolVLA's local VLM (small: 879k-parameter policy; tiny: tests)")
    g.add_argument("--policy-path", default=None,
                   help="fine-tune this pretrained SmolVLA instead (lerobot/smolvla_base online, or a local folder)")
    g.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--chunk-size", type=int, default=d.chunk_size)
    g.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction)
    g.add_argument("--train-seed", type=int, default=d.train_seed)
    g.add_argument("--fit-arg", dest="fit_args", action="append", default=[],
                   help="extra argument for roarm-vla-train fit (repeatable; e.g. --fit-arg=--set --fit-arg=x=1)")
    g.add_argument("--num-workers", type=int, default=d.num_workers, help="data-loader workers (2 cores: 1)")
    g.add_argument("--threads", type=int, default=d.threads, help="torch threads for fit and eval")
    g = p.add_argument_group("eval")
    g.add_argument("--eval-samples", type=int, default=d.eval_samples)
    g.add_argument("--allow-collapse", action="store_true", help="run the trials even when the policy collapsed")
    g = p.add_argument_group("trials")
    g.add_argument("--trials", type=int, default=d.trials, help=f"policy trials (default {d.trials})")
    g.add_argument("--baseline-trials", type=int, default=d.baseline_trials)
    g.add_argument("--expert-trials", type=int, default=d.expert_trials)
    g.add_argument("--eval-seed", type=int, default=d.eval_seed,
                   help=f"seed of the first trial (default {d.eval_seed}); disjoint from the training seeds")
    g.add_argument("--time-limit", type=float, default=d.time_limit, help="s per trial")
    g.add_argument("--n-action-steps", type=int, default=d.n_action_steps,
                   help=f"closed loop: re-plan every N steps of the chunk (vla_policy.inference_lead_steps = chunk - N;"
                        f" default {d.n_action_steps})")
    g.add_argument("--trial-set", action="append", default=[], metavar="NAME:=VALUE",
                   help="graph override for the trials, e.g. vla_policy.inference_lead_steps:=8 (repeatable)")
    g.add_argument("--verbose", action="store_true", help="echo the node processes' output")
    return p


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    names = set(PipelineConfig.__dataclass_fields__)
    return PipelineConfig(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    started = time.monotonic()
    if not os.environ.get("ROS_DOMAIN_ID"):
        # A private DDS domain for this run: another graph on this machine (a second demo, a developer's
        # `roarm-vla run`) on the default domain 0 would answer our resets and drive our arm.
        os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid()).randint(100, 199))
        print(f"[pick] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} for this run's node graphs (set it to choose)",
              flush=True)
    try:
        check_config(cfg)
        pipeline = Pipeline(cfg, child_argv=None if args.as_child else _child_options(argv),
                            announce=not args.as_child, as_child=args.as_child)
        report = pipeline.run(only=args.stage, force=tuple(args.force))
    except PolicyCollapsed as exc:
        if args.as_child:
            print(f"[pick] {exc}", flush=True)
            return EXIT_COLLAPSED
        print(f"[pick] STOPPED at eval: {exc}", flush=True)
        print(json.dumps({"stopped_at": "eval", "reason": "collapse", "eval_report": str(cfg.path("eval",
                                                                                                 "eval_report.json"))}))
        return EXIT_COLLAPSED
    except PipelineError as exc:
        print(f"[pick] failed: {exc}", flush=True)
        print(json.dumps({"stopped_at": "error", "reason": str(exc)[:300]}))
        return EXIT_STAGE_FAILED
    except KeyboardInterrupt:
        print("[pick] interrupted (stages finished so far keep their stamps)", flush=True)
        return 130
    total = time.monotonic() - started
    if args.as_child:
        return 0
    if report is None:  # one stage alone, not the report
        print(json.dumps({"stage": args.stage, "status": pipeline.status.get(args.stage),
                          "wall_s": round(pipeline.wall.get(args.stage, 0.0), 1)}))
        return 0
    headline = {k: v for k, v in report.items() if k not in ("trials_detail", "config", "plots")}
    headline["total_wall_s"] = round(total, 1)
    headline["report"] = str(cfg.path("report", "report.json"))
    print(json.dumps(headline), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
