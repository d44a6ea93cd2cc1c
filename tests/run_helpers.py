"""Test helpers shared by test files that compare whole runs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def records_by_key(out: Path) -> dict[tuple, dict]:
    """Every evaluation record under a runs directory, keyed by (step, task, example id)."""
    recs = {}
    for f in sorted(Path(out).glob("*/records/*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            for line in fh:
                r = json.loads(line)
                recs[(r["step"], r["task"], r["id"])] = r
    return recs
