"""Completion markers that vouch for their files: a ``DONE`` holds the sha256 of every file it completes.

Why checksums: a marker that only says "ok" vouches for whatever bytes lie next to it, so flipped bits in a weights
file, a truncated records file or an edited result would be reused silently. A marker now lists each file with its
sha256 and is written last; a reader that verifies it knows the files are exactly the ones written. A marker without
checksums (older chainforget, or hand-written) vouches for nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from chainforget.store.atomic import atomic_write_json
from chainforget.store.layout import DONE_FILE

MARKER_VERSION = 1
_HEX = set("0123456789abcdef")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_marker(directory: str | os.PathLike, names: Iterable[str], extra: Mapping[str, Any] | None = None) -> dict:
    """Write ``<directory>/DONE`` listing the sha256 of each file in ``names`` (paths relative to ``directory``)."""
    directory = Path(directory)
    marker = {"schema_version": MARKER_VERSION, **dict(extra or {}),
              "sha256": {name: file_sha256(directory / name) for name in names}}
    atomic_write_json(directory / DONE_FILE, marker)
    return marker


def read_marker(directory: str | os.PathLike) -> tuple[dict | None, str | None]:
    """``(marker, None)`` for a well-formed marker, ``(None, what is wrong)`` otherwise."""
    path = Path(directory) / DONE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "it has no DONE marker"
    except OSError as exc:
        return None, f"its DONE marker cannot be read ({exc.strerror or exc})"
    try:
        marker = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, "its DONE marker holds no checksums"
    sums = marker.get("sha256") if isinstance(marker, dict) else None
    if not isinstance(sums, dict) or not sums or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) == 64 and set(v) <= _HEX for k, v in sums.items()):
        return None, "its DONE marker holds no checksums"
    return marker, None


def verify_marker(directory: str | os.PathLike, required: Iterable[str] = ()) -> str | None:
    """None when ``directory``'s marker is well formed, lists every name in ``required`` and every listed file
    matches its checksum; otherwise a short reason ("weights.safetensors does not match its checksum")."""
    directory = Path(directory)
    marker, problem = read_marker(directory)
    if marker is None:
        return problem
    sums = marker["sha256"]
    for name in required:
        if name not in sums:
            return f"its DONE marker does not list {name}"
    for name, digest in sums.items():
        path = directory / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            return f"its DONE marker names {name[:80]!r}, outside the directory"
        try:
            actual = file_sha256(path)
        except FileNotFoundError:
            return f"{name} is missing"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror or exc})"
        if actual != digest:
            return f"{name} does not match its checksum"
    return None
