"""Everyday CLI output: a redirected run log without progress-bar spam, `run` naming its folder, and
`leaderboard FOLDER` / `--no-run --out FOLDER` tabulating what a folder holds without a suite file or torch."""

import json
import re
import subprocess
import sys

import pytest
from run_helpers import cli_process

cli = cli_process


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One tiny run whose stderr goes to a file, as under nohup, Slurm or `2> run.log`."""
    root = tmp_path_factory.mktemp("everyday")
    code, out, log = cli("run", "--model", "tiny", "--chain", "bbq,gsm8k", "--limit-train", "8", "--limit-eval", "9",
                         "--batch-size", "4", "--micro-batch-size", "4", "--max-length", "128", "--out", "runs",
                         "--config", _config(root), cwd=root, stderr_path=root / "run.log")
    assert code == 0, log[-3000:]
    return root, out, log


def _config(root):
    path = root / "cfg.yaml"
    path.write_text("task_options: {gsm8k: {primary_metric: gold_logprob}}\nmetric_options: {n_boot: 20}\n")
    return str(path)


def test_redirected_log_has_no_progress_bar_spam(logged_run):
    _, _, log = logged_run
    assert "\r" not in log and "\x1b[" not in log  # no carriage returns, no cursor codes
    lines = log.splitlines()
    assert len(lines) < 40, log
    # one line per bar instead: what was trained and evaluated, with counts
    assert any(re.match(r"train 1:bbq: (\d+)/\1 step in [\d.]+s \(loss=", line) for line in lines), log
    assert any(re.match(r"train 2:gsm8k: (\d+)/\1 step in ", line) for line in lines), log
    assert any(line.startswith("eval bbq: 9/9 ex in ") for line in lines), log


def test_run_prints_its_folder(logged_run):
    root, out, _ = logged_run
    (run_dir,) = (root / "runs").glob("bbq-gsm8k_naive_*")
    assert f"results: {run_dir.relative_to(root)}" in out.splitlines()


def test_leaderboard_tabulates_a_folder_without_a_suite(logged_run):
    root, _, _ = logged_run
    code, by_arg, err = cli("leaderboard", "runs", "--format", "json", cwd=root)
    assert code == 0, err
    code, by_out, err = cli("leaderboard", "--no-run", "--out", "runs", "--format", "json", cwd=root)
    assert code == 0, err
    assert by_arg == by_out
    rows = json.loads(by_arg)["rows"]
    assert [(r["strategy"], r["chain"]) for r in rows] == [("naive", "bbq,gsm8k")]
    code, _, err = cli("leaderboard", "--no-run", "--out", "nowhere", cwd=root)
    assert code == 2 and err.startswith("error: nowhere is not a folder") and "Traceback" not in err
    code, _, err = cli("leaderboard", "runs", "--out", "other", cwd=root)
    assert code == 2 and "disagree" in err


def test_leaderboard_of_a_folder_imports_no_engine(logged_run):
    """What keeps it as quick as compare (bench/bench_leaderboard_folder.py times both): no torch, transformers or
    avalanche import, no suite expansion."""
    root, _, _ = logged_run
    code = ("import sys; from click.testing import CliRunner; from chainforget.cli import main\n"
            "r = CliRunner().invoke(main, ['leaderboard', 'runs']); assert r.exit_code == 0, r.output\n"
            "print([m for m in ('torch', 'transformers', 'avalanche') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("verbose", [False, True])
def test_list_fits_100_columns(verbose):
    """`list` (and `list --verbose`: every hyper-parameter of every strategy) wraps into 100 columns; an entry's
    first line still names it and who provides it."""
    from click.testing import CliRunner

    from chainforget.cli import main

    out = CliRunner().invoke(main, ["list", *(["--verbose"] if verbose else [])])
    assert out.exit_code == 0, out.output
    assert max(len(line) for line in out.output.splitlines()) <= 100
    for name in ("ewc", "replay", "bbq", "relative_forgetting", "tiny-trained", "quick"):
        assert any(line.startswith(name) and "chainforget" in line for line in out.output.splitlines()), name
    if verbose:
        assert "fraction=0.05 (float [0, 1]):" in out.output and "  share of each earlier task's" in out.output
