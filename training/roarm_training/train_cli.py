"""`roarm-vla-train`: fine-tune, check, evaluate and export policies for the RoArm-M3.

Subcommands come from the modules in SUBCOMMAND_MODULES. Each module provides

    def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser

which adds its subparser and sets `func` (called with the parsed namespace, returns the exit status):

    def add_parser(subparsers):
        p = subparsers.add_parser("eval", help="...")
        p.add_argument(...)
        p.set_defaults(func=run)
        return p

Heavy imports (torch, LeRobot) belong inside `run`, so that `roarm-vla-train --help` stays fast.
A module listed here that is not written yet is skipped (its subcommand is simply absent).
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMAND_MODULES = (
    "roarm_training.train",        # fit
    "roarm_training.preflight",    # preflight
    "roarm_training.evaluate",     # eval
    "roarm_training.export",       # export
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roarm-vla-train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the module itself is not written yet; a missing dependency inside it is an error
                continue
            raise
        if hasattr(module, "add_parser"):
            module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
