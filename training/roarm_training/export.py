"""`roarm-vla-train export`: a SmolVLA checkpoint the policy node loads in a lower precision, with a report.

The export is a RECIPE, not new weights: the checkpoint's files are linked (weights) or copied (everything else)
into ``--out``, and ``roarm_vla_meta.json`` there records ``{"precision": {"mode": MODE, "plan": ...}}``. The node's
``precision: auto`` (``vla_policy_node.precision_plan.apply_load_precision``) applies exactly that at load, on the
device it runs on, with the same code that measured the report here. (Quantized weights saved to disk would tie the
file to one torch quantization backend and one device; converting at load takes well under a second for the tiny
model and a few seconds for the full-size one.)

What each mode converts is ``vla_policy_node.precision``'s: the vision encoder, connector, VLM text layers and action
expert are converted; the action head (state/action projections and the time MLP) always stays float32 (the seed
notes: check the action output after quantization, keep the action head in higher precision, the early layers
lower). ``mixed`` is the per-part plan of ``precision_plan`` (vision + connector int8/int4, text MLPs int8, expert
MLPs fp32), CALIBRATED here on dataset samples: each quantized part is tried alone; a part whose deviation exceeds
``--part-tolerance`` (fraction of the ground-truth spread) steps up (int4 -> int8 -> fp32). The calibrated plan is
what gets recorded. The uniform modes need no calibration (int8 on the CPU quantizes activations on the fly; int4,
bf16 and fp16 are weight/format conversions).

The report (``export_report.json`` in ``--out``, headline as the last stdout line) compares the export with the
original fp32 checkpoint on dataset samples, both with the SAME flow-matching start noise per sample:
- ``size``: bytes of parameters + buffers in memory (quantized packed weights counted) before/after, and the ratio;
- ``latency``: median seconds of one chunk (preprocess + model + postprocess), interleaved runs, and the ratio;
- ``deviation``: |export - original| of the predicted chunks in URDF radians (mean, max, per joint), and the same
  divided by the ground-truth spread (std of the dataset's actions per joint): ``mean_frac_of_gt_std``,
  ``max_frac_of_gt_std``. PASS when the mean fraction is at most ``--max-deviation``, else FAIL (exit status 1;
  the export is still written, so it can be inspected).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

EXPORT_MODES = ("int8", "bf16", "fp16", "int4", "mixed")
REPORT_FILENAME = "export_report.json"
LINKED_SUFFIXES = (".safetensors", ".bin", ".pt")  # weights: hard-linked when possible (never rewritten)
DEFAULT_MAX_DEVIATION = 0.1
DEFAULT_PART_TOLERANCE = 0.02
# a part's candidates from the plan's mode upwards: int4 -> int8 -> fp32
_STEP_UP = {"int4": ("int4", "int8", "fp32"), "int8": ("int8", "fp32"), "fp32": ("fp32",)}


class ExportError(RuntimeError):
    """The export cannot run as asked (bad precision or device, not a SmolVLA checkpoint, no dataset, ...)."""


@dataclass
class ExportConfig:
    checkpoint: str
    precision: str
    out: str | None = None  # default: <checkpoint>_<precision> beside the checkpoint
    dataset: str | None = None  # default: the training dataset named by the checkpoint's train_config.json
    device: str = "cpu"
    samples: int = 16  # dataset samples for the deviation report
    calibration_samples: int = 8  # dataset samples for mixed's calibration (different frames)
    repeats: int = 5  # timed chunks per model
    noise_seed: int = 0
    max_deviation: float = DEFAULT_MAX_DEVIATION
    part_tolerance: float = DEFAULT_PART_TOLERANCE
    overwrite: bool = False
    num_threads: int = 0
    vlm_path: str = ""
    progress: bool = True
    extra: dict = field(default_factory=dict)


# ================================================================================================ checks
def check_request(config: ExportConfig) -> tuple[str, Path, Path]:
    """(mode, checkpoint, out) or ExportError saying what is wrong; nothing is written before this passes."""
    from vla_policy_node.precision_plan import check_load_mode

    mode = str(config.precision).strip().lower()
    if mode not in EXPORT_MODES:
        raise ExportError(f"unknown precision {config.precision!r}; choose one of {list(EXPORT_MODES)}")
    device = str(config.device)
    if not (device == "cpu" or device.startswith("cuda")):
        raise ExportError(f"device {device!r} is not supported: use cpu or cuda[:N]")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ExportError(f"device {device!r} requested but CUDA is not available on this machine; export for "
                              "the CPU with --device cpu, or run the export on the GPU machine")
    try:
        check_load_mode(mode, device)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    checkpoint = Path(config.checkpoint).expanduser()
    if not (checkpoint / "config.json").is_file():
        raise ExportError(f"{checkpoint} is not a pretrained_model folder (no config.json)")
    policy_type = json.loads((checkpoint / "config.json").read_text()).get("type")
    if policy_type != "smolvla":
        raise ExportError(f"precision modes convert SmolVLA's parts (vision encoder, text model, action expert); "
                          f"{checkpoint} is a {policy_type!r} policy: run it in fp32")
    checkpoint = checkpoint.resolve()
    out = Path(config.out).expanduser() if config.out else checkpoint.with_name(f"{checkpoint.name}_{mode}")
    out = out.resolve()
    if out == checkpoint or checkpoint in out.parents:
        raise ExportError(f"--out {out} must be a new folder outside the checkpoint (the original is the reference "
                          "the report compares against)")
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise ExportError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    return mode, checkpoint, out


def resolve_dataset(config: ExportConfig, checkpoint: Path) -> Path:
    """--dataset, else the dataset root the checkpoint was trained on (train_config.json)."""
    if config.dataset:
        root = Path(config.dataset).expanduser()
    else:
        from roarm_training.evaluate import read_training_record

        record = read_training_record(checkpoint)
        root_text = ((record.get("train_config") or {}).get("dataset") or {}).get("root")
        if not root_text:
            raise ExportError("no --dataset given and the checkpoint names no training dataset (train_config.json): "
                              "pass --dataset with samples of the task (the report and calibration run on them)")
        root = Path(root_text)
    if not (root / "meta" / "info.json").is_file():
        raise ExportError(f"dataset {root} is not a LeRobotDataset (no meta/info.json)")
    return root.resolve()


# ================================================================================================ folder
def _link_or_copy(src: str, dst: str) -> str:
    if src.endswith(LINKED_SUFFIXES):
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another file system, or links not allowed
            pass
    return shutil.copy2(src, dst)


def write_export_folder(checkpoint: Path, out: Path, record: dict) -> None:
    """The checkpoint's files in ``out`` (weights linked), meta with the precision record, the run's split file."""
    from roarm_training.evaluate import SPLIT_FILENAMES, read_training_record
    from vla_policy_node.policy_runtime import ROARM_META_FILENAME

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(checkpoint, out, copy_function=_link_or_copy)
    meta_file = out / ROARM_META_FILENAME
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    meta["precision"] = record
    meta_file.unlink(missing_ok=True)  # a new file: never write through a link into the original
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    # the export keeps the run's held-out episodes, so `eval --checkpoint <out>` evaluates on the same ones
    training = read_training_record(checkpoint)
    if "split_file" in training and not (out / Path(training["split_file"]).name).exists():
        shutil.copy2(training["split_file"], out / SPLIT_FILENAMES[0])


# ================================================================================================ measuring
@dataclass
class Samples:
    images: list
    states_urdf: list
    task: str
    positions: list[int]


def pick_samples(view, count: int, skip: Sequence[int] = ()) -> Samples:
    """``count`` frames spread over every episode (frame 0 of each first), excluding ``skip``."""
    from roarm_training.evaluate import choose_samples
    from vla_policy_node.observation import actions_to_urdf

    pool = choose_samples(view.episode, view.frame, view.episodes, count + len(skip))
    positions = [int(p) for p in pool if int(p) not in set(skip)][:count]
    states = actions_to_urdf(view.states[positions], view.spec)
    states = np.where(np.isnan(states), 0.0, states)
    return Samples(images=[view.image(p) for p in positions], states_urdf=list(states),
                   task=view.task(positions[0]) if positions else "", positions=positions)


def gt_spread_urdf(view) -> np.ndarray:
    """Per-joint std of the dataset's actions in URDF radians (NaN for joints the dataset does not hold)."""
    from vla_policy_node.observation import actions_to_urdf

    return np.nanstd(actions_to_urdf(view.actions, view.spec), axis=0)


