"""How long `leaderboard --no-run` takes to tabulate a folder, next to `compare` on the same folder.

    .venv/bin/python bench/bench_leaderboard_folder.py [--runs DIR] [--repeat 3]

Without ``--runs`` it first makes a folder of two tiny runs (bbq <-> gsm8k, naive; about a minute on CPU). Each
command runs ``--repeat`` times as a fresh process (what a user waits for: start-up, imports, reading and
verifying the runs, the table); the median wall time of each is reported, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """model: tiny
chains: [[bbq, gsm8k], [gsm8k, bbq]]
strategies: [naive]
seeds: [0]
limit_train: {bbq: 8, gsm8k: 4}
limit_eval: {bbq: 18, gsm8k: 4}
task_options: {gsm8k: {primary_metric: gold_logprob}}
train: {batch_size: 4, micro_batch_size: 4, max_length: 128}
metric_options: {n_boot: 50}
"""


def timed(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "chainforget", *args], capture_output=True, text=True, cwd=cwd)
    if out.returncode != 0:
        raise SystemExit(f"chainforget {' '.join(args)} failed: {out.stderr[-500:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=None, help="a folder of complete runs (default: make a tiny one)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = None
    if args.runs is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        (root / "suite.yaml").write_text(SUITE)
        timed(["leaderboard", "--suite", "suite.yaml", "--out", "runs", "-q"], root)
        runs = root / "runs"
    else:
        runs = args.runs.resolve()
        root = runs.parent
    commands = {"leaderboard --no-run": ["leaderboard", "--no-run", "--out", str(runs)],
                "compare --by strategy": ["compare", str(runs), "--by", "strategy"]}
    figures = {name: statistics.median(timed(cmd, root) for _ in range(args.repeat)) for name, cmd in commands.items()}
    for name, seconds in figures.items():
        print(f"{name:24s} {seconds:6.2f} s (median of {args.repeat})")
    print(json.dumps({"runs": str(runs), "repeat": args.repeat, **{k: round(v, 3) for k, v in figures.items()}}))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
