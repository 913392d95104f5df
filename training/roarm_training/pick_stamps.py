"""Stage stamps of the pick pipeline: is a stage's output there and built from the inputs asked for now?

ROS-free and torch-free. A stage's DIGEST is the SHA-256 of one canonical JSON text (sorted keys, no spaces)
holding the stage's name, its own inputs (the options that change its output) and the digests of the stages it
reads from. So changing an upstream stage's inputs changes every downstream digest, and a stage is rebuilt exactly
when something it depends on changed. The stamp file (``<out>/stamps/<stage>.json``) is written only after the
stage finished, so a stage killed half-way is never taken for done.

    digest = stage_digest("convert", {"image_px": 96}, {"record": "ab12..."})
    if not is_up_to_date(stamp_path, digest, [dataset_dir]):
        ... build ...
        write_stamp(stamp_path, "convert", digest, {"image_px": 96}, [dataset_dir], wall_s=41.0)
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence


def canonical_json(value: Any) -> str:
    """The one text a value hashes as: sorted keys, no whitespace, tuples as lists, paths as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def stage_digest(stage: str, inputs: Mapping[str, Any], upstream: Mapping[str, str] | None = None) -> str:
    """SHA-256 (hex) of ``{"inputs": ..., "stage": ..., "upstream": {stage: digest}}`` in canonical JSON."""
    text = canonical_json({"stage": stage, "inputs": dict(inputs), "upstream": dict(upstream or {})})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes: a config file as a stage input (its content, not its date, counts)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_stamp(path: str | Path) -> dict | None:
    """The stamp's content, or None when it is missing or unreadable (a torn write counts as missing)."""
    path = Path(path)
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_up_to_date(path: str | Path, digest: str, outputs: Sequence[str | Path] = ()) -> bool:
    """True when the stamp holds ``digest`` and every output path still exists."""
    stamp = read_stamp(path)
    if stamp is None or stamp.get("digest") != digest:
        return False
    return all(Path(p).exists() for p in outputs)


def stale_reason(path: str | Path, digest: str, outputs: Sequence[str | Path] = (),
                 inputs: Mapping[str, Any] | None = None) -> str | None:
    """Why the stage must run (for the progress line), or None when it is up to date.

    ``inputs``: the stage's inputs now; the keys whose values differ from the stamp's are named."""
    stamp = read_stamp(path)
    if stamp is None:
        return "not built yet"
    if stamp.get("digest") != digest:
        old = stamp.get("inputs", {})
        now = json.loads(canonical_json(dict(inputs))) if inputs is not None else {}
        changed = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k)) if inputs is not None else []
        return "inputs changed" + (f" ({', '.join(changed)})" if changed else " (upstream stage rebuilt)")
    missing = [str(p) for p in outputs if not Path(p).exists()]
    if missing:
        return f"output missing ({missing[0]})"
    return None


def write_stamp(path: str | Path, stage: str, digest: str, inputs: Mapping[str, Any],
                outputs: Sequence[str | Path], wall_s: float, extra: Mapping[str, Any] | None = None) -> dict:
    """Write the stamp atomically (temp file + rename): the stage is done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = {"stage": stage, "digest": digest, "inputs": json.loads(canonical_json(dict(inputs))),
             "outputs": [str(p) for p in outputs], "wall_s": round(float(wall_s), 2),
             "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **dict(extra or {})}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    tmp.replace(path)
    return stamp


def remove_stamp(path: str | Path) -> None:
    Path(path).unlink(missing_ok=True)