def predict_all(runtime, samples: Samples, noise_seed: int) -> np.ndarray:
    """[S, T, 6] URDF radians; sample i uses start noise ``noise_seed + i`` (the same for every model)."""
    return np.stack([runtime.predict_chunk(image, state, samples.task, noise_seed=noise_seed + i)
                     for i, (image, state) in enumerate(zip(samples.images, samples.states_urdf))])


def deviation(exported: np.ndarray, original: np.ndarray, spread: np.ndarray) -> dict:
    """|exported - original| over samples, steps and joints; also as a fraction of the per-joint GT spread."""
    diff = np.abs(exported - original)  # [S, T, 6]
    judged = np.isfinite(spread) & (spread > 1e-9)
    if not judged.any():
        raise ExportError("the dataset's actions do not move: no ground-truth spread to compare deviations with")
    frac = diff[..., judged] / spread[judged]
    return {
        "mean_rad": float(diff.mean()), "max_rad": float(diff.max()),
        "per_joint_mean_rad": diff.mean(axis=(0, 1)).tolist(), "per_joint_max_rad": diff.max(axis=(0, 1)).tolist(),
        "mean_frac_of_gt_std": float(frac.mean()), "max_frac_of_gt_std": float(frac.max()),
        "per_sample_mean_rad": diff.mean(axis=(1, 2)).tolist(),
        "gt_std_rad": spread.tolist(), "samples": int(diff.shape[0]), "steps": int(diff.shape[1]),
    }


