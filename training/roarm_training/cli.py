"""`roarm-train`: command line of the offline pipeline.

Subcommands grow with the pipeline; today:
  roarm-train preflight --dataset DIR [--policy-path ID_OR_DIR] [--batch-size N] [--steps N]
      checks a fine-tuning plan and a dataset against the seed report's failures; exit 1 on any error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from roarm_training.preflight import check_dataset, check_plan


def _policy_fields(policy_path: str | None) -> dict:
    """SmolVLAConfig fields of a pretrained policy (local folder) or LeRobot's defaults for a fresh one."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    if policy_path and Path(policy_path).is_dir():
        from lerobot.configs.policies import PreTrainedConfig

        return asdict(PreTrainedConfig.from_pretrained(policy_path))
    # A hub id cannot be read offline; its training fields are the defaults, which the checks accept.
    return asdict(SmolVLAConfig())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roarm-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("preflight", help="check a fine-tuning plan and its dataset before training")
    pre.add_argument("--dataset", type=Path, required=True, help="LeRobotDataset v3 root folder")
    pre.add_argument("--policy-path", default=None,
                     help="pretrained policy (hub id or folder); omit for a fresh SmolVLAConfig")
    pre.add_argument("--batch-size", type=int, default=64)
    pre.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args(argv)

    findings = check_plan(_policy_fields(args.policy_path), args.batch_size, args.steps, args.policy_path)
    findings += check_dataset(args.dataset)
    for finding in findings:
        print(finding, file=sys.stderr if finding.severity == "error" else sys.stdout)
    errors = sum(f.severity == "error" for f in findings)
    print(f"preflight: {errors} error(s), {len(findings) - errors} warning(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
