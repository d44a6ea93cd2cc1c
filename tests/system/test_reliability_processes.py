"""Real processes on the tiny model: kills at random points, Ctrl-C, two leaderboards at once, determinism, NaN.

Every child runs the real CLI (``chainforget.cli.main``) in its own process, forked from a server that imported
torch once (see reliability_support.py). The reference is one uninterrupted leaderboard of naive and EWC on
bbq -> gsm8k, computed by two leaderboard processes started at the same moment on the same --out.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from reliability_support import (
    RUN_CONFIG,
    SUITE,
    TINY,
    ForkServer,
    check_no_half_files,
    comparable,
    snapshot,
    temp_files,
    update_doc_section,
    wait_for,
)

RUN = ["run", "--config", "run.yaml", "--resume"]
# More kill rounds (e.g. for the numbers in docs/reliability.md): CHAINFORGET_KILL_SEEDS=1,2,3,4 pytest ...
SEEDS = [int(x) for x in os.environ.get("CHAINFORGET_KILL_SEEDS", "20241216").split(",")]
BOARD = ["leaderboard", "--suite", "suite.yaml", "--format", "csv"]
KILL_STATS: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    (root / "run.yaml").write_text(yaml.safe_dump(RUN_CONFIG))
    (root / "naive.yaml").write_text(yaml.safe_dump({"model": "tiny", "chain": "bbq,gsm8k", **TINY}))
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    fs = ForkServer(root)
    yield fs
    fs.close()
    if KILL_STATS:
        print("\nkill statistics:", json.dumps(KILL_STATS))
        if os.environ.get("CHAINFORGET_WRITE_DOCS") == "1":
            update_doc_section("kills", kill_table(KILL_STATS))


def kill_table(stats: dict) -> str:
    """The kill figures of docs/reliability.md, from this session's kill tests."""
    rows = []
    for kind, what in (("run", "`run` bbq -> gsm8k, EWC"), ("leaderboard", "leaderboard, naive + EWC")):
        runs = [v for k, v in stats.items() if k.startswith(kind + " ")]
        if not runs:
            continue
        s = {k: sum(r.get(k, 0) for r in runs) for k in ("specs", "fired", "survived", "lost")}
        kinds = {k: sum(r["kinds"][k] for r in runs) for k in ("train", "eval", "write", "weights")}
        rows.append([f"{what} ({len(runs)} schedule{'s' if len(runs) > 1 else ''})", s["specs"], s["fired"],
                     f"{kinds['train']} / {kinds['eval']} / {kinds['write']} ({kinds['weights']})", s["survived"],
                     s["lost"]])
        extra = [f"{sum(r.get(x, 0) for r in runs)} {what}" for x, what in (("enospc", "full disks"),
                                                                              ("nan", "NaN losses"))
                 if any(x in r for r in runs)]
        if extra:
            rows[-1][0] += f"; plus {' and '.join(extra)}, each refused in one line"
    lines = ["| | kill points armed | kills fired (SIGKILL) | in training / evaluation / a write (of which weights) "
             "| survived | results lost |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    seeds = sorted({k.split(" ", 1)[1] for k in stats if k.startswith(("run ", "leaderboard "))})
    lines.append("")
    lines.append(f"Schedules (seeds): {', '.join(seeds)}. Ctrl-C exit: {stats.get('ctrl-c seconds to exit', '-')} s "
                 f"after SIGINT; SIGTERM exit: {stats.get('sigterm seconds to exit', '-')} s after the signal. "
                 f"Regenerate: `CHAINFORGET_WRITE_DOCS=1 CHAINFORGET_KILL_SEEDS=... pytest "
                 f"tests/system/test_reliability_processes.py`.")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def board(server):
    """Two leaderboards started at the same moment on the same --out: the reference results."""
    a = server.start(BOARD + ["--out", "board"])
    b = server.start(BOARD + ["--out", "board"])
    return server.workdir / "board", server.wait(a), server.wait(b)


def run_dir(out: Path, strategy: str) -> Path:
    """The tiny-config run of ``strategy`` (complete ones first: the NaN test adds a failed one)."""
    dirs = sorted(out.glob(f"bbq-gsm8k_{strategy}_s0_*"), key=lambda d: not (d / "DONE").exists())
    return dirs[0]


def error_line(err: str) -> str:
    """The CLI's last stderr line (progress bars above it are fine); it must be the only 'error:' line."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert "Traceback" not in err, err[-3000:]
    assert sum(ln.startswith("error:") for ln in lines) == 1, err[-3000:]
    return lines[-1]


def test_two_leaderboards_at_once_train_every_stage_once(board):
    out, (rc_a, table_a, err_a), (rc_b, table_b, err_b) = board
    assert rc_a == 0, err_a[-3000:]
    assert rc_b == 0, err_b[-3000:]
    both = err_a + err_b
    # distinct stages: the base evaluation, stage 1 (bbq, shared by naive and ewc), stage 2 of naive, stage 2 of ewc
    assert both.count("evaluating the base model") == 1
    assert both.count("training on") == 3
    assert both.count(": done in") == 2  # each run computed by exactly one process
    assert table_a == table_b
    rows = list(csv.DictReader(io.StringIO(table_a)))
    assert sorted(r["strategy"] for r in rows) == ["ewc", "naive"]
    trained = [json.loads((run_dir(out, s) / "result.json").read_text())["timings"]["train_seconds"]
               for s in ("naive", "ewc")]
    assert sorted(k for t in trained for k in t) == ["1", "2", "2"]  # stage 1 trained by one run only
    assert check_no_half_files(out) > 20 and not temp_files(out)


def test_same_seed_and_config_give_identical_results_in_another_process(server, board):
    out = board[0]
    rc, _, err = server.run(RUN + ["--out", "second"])
    assert rc == 0, err[-3000:]
    again = run_dir(server.workdir / "second", "ewc")
    ref = run_dir(out, "ewc")
    assert again.name == ref.name  # `run` and `leaderboard` agree on the run id
    a, b = (json.loads((d / "result.json").read_text()) for d in (again, ref))
    for key in ("score_matrix", "group_score_matrix", "metrics"):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True)
    assert comparable(again) == comparable(ref)  # records, checkpoints, plugin states: byte for byte


def _chain_of_kills(server, args, out: str, specs: list[str], between=None) -> dict:
    """Start ``args`` with every remaining crash spec armed until none is left, then once without; return stats.

    After every kill the directory must hold no half-written file. ``between(process_index)`` may run extra
    faulty processes (disk full, NaN) in the middle of the chain.
    """
    log = server.workdir / f"{out}.faults"
    remaining, stats = list(specs), {"tried": 0, "fired": 0, "survived": 0, "lost": 0}
    outdir = server.workdir / out
    kinds = {"train": 0, "eval": 0, "write": 0, "weights": 0}
    while remaining:
        stats["tried"] += 1
        rc, _, err = server.run(args + ["--out", out],
                                env={"CHAINFORGET_CRASH_AT": ",".join(remaining), "CHAINFORGET_FAULT_LOG": str(log)})
        fired = [ln.split()[2] for ln in log.read_text().splitlines()] if log.exists() else []
        for spec in (s for s in remaining if s in fired):
            kinds[spec.split("/")[0]] += 1
            kinds["weights"] += spec.endswith(".safetensors")
        remaining = [s for s in remaining if s not in fired]
        if rc == 0:
            break
        assert rc == -signal.SIGKILL, err[-3000:]
        stats["fired"] += 1
        check_no_half_files(outdir)  # a corrupt file under a final name would raise here
        stats["survived"] += 1
        if between:
            between(stats["fired"])
    rc, table, err = server.run(args + ["--out", out])
    assert rc == 0, err[-3000:]
    assert temp_files(outdir) == []  # no temporary (or any other unnamed) file survives the rerun
    stats["unfired"] = len(remaining)
    return stats | {"kinds": kinds, "table": table}


def _pick(rng: random.Random, timeline: list[str], n_writes: int) -> list[str]:
    """Seeded-random kill points in timeline order: one in training and one in evaluation (each after a random
    delay, so the process dies in the middle of it) and ``n_writes`` while writing files."""
    train = [s for s in timeline if s.startswith("train/")]
    evals = [s for s in timeline if s.startswith("eval/")]
    writes = [s for s in timeline if s.startswith("write/")]
    chosen = [rng.choice(train) + f"+{rng.uniform(0.02, 0.3):.2f}", rng.choice(evals) + f"+{rng.uniform(0, 0.05):.3f}",
              *rng.sample(writes, n_writes)]
    return sorted(chosen, key=lambda spec: timeline.index(spec.split("+")[0]))


RUN_TIMELINE = [
    "write/*/spec.json", "eval/0", "write/base-*/records.jsonl.gz", "write/base-*/DONE",
    "write/records/step-0.jsonl.gz", "train/1", "eval/1", "write/s1-*/weights.safetensors",
    "write/s1-*/records.jsonl.gz", "write/s1-*/meta.json", "write/s1-*/DONE", "write/step-1/*.safetensors",
    "write/step-1/state.json", "write/step-1/DONE", "write/records/step-1.jsonl.gz", "train/2", "eval/2",
    "write/s2-*/weights.safetensors", "write/s2-*/meta.json", "write/s2-*/DONE", "write/step-2/*.safetensors",
    "write/step-2/DONE", "write/records/step-2.jsonl.gz", "write/*/result.json", "write/bbq-gsm8k_*/DONE",
]
# Always armed: a weights file and a plugin state (safetensors, through the same atomic writer as everything else)
# and the records file between the stages (where the NaN is planted).
FIXED_RUN_POINTS = {"write/records/step-1.jsonl.gz", "write/s2-*/weights.safetensors", "write/step-1/*.safetensors"}


@pytest.mark.parametrize("seed", SEEDS)
def test_run_killed_at_random_points_ends_identical(server, board, seed):
    """SIGKILL at seeded-random points (training, evaluation, every kind of write), plus a full disk and a NaN
    loss along the way; the same command, rerun, ends with the files and metrics of the uninterrupted run."""
    name = f"killed-{seed}"
    out = server.workdir / name
    extra = {"enospc": 0, "nan": 0}

    def between(n_kills: int) -> None:
        if n_kills == 1:  # the disk fills up while writing the next records file
            before = snapshot(out)
            rc, _, err = server.run(RUN + ["--out", name],
                                    env={"CHAINFORGET_ENOSPC_AT": "write/records/step-*.jsonl.gz"})
            assert rc == 2 and "no space left on device" in error_line(err), err[-3000:]
            assert _kept(before, snapshot(out))
            extra["enospc"] += 1
        stage1 = list(out.glob("_prefix/s1-*/DONE"))
        if stage1 and not list(out.glob("_prefix/s2-*/DONE")) and not extra["nan"]:
            before = snapshot(out)
            rc, _, err = server.run(RUN + ["--out", name], env={"CHAINFORGET_NAN_AT": "train/2"})
            line = error_line(err)
            assert rc == 2 and re.search(r"non-finite loss .* experience 2 .* step 1\b", line), err[-3000:]
            assert _kept(before, snapshot(out))  # stage 1's weights, records and checkpoint untouched
            assert not list(out.glob("_prefix/s2-*/DONE")) and not list(out.glob("*/DONE"))
            extra["nan"] += 1

    # seeded-random points, plus the fixed ones
    specs = sorted(set(_pick(random.Random(seed), RUN_TIMELINE, 5)) | FIXED_RUN_POINTS,
                   key=lambda spec: RUN_TIMELINE.index(spec.split("+")[0]))
    stats = _chain_of_kills(server, RUN, name, specs, between)
    ref, got = run_dir(board[0], "ewc"), run_dir(out, "ewc")
    differing = [k for k, v in comparable(ref).items() if comparable(got).get(k) != v]
    stats["lost"] = len(differing)
    stats.pop("table")
    KILL_STATS[f"run {seed}"] = stats | extra | {"specs": len(specs)}
    assert differing == [] and comparable(got).keys() == comparable(ref).keys()
    for key, digest in snapshot(out / "_prefix").items():  # the shared prefix entries are identical too
        assert snapshot(board[0] / "_prefix")[key] == digest, key
    assert stats["fired"] >= 5 and extra == {"enospc": 1, "nan": 1}, (stats, extra)


def _kept(before: dict[str, str], after: dict[str, str]) -> bool:
    """Every file that existed before is still there, byte for byte (new files may appear)."""
    return all(after.get(k) == v for k, v in before.items())


LEADERBOARD_TIMELINE = [
    "eval/0", "train/1", "write/s1-*/weights.safetensors", "write/s1-*/DONE", "train/2",
    "write/s2-*/records.jsonl.gz", "write/*naive*/result.json",
    "write/bbq-gsm8k_naive_*/DONE", "write/step-1/DONE", "train/2:2", "eval/2", "write/bbq-gsm8k_ewc_*/DONE",
]


@pytest.mark.parametrize("seed", SEEDS)
def test_leaderboard_killed_and_restarted_gives_the_same_table(server, board, seed):
    specs = _pick(random.Random(seed), LEADERBOARD_TIMELINE, 2)
    stats = _chain_of_kills(server, BOARD, f"board-killed-{seed}", specs)
    assert stats.pop("table") == board[1][1]
    out = server.workdir / f"board-killed-{seed}"
    lost = [s for s in ("naive", "ewc") if comparable(run_dir(out, s)) != comparable(run_dir(board[0], s))]
    KILL_STATS[f"leaderboard {seed}"] = stats | {"lost": len(lost), "specs": len(specs)}
    assert lost == []
    assert stats["fired"] >= 3, stats


def test_ctrl_c_stops_quickly_says_how_to_resume_and_resumes(server, board):
    out = server.workdir / "interrupted"
    pid = server.start(RUN + ["--out", "interrupted"])
    assert wait_for(lambda: list(out.glob("_prefix/base-*/DONE")), timeout=120)  # base evaluated, training next
    os.kill(pid, signal.SIGINT)
    t = time.monotonic()
    rc, _, err = server.wait(pid)
    elapsed = time.monotonic() - t
    KILL_STATS["ctrl-c seconds to exit"] = round(elapsed, 2)
    assert rc == 130, err[-3000:]
    assert elapsed < 5, elapsed
    assert "Traceback" not in err
    assert "interrupted; rerun the same command" in err.strip().splitlines()[-1]
    assert not (run_dir(out, "ewc") / "DONE").exists()
    rc, _, err = server.run(RUN + ["--out", "interrupted"])
    assert rc == 0, err[-3000:]
    assert comparable(run_dir(out, "ewc")) == comparable(run_dir(board[0], "ewc"))


def test_sigterm_stops_cleanly_says_how_to_resume_and_resumes(server, board):
    """SIGTERM (Slurm, Kubernetes) is handled like Ctrl-C: one line, exit status 143, no temporary file, and the
    rerun finishes with the uninterrupted run's files; more SIGTERMs during the shutdown change nothing."""
    out = server.workdir / "terminated"
    pid = server.start(RUN + ["--out", "terminated"])
    assert wait_for(lambda: list(out.glob("_prefix/base-*/DONE")), timeout=120)
    os.kill(pid, signal.SIGTERM)
    t = time.monotonic()
    for _ in range(5):  # a scheduler that repeats itself: the shutdown must still end with 143 and its line
        time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    rc, _, err = server.wait(pid)
    KILL_STATS["sigterm seconds to exit"] = round(time.monotonic() - t, 2)
    assert rc == 143, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("terminated (SIGTERM); rerun the same command (with --resume for `run`) "
                                            "to continue")
    assert temp_files(out) == []
    rc, _, err = server.run(RUN + ["--out", "terminated"])
    assert rc == 0, err[-3000:]
    assert comparable(run_dir(out, "ewc")) == comparable(run_dir(board[0], "ewc"))


def test_a_damaged_run_is_reported_and_the_leaderboard_goes_on(server, board):
    """One corrupt result.json among the suite's runs: the leaderboard (computing, and --no-run) warns about that
    run in one line and prints the table of the others."""
    import shutil

    copy = server.workdir / "board-damaged"
    shutil.copytree(board[0], copy, ignore=shutil.ignore_patterns("*.lock"))
    (run_dir(copy, "ewc") / "result.json").write_text("{}")
    for extra in ([], ["--no-run"]):
        rc, table, err = server.run(BOARD + ["--out", "board-damaged", *extra])
        assert rc == 0, err[-3000:]
        warnings = [ln for ln in err.splitlines() if ln.startswith("warning: damaged run")]
        assert len(warnings) == 1 and "does not match its completion marker" in warnings[0], err[-3000:]
        rows = list(csv.DictReader(io.StringIO(table)))
        assert [r["strategy"] for r in rows] == ["naive"]
    assert (run_dir(copy, "ewc") / "result.json").read_text() == "{}"  # reported, not silently recomputed


def test_nan_loss_from_a_huge_learning_rate_keeps_earlier_results(server, board):
    out = board[0]
    before = snapshot(out)
    rc, _, err = server.run(["run", "--config", "naive.yaml", "--lr", "1e30", "--out", "board"])
    line = error_line(err)
    assert rc == 2, err[-3000:]
    assert re.match(r"error: non-finite (loss|gradient norm) \(\S+\) in experience 1 \(task bbq\) at optimizer "
                    r"step \d+", line), line
    after = snapshot(out)
    assert _kept(before, after)  # the complete runs and every prefix entry, byte for byte
    (failed,) = [d for d in out.glob("bbq-gsm8k_naive_s0_*") if not (d / "DONE").exists()]
    assert not (failed / "result.json").exists()
    new_done = sorted(k for k in after if k not in before and k.endswith("DONE"))
    assert len(new_done) == 1 and new_done[0].startswith("_prefix/base-")  # the base evaluation, written before
    check_no_half_files(out)