def timed_latency(runtimes: dict, samples: Samples, repeats: int, noise_seed: int) -> dict[str, list[float]]:
    """Interleaved timing (one chunk per model per round) so that load changes on the machine hit both alike."""
    image, state = samples.images[0], samples.states_urdf[0]
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for name, runtime in runtimes.items():  # warm-up
        runtime.predict(image, state, samples.task, noise_seed=noise_seed)
    for _ in range(max(1, repeats)):
        for name, runtime in runtimes.items():
            times[name].append(runtime.predict(image, state, samples.task, noise_seed=noise_seed).latency_s)
    return times


# ================================================================================================ calibration
def calibrate_mixed(runtime, samples: Samples, reference: np.ndarray, spread: np.ndarray, device: str,
                    tolerance: float, noise_seed: int) -> tuple[dict, list[dict]]:
    """The mixed plan, part by part: the lowest precision of the part's candidates whose deviation (that part
    alone quantized, all else fp32) stays within ``tolerance`` x the GT spread on ``samples``."""
    import copy

    from vla_policy_node.precision_plan import PARTS, apply_mixed, default_mixed_plan

    original_policy = runtime.policy
    plan = default_mixed_plan(device)
    trials: list[dict] = []
    try:
        for part in PARTS:
            for candidate in _STEP_UP[plan[part]]:
                if candidate == "fp32":
                    plan[part] = "fp32"
                    break
                trial = copy.deepcopy(original_policy)
                apply_mixed(trial, device, {p: (candidate if p == part else "fp32") for p in PARTS})
                runtime.policy = trial
                dev = deviation(predict_all(runtime, samples, noise_seed), reference, spread)
                ok = dev["mean_frac_of_gt_std"] <= tolerance
                trials.append({"part": part, "mode": candidate, "mean_frac_of_gt_std": dev["mean_frac_of_gt_std"],
                               "max_frac_of_gt_std": dev["max_frac_of_gt_std"], "kept": ok})
                runtime.policy = original_policy
                del trial
                if ok:
                    plan[part] = candidate
                    break
    finally:
        runtime.policy = original_policy
    return plan, trials


