"""The main job (`make run` = `chainforget leaderboard --preset quick`) timed now and at an older commit, on this
machine, in one run: the ratio is what the speed work bought, free of the ~2x spread between machines of a class.

    .venv/bin/python bench/bench_main_job.py                   # new vs 70ec403 (before the speed work)
    .venv/bin/python bench/bench_main_job.py --skip-old        # new only, plus the dry-run estimate vs measured

Each side runs from an empty runs directory (the model conversion cache is shared and warmed first, so neither side
pays it). The old side runs from a git worktree of the older commit with the same virtual environment; entry-point
plugins are not loaded there (the installed metadata names the new layout's modules). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chainforget.store.provenance import cpu_model

ROOT = Path(__file__).resolve().parent.parent
OLD_ENTRY = ("import sys, pluggy; pluggy.PluginManager.load_setuptools_entrypoints = lambda self, group, name=None: 0; "
             "from chainforget.cli import main; sys.exit(main())")
NEW_ENTRY = "import sys; from chainforget.cli import main; sys.exit(main())"


def leaderboard(tree: Path, entry: str, out: Path, preset: str, extra: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", entry, "leaderboard", "--preset", preset, "--out", str(out), "-q",
                           *extra], cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"leaderboard in {tree} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default="70ec403", help="older commit to compare with")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--skip-old", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cf-mainjob-"))
    figures: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "preset": args.preset}
    # warm the model cache once (the one-time GGUF conversion is not part of either side)
    subprocess.run([sys.executable, "-c", "from chainforget.engine.models import resolve_model; "
                    "resolve_model('smollm2-135m').load()"], cwd=ROOT, check=True)

    dry = subprocess.run([sys.executable, "-c", NEW_ENTRY, "leaderboard", "--preset", args.preset, "--out",
                          str(work / "new"), "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    match = re.search(r"estimated wall time: (?:(\d+) min )?([\d.]+) s", dry.stdout + dry.stderr)
    if match:
        figures["dry_run_estimate_s"] = 60 * int(match.group(1) or 0) + float(match.group(2))
    figures["dry_run_output"] = (dry.stdout + dry.stderr)[-1500:]

    new_s, table = leaderboard(ROOT, NEW_ENTRY, work / "new", args.preset, [])
    figures["new_seconds"] = round(new_s, 1)
    figures["new_runs_dir"] = str(work / "new")
    figures["new_table"] = table
    if "dry_run_estimate_s" in figures:
        figures["estimate_error"] = round(figures["dry_run_estimate_s"] / new_s - 1, 3)

    if not args.skip_old:
        old_tree = work / "old-tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.old], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            old_s, old_table = leaderboard(old_tree, OLD_ENTRY, work / "old", args.preset, [])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
        figures.update(old_commit=args.old, old_seconds=round(old_s, 1), speedup=round(old_s / new_s, 3),
                       old_table=old_table)
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
