"""`roarm-vla-data`: data tools of the offline pipeline.

  roarm-vla-data convert BAGS_OR_DIRS... --out DATASET [--fps 30] [--repo-id ID] [--images]
      [--joint-units radians|degrees] [--image-topic T] [--state-topic T]
      [--action-topic T | --action-from-next-state] [--joint-map SRC=DST ...] [--task TEXT]
      [--tolerance-ms MS | ROLE=MS ...] [--timeline ROLE=header|receive|auto ...] [--image-size H W] [--image-crop X Y W H]
      [--append | --overwrite] [--skip-bad] [--vcodec C] [--no-streaming-encoding]
    rosbag2 episode bags (directories, single .mcap files, or folders of them) -> a LeRobotDataset v3.0.
    Exit status 0 on success or "up to date", 1 on a refused conversion or a bad bag (nothing written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roarm_training.bags import BagError
from roarm_training.convert import ROLES, ConvertError, ConvertOptions, convert


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConvertError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _tolerances(values: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values or []:
        role, sep, value = item.rpartition("=")
        try:
            ms = float(value)
        except ValueError:
            raise ConvertError(f"--tolerance-ms expects MS or ROLE=MS, got {item!r}") from None
        for r in ([role] if sep else ROLES):
            out[r] = ms
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roarm-vla-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="rosbag2 episode bags -> LeRobotDataset v3.0")
    conv.add_argument("inputs", nargs="+", help="bag directories, .mcap files, or folders holding them")
    conv.add_argument("--out", type=Path, required=True, help="dataset folder (built next to it, then moved)")
    conv.add_argument("--fps", type=int, default=None, help="frame rate of the grid (default: the bags' roarm_vla.fps)")
    conv.add_argument("--repo-id", default=None, help="dataset repo id (default local/<out folder name>)")
    conv.add_argument("--images", action="store_true", help="store PNG images in the parquet files, not video")
    conv.add_argument("--joint-units", choices=("radians", "degrees"), default="radians",
                      help="radians (URDF, default) or degrees (the SDK's convention, as the seed data)")
    conv.add_argument("--image-topic", default=None, help="Image or CompressedImage topic (default camera/image_raw)")
    conv.add_argument("--state-topic", default="joint_states", help="measured JointState topic")
    action = conv.add_mutually_exclusive_group()
    action.add_argument("--action-topic", default=None,
                        help="command topic (JointTrajectory first point, or JointState) used as the action")
    action.add_argument("--action-from-next-state", action="store_true",
                        help="action = the measured joint state one frame later (hand-guiding)")
    conv.add_argument("--joint-map", nargs="+", default=None, metavar="SRC=DST",
                      help="rename the bag's joints to the URDF's (another robot's names)")
    conv.add_argument("--task", default=None, help="task text (overrides the bags' roarm_vla.task)")
    conv.add_argument("--robot-type", default=None, help="robot type (default: the bags', else roarm_m3)")
    conv.add_argument("--tolerance-ms", nargs="+", default=None, metavar="[ROLE=]MS",
                      help="oldest a message may be at its frame, for all streams or per ROLE (image, state, "
                           "action); defaults: two frame periods, 250 ms for a command")
    conv.add_argument("--timeline", nargs="+", default=None, metavar="ROLE=TIMELINE",
                      help="header, receive or auto (header stamps unless they are zero) per ROLE")
    conv.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                      help="resize every image to H x W (area interpolation)")
    conv.add_argument("--image-crop", type=int, nargs=4, default=None, metavar=("X", "Y", "W", "H"),
                      help="crop every camera image to this window (pixels) before the resize: the workspace; "
                           "the policy node crops live images the same way (the dataset's metadata says how)")
    conv.add_argument("--max-dropped", type=float, default=0.1,
                      help="skip an episode that drops more than this fraction of its frames (default 0.1)")
    mode = conv.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add the bags the dataset does not hold yet")
    mode.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
    conv.add_argument("--skip-bad", action="store_true", help="skip a bag that fails instead of stopping")
    conv.add_argument("--vcodec", default="libsvtav1", help="video codec (LeRobot's; default libsvtav1)")
    conv.add_argument("--no-streaming-encoding", action="store_true",
                      help="write PNG files and encode each episode's video at its end (LeRobot's batch path) "
                           "instead of encoding frames as they are added")
    conv.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = ConvertOptions(
            out=args.out, fps=args.fps, repo_id=args.repo_id, use_videos=not args.images,
            joint_units=args.joint_units, image_topic=args.image_topic, state_topic=args.state_topic,
            action_topic=args.action_topic, action_from_next_state=args.action_from_next_state,
            joint_map=_pairs(args.joint_map, "--joint-map"), task=args.task, robot_type=args.robot_type,
            tolerance_ms=_tolerances(args.tolerance_ms), timelines=_pairs(args.timeline, "--timeline"),
            image_size=tuple(args.image_size) if args.image_size else None,
            image_crop=tuple(args.image_crop) if args.image_crop else None, max_dropped_fraction=args.max_dropped,
            append=args.append, overwrite=args.overwrite, skip_bad=args.skip_bad, vcodec=args.vcodec,
            streaming_encoding=not args.no_streaming_encoding,
            progress=not args.no_progress)
        convert(args.inputs, options)
    except (ConvertError, BagError) as err:
        print(f"roarm-vla-data: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