# ================================================================================================ export
def export(config: ExportConfig) -> dict:
    """Write the export and its report; returns the report (raises ExportError on bad input)."""
    from roarm_training.evaluate import PolicyPredictor, load_dataset
    from vla_policy_node.policy_runtime import ROARM_META_FILENAME, PolicyLoadError
    from vla_policy_node.precision import parameter_bytes

    mode, checkpoint, out = check_request(config)
    view = load_dataset(resolve_dataset(config, checkpoint))
    samples = pick_samples(view, config.samples)
    spread = gt_spread_urdf(view)
    say = (lambda text: print(text, file=sys.stderr)) if config.progress else (lambda text: None)

    def load(path: Path, precision: str):
        try:
            return PolicyPredictor(path, view.spec, device=config.device, precision=precision,
                                   num_threads=config.num_threads, vlm_path=config.vlm_path).runtime
        except PolicyLoadError as exc:
            raise ExportError(str(exc)) from exc

    say(f"export: loading {checkpoint} (fp32 reference)")
    original = load(checkpoint, "fp32")
    record: dict = {"mode": mode, "device": config.device, "exported_from": str(checkpoint),
                    "report": REPORT_FILENAME}
    calibration = None
    if mode == "mixed":
        calib = pick_samples(view, config.calibration_samples, skip=samples.positions)
        say(f"export: calibrating the mixed plan on {len(calib.positions)} dataset samples")
        reference = predict_all(original, calib, config.noise_seed)
        plan, trials = calibrate_mixed(original, calib, reference, spread, config.device, config.part_tolerance,
                                       config.noise_seed)
        record["plan"] = plan
        calibration = {"samples": len(calib.positions), "dataset_indices": [int(view.index[p]) for p in
                                                                            calib.positions],
                       "part_tolerance": config.part_tolerance, "trials": trials, "plan": plan}
    else:
        calibration = {"needed": False, "why": {
            "int8": "dynamic quantization (CPU) scales activations per call; weight-only int8 (GPU) per weight row",
            "int4": "weight-only, per-group scales from the weights themselves",
            "bf16": "a format conversion", "fp16": "a format conversion"}[mode]}

    say(f"export: writing {out}")
    write_export_folder(checkpoint, out, record)
    say(f"export: loading {out} with precision 'auto' (as the policy node does)")
    exported = load(out, "auto")
    if exported.precision_report.mode != mode:
        raise ExportError(f"the node applied {exported.precision_report.mode!r} to the export, not {mode!r}")

    reference = predict_all(original, samples, config.noise_seed)
    result = predict_all(exported, samples, config.noise_seed)
    if not np.all(np.isfinite(result)):
        raise ExportError(f"the {mode} export predicts non-finite actions on dataset samples")
    dev = deviation(result, reference, spread)
    times = timed_latency({"original": original, "exported": exported}, samples, config.repeats, config.noise_seed)
    latency = {name: statistics.median(values) for name, values in times.items()}
    size = {"original_bytes": parameter_bytes(original.policy), "exported_bytes": parameter_bytes(exported.policy)}
    size["ratio"] = size["exported_bytes"] / max(size["original_bytes"], 1)
    report = {
        "checkpoint": str(checkpoint), "out": str(out), "precision": mode, "device": config.device,
        "dataset": str(view.root), "dataset_indices": [int(view.index[p]) for p in samples.positions],
        "noise_seed": config.noise_seed,
        "converted": exported.precision_report.converted, "kept_fp32": exported.precision_report.kept_fp32,
        "plan": record.get("plan"), "calibration": calibration,
        "size": size,
        "latency": {"original_median_s": latency["original"], "exported_median_s": latency["exported"],
                    "ratio": latency["exported"] / max(latency["original"], 1e-12), "repeats": config.repeats,
                    "original_s": times["original"], "exported_s": times["exported"]},
        "deviation": dev,
        "max_deviation": config.max_deviation,
        "verdict": "PASS" if dev["mean_frac_of_gt_std"] <= config.max_deviation else "FAIL",
        "meta_file": str(out / ROARM_META_FILENAME),
    }
    (out / REPORT_FILENAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


# ================================================================================================ CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse subparsers object (``roarm-vla-train``)."""
    parser = subparsers.add_parser(
        "export", help="a SmolVLA checkpoint the policy node loads in int8/bf16/fp16/int4/mixed, with a report of "
                       "size, latency and action deviation on dataset samples",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="pretrained_model folder of a SmolVLA")
    parser.add_argument("--precision", required=True, choices=EXPORT_MODES)
    parser.add_argument("--out", default=None, help="new folder (default: <checkpoint>_<precision> beside it)")
    parser.add_argument("--dataset", default=None,
                        help="LeRobotDataset for the report and calibration (default: the training dataset)")
    parser.add_argument("--device", default="cpu", help="device the node will run on: cpu or cuda[:N]")
    parser.add_argument("--samples", type=int, default=ExportConfig.samples, help="dataset samples for the report")
    parser.add_argument("--calibration-samples", type=int, default=ExportConfig.calibration_samples,
                        help="other dataset samples for mixed's per-part calibration")
    parser.add_argument("--repeats", type=int, default=ExportConfig.repeats, help="timed chunks per model")
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--max-deviation", type=float, default=DEFAULT_MAX_DEVIATION,
                        help="FAIL when the mean deviation / ground-truth std exceeds this")
    parser.add_argument("--part-tolerance", type=float, default=DEFAULT_PART_TOLERANCE,
                        help="mixed: a part stays quantized when its deviation / GT std is at most this")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--vlm-path", default="", help="local SmolVLM folder replacing the checkpoint's")
    parser.set_defaults(func=run)
    return parser


