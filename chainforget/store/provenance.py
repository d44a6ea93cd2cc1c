"""What produced a result: package versions, the code's git hash, model and data fingerprints, training config."""

from __future__ import annotations

import dataclasses
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("chainforget", "torch", "transformers", "avalanche-lib", "peft", "accelerate", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_hash() -> str | None:
    """The commit of the chainforget source tree, if it is a git checkout (with '-dirty' when modified)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("-dirty" if dirty else "")) or None


def provenance(prep: Any) -> dict[str, Any]:
    return {
        "versions": versions(),
        "git": git_hash(),
        "fingerprints": {"model": prep.model_spec.fingerprint(),
                         "data": {name: task.fingerprint() for name, task in prep.tasks.items()}},
        "train_config": dataclasses.asdict(prep.train_cfg),
    }


def cpu_model() -> str:
    """The CPU model line (``/proc/cpuinfo``): every wall time is reported with the machine it was measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
