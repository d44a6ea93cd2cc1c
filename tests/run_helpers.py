"""Test helpers shared across rooms: the CLI in a process or in this one, and runs compared record by record."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
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


def cli_process(*args, cwd=None, env=None, timeout: int = 900, stderr_path=None) -> tuple[int, str, str]:
    """``python -m chainforget ARGS`` in a real process: (exit status, stdout, stderr). With ``stderr_path`` the
    standard error goes to that file (not a pipe: what a redirected log sees) and is read back from it."""
    err = open(stderr_path, "w") if stderr_path else subprocess.PIPE
    try:
        out = subprocess.run([sys.executable, "-m", "chainforget", *map(str, args)], stdout=subprocess.PIPE,
                             stderr=err, text=True, cwd=cwd, env=env, timeout=timeout)
    finally:
        if stderr_path:
            err.close()
    return out.returncode, out.stdout, (Path(stderr_path).read_text() if stderr_path else out.stderr)


def cli_invoke(*args):
    """The CLI in this process (click's runner): a Result with ``exit_code`` and ``output``."""
    from click.testing import CliRunner

    from chainforget.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], prog_name="chainforget")