def format_summary(report: dict) -> str:
    dev, size, lat = report["deviation"], report["size"], report["latency"]
    lines = [f"export {report['precision']} ({report['device']}) -> {report['out']}",
             f"converted: {', '.join(report['converted']) or '-'}; fp32: {', '.join(report['kept_fp32'])}"]
    if report.get("plan"):
        lines.append(f"calibrated plan: {report['plan']}")
    lines += [f"size: {size['original_bytes'] / 1e6:.2f} MB -> {size['exported_bytes'] / 1e6:.2f} MB "
              f"(x{size['ratio']:.2f})",
              f"latency: {lat['original_median_s'] * 1e3:.1f} ms -> {lat['exported_median_s'] * 1e3:.1f} ms "
              f"(x{lat['ratio']:.2f}, median of {lat['repeats']})",
              f"action deviation on {dev['samples']} dataset samples: mean {dev['mean_rad']:.5f} rad, max "
              f"{dev['max_rad']:.5f} rad; {dev['mean_frac_of_gt_std']:.4f} (max {dev['max_frac_of_gt_std']:.4f}) "
              "of the ground-truth std",
              f"verdict: {report['verdict']} (mean deviation / GT std <= {report['max_deviation']})"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = ExportConfig(
        checkpoint=args.checkpoint, precision=args.precision, out=args.out, dataset=args.dataset, device=args.device,
        samples=args.samples, calibration_samples=args.calibration_samples, repeats=args.repeats,
        noise_seed=args.noise_seed, max_deviation=args.max_deviation, part_tolerance=args.part_tolerance,
        overwrite=args.overwrite, num_threads=args.num_threads, vlm_path=args.vlm_path)
    try:
        report = export(config)
    except ExportError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(report))
    print(f"report: {Path(report['out']) / REPORT_FILENAME}")
    headline = {"precision": report["precision"], "verdict": report["verdict"],
                "size_ratio": round(report["size"]["ratio"], 4), "latency_ratio": round(report["latency"]["ratio"], 3),
                "mean_dev_rad": round(report["deviation"]["mean_rad"], 6),
                "max_dev_rad": round(report["deviation"]["max_rad"], 6),
                "mean_dev_frac_of_gt_std": round(report["deviation"]["mean_frac_of_gt_std"], 5)}
    print(json.dumps(headline))
    return 1 if report["verdict"] == "FAIL" else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roarm-vla-train")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
