"""Bad input gets one line, ``error: ...``, exit status 2 and no traceback, and never touches existing results.

Everything runs in-process through click's CliRunner. A guard makes any case that gets as far as evaluating or
training a model fail loudly, so a "malformed" input that is accidentally valid cannot start a run.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import yaml
from reliability_corpus import Ctx, all_cases
from reliability_fuzz_cases import bad_data_cases, bad_run_configs, bad_suites
from reliability_support import SUITE, TINY, doc_section, every_file, snapshot, update_doc_section
from run_helpers import cli_invoke

from chainforget.errors import ConfigError

NAIVE_SUITE = {**SUITE, "strategies": ["naive"]}


cli = cli_invoke


def one_line_error(res, exit_code: int = 2) -> str:
    """The whole output is one line starting with 'error:'; returns it."""
    text = res.output
    assert res.exit_code == exit_code, (res.exit_code, text, res.exception)
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A directory with one complete run (naive on bbq -> gsm8k, tiny model) made by the real leaderboard."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "suite.yaml").write_text(yaml.safe_dump(NAIVE_SUITE))
    res = cli("leaderboard", "--suite", root / "suite.yaml", "--out", root / "runs", "-q")
    assert res.exit_code == 0, res.output
    (run,) = [d for d in (root / "runs").iterdir() if (d / "DONE").exists()]
    return root, run


@pytest.fixture()
def no_model_work(monkeypatch):
    """Fail any case that reaches evaluation or training: bad input must be refused before that."""
    from chainforget.benchmark.stage_runner import StageRunner

    def refuse(*args, **kwargs):
        raise AssertionError("a malformed input reached model evaluation/training")

    monkeypatch.setattr(StageRunner, "base_records", refuse)
    monkeypatch.setattr(StageRunner, "run_stage", refuse)


# --------------------------------------------------------------------------------------------- names and flags
@pytest.mark.parametrize("args, expected", [
    (["run", "--chain", "bbq,gsm8"], "unknown task 'gsm8'; did you mean 'gsm8k'?"),
    (["run", "--chain", "bbq", "--strategy", "replya"], "unknown strategy 'replya'; did you mean 'replay'?"),
    (["run", "--chain", "bbq", "--model", "tinny"], "unknown model 'tinny'; did you mean 'tiny'?"),
    (["leaderboard", "--preset", "quik"], "unknown preset 'quik'; did you mean 'quick'?"),
    (["run", "--chain", "bbq", "--set", "ewc.lamda=1", "--strategy", "ewc"], "did you mean ewc.lambda?"),
    (["run", "--chain", "bbq", "--set", "train.weight_decy=0.1"], "did you mean 'weight_decay'?"),
    (["run", "--chain", "bbq", "--lrr", "1"], "No such option '--lrr'. (Did you mean one of"),
    (["run", "--chain", "bbq", "--lr", "fast"], "'fast' is not a valid float"),
    (["run", "--chain", "bbq", "--lr", "-1"], "learning_rate must be > 0"),
    (["run", "--chain", "bbq", "--epochs", "0"], "epochs must be >= 1"),
    (["run", "--chain", "bbq", "--limit-train", "0"], "limit_train must be a positive integer"),
    (["run", "--chain", ""], "no chain given"),
    (["run", "--chain", "bbq,gsm8k,bbq"], "task 'bbq' appears twice in the chain"),
    (["compare", "--metric", "forgeting", "x"], "metric 'forgeting'; did you mean 'forgetting'?"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_bad_names_and_flags(tmp_path, no_model_work, args, expected):
    line = one_line_error(cli(*args, "--out", tmp_path / "o") if args[0] in ("run", "leaderboard")
                          else cli(*args))
    assert expected in line
    assert not (tmp_path / "o").exists()  # refused before any directory was made


def test_bad_metric_names_have_did_you_mean(tmp_path, no_model_work):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"chain": "bbq,gsm8k", "model": "tiny",
                                   "task_options": {"gsm8k": {"primary_metric": "gold_logprb"}}}))
    assert "did you mean 'gold_logprob'?" in one_line_error(cli("run", "--config", cfg, "--out", tmp_path))
    task = tmp_path / "t.yaml"
    task.write_text("name: t\nkind: safety\nmetrics: [accc]\ndata: d.jsonl\noptions: [a, b]\n"
                    "columns: {prompt: p, gold: g}\n")
    assert "unknown metric 'accc'; did you mean 'acc'?" in one_line_error(cli("run", "--chain", task, "--out",
                                                                              tmp_path))


def test_debug_shows_the_traceback(tmp_path):
    """In a real process: the same bad name with --debug prints the traceback (exit 1, Python's own)."""
    cmd = [sys.executable, "-m", "chainforget", "--debug", "run", "--chain", "bbq,gsm8", "--out", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" in out.stderr and "UnknownNameError" in out.stderr
    out = subprocess.run([c for c in cmd if c != "--debug"], capture_output=True, text=True, timeout=120)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(errors) == 1 and errors[0].startswith("error: unknown task 'gsm8'"), out.stderr


# --------------------------------------------------------------------------------------------- models and data
def test_model_paths(tmp_path, no_model_work):
    line = one_line_error(cli("run", "--chain", "bbq", "--model", tmp_path / "nowhere", "--out", tmp_path / "o"))
    assert "does not exist" in line
    (tmp_path / "empty").mkdir()
    assert "is not a Hugging Face model directory" in one_line_error(
        cli("run", "--chain", "bbq", "--model", tmp_path / "empty", "--out", tmp_path / "o"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text('{"model_type": "llama"}')
    assert "holds no *.safetensors weights" in one_line_error(
        cli("run", "--chain", "bbq", "--model", tmp_path / "half", "--out", tmp_path / "o"))


def test_corrupt_data_files_name_file_and_line(tmp_path, no_model_work):
    task = "name: {name}\nkind: safety\nprompt_template: 'Post: {{text}}'\noptions: ['No', 'Yes']\ndata: {data}\n" \
           "columns: {{id: pid, gold: label, group: community}}\n"
    rows = [{"pid": f"p{i}", "text": f"t{i}", "label": i % 2, "community": "ab"[i % 2]} for i in range(6)]
    lines = [json.dumps(r) for r in rows]
    full = gzip.compress(("\n".join(lines) + "\n").encode())
    cases = {
        "truncated.jsonl.gz": (full[:len(full) // 2], "truncated or corrupt"),
        "badline.jsonl": ("\n".join(lines[:3] + ['{"pid": "x", '] + lines[3:]), "line 4: not valid JSON"),
        "nocolumn.jsonl": ("\n".join(lines).replace('"community"', '"comunity"'), "column 'community'"),
        "empty.jsonl": ("", "split is empty"),
        "latin1.jsonl": ("\n".join(lines).encode() + b"\n\xff\xfe\n", "not UTF-8"),
        "missing.jsonl": (None, "not found"),
    }
    for i, (data, (content, expected)) in enumerate(cases.items()):
        if content is not None:
            (tmp_path / data).write_bytes(content if isinstance(content, bytes) else content.encode())
        (tmp_path / f"t{i}.yaml").write_text(task.format(name=f"t{i}", data=data))
        line = one_line_error(cli("run", "--chain", tmp_path / f"t{i}.yaml", "--model", "tiny", "--out",
                                  tmp_path / "o"))
        assert expected in line and data in line, (data, line)


# ------------------------------------------------------------------------------------------ results on disk
def _copy(done, tmp_path):
    root, run = done
    shutil.copytree(root / "runs", tmp_path / "runs")
    return tmp_path / "runs" / run.name


def _rewrite(run_dir, edit, fix_marker: bool):
    result = json.loads((run_dir / "result.json").read_text())
    edit(result)
    text = json.dumps(result, indent=2) + "\n"
    (run_dir / "result.json").write_text(text)
    if fix_marker:  # as the (other) version that wrote it would have
        marker = json.loads((run_dir / "DONE").read_text())
        marker["sha256"]["result.json"] = hashlib.sha256(text.encode()).hexdigest()
        (run_dir / "DONE").write_text(json.dumps(marker))


def test_incompatible_schema_version_is_refused_by_every_reader(done, tmp_path):
    run_dir = _copy(done, tmp_path)
    _rewrite(run_dir, lambda r: r.update(schema_version=2), fix_marker=True)
    for args in (["metrics", run_dir], ["compare", run_dir, run_dir], ["plot", run_dir, "--out", tmp_path / "f"],
                 ["leaderboard", "--suite", done[0] / "suite.yaml", "--out", tmp_path / "runs", "--no-run"]):
        line = one_line_error(cli(*args))
        assert "written by schema version 2; this chainforget reads version 1" in line, (args, line)
    assert not (tmp_path / "f").exists()


def test_tampered_result_json_is_refused(done, tmp_path):
    run_dir = _copy(done, tmp_path)
    _rewrite(run_dir, lambda r: r["score_matrix"][0].__setitem__(0, 0.99), fix_marker=False)
    assert "does not match its completion marker" in one_line_error(cli("metrics", run_dir))
    _rewrite(run_dir, lambda r: r["score_matrix"].pop(), fix_marker=True)  # consistent marker, broken schema
    assert "score_matrix has 2 rows but there are 3 stages" in one_line_error(cli("metrics", run_dir))
    _rewrite(run_dir, lambda r: r.update(metrics=[1]), fix_marker=True)
    assert "field 'metrics' must be an object" in one_line_error(cli("compare", run_dir, run_dir))


def test_disk_full_while_writing(done, tmp_path, monkeypatch, no_model_work):
    """ENOSPC from the file system: a one-line error, the temp file removed, nothing complete changed."""
    import os

    import matplotlib.figure

    root, run = done
    before = snapshot(root / "runs")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "figure.png")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    line = one_line_error(cli("plot", run, "--out", tmp_path / "figs"))
    assert line == "error: figure.png: no space left on device; free space and rerun"
    monkeypatch.undo()

    real_fsync = os.fsync

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync_full)
    line = one_line_error(cli("run", "--config", _run_config(tmp_path, seed=3), "--out", root / "runs"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert "spec.json: no space left on device; free space and rerun" in line
    assert all(snapshot(root / "runs").get(k) == v for k, v in before.items())
    assert not list((root / "runs").rglob(".*.tmp"))


def _run_config(tmp_path, **overrides):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"chain": "bbq,gsm8k", "model": "tiny", **TINY, **overrides}))
    return path


# ------------------------------------------------------------------------------------------------------- fuzz
def test_fuzzed_configs_and_data_files(done, tmp_path, no_model_work):
    """Generated malformed run configs, suites, task files and data files: each gets exit 2 and one 'error:' line,
    and the complete run beside them stays byte for byte the same."""
    root, run = done
    before = snapshot(run) | {f"_prefix/{k}": v for k, v in snapshot(root / "runs" / "_prefix").items()}
    cases = bad_run_configs(tmp_path / "cfg", n=40) + bad_suites(tmp_path / "suites", n=25) + \
        bad_data_cases(tmp_path / "data", n=35)
    seen_messages = set()
    for kind, path in cases:
        if kind == "run":
            res = cli("run", "--config", path, "--out", root / "runs", "-q")
        elif kind == "suite":
            res = cli("leaderboard", "--suite", path, "--out", root / "runs", "-q")
        else:
            res = cli("run", "--chain", path, "--model", "tiny", "--out", root / "runs", "-q")
        try:
            seen_messages.add(one_line_error(res)[:40])
        except AssertionError as exc:
            raise AssertionError(f"{kind} case {path}:\n{path.read_text(errors='replace')[:800]}\n{exc}") from None
    after = snapshot(run) | {f"_prefix/{k}": v for k, v in snapshot(root / "runs" / "_prefix").items()}
    assert all(after.get(k) == v for k, v in before.items())
    assert len(seen_messages) > 25  # the cases really differ
    assert not (tmp_path / "PWNED").exists()


def test_run_directory_holds_only_data_formats(done):
    """JSON, gzip JSON lines and safetensors: nothing under a run or the prefix store is a pickle or torch.save zip."""
    root, _ = done
    files = [p for p in (root / "runs").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    for p in files:
        head = p.read_bytes()[:4]
        assert p.name in ("DONE", ".lock") or p.name.endswith((".lock", ".json", ".jsonl.gz", ".safetensors")), p
        assert not head.startswith(b"\x80") and not head.startswith(b"PK\x03\x04"), p


def test_leaderboard_names_a_copied_or_edited_run_and_counts_it_as_no_seed(done, tmp_path):
    """naive's run copied over EWC's run id, and naive's records edited with the marker recomputed: the leaderboard
    (--no-run) prints one warning per run naming the folder to delete and a table without them (compare and findings
    likewise: test below; given only such a run, each refuses it: corpus *-copied-run-folder, *-records-disagree-*)."""
    from reliability_corpus import _copied_folder, _edit_records, _flip_scores

    out, ewc_dir, run, _ = _copied_folder(Ctx(tmp_path, done[0] / "runs", done[1]))
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({**SUITE, "strategies": ["naive", {"ewc": {"fisher_samples": 2}}]}))
    res = cli("leaderboard", "--suite", suite, "--out", out, "--no-run", "--format", "csv")
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert warnings == [f"warning: damaged run left out of the table: {ewc_dir}: it holds the result of run "
                        f"{run.name!r}, not of {ewc_dir.name!r} as its folder name says; delete {ewc_dir} (copied or "
                        f"renamed by hand?) and rerun"]
    rows = [ln for ln in res.output.splitlines() if ln.startswith(("naive", "ewc")) or ",naive," in ln]
    assert len(rows) == 1 and "ewc" not in rows[0]  # naive once, one seed; EWC absent, not naive's twin

    out2, edited = _edit_records(_flip_scores)(Ctx(tmp_path / "b", done[0] / "runs", done[1]))
    before = every_file(out2)
    res = cli("leaderboard", "--suite", suite, "--out", out2, "--no-run")
    assert res.exit_code == 2, res.output  # its only complete run left out: nothing to tabulate
    lines = res.output.strip().splitlines()
    assert lines[0].startswith(f"warning: damaged run left out of the table: {edited}: its records disagree with its "
                               f"result.json (score_matrix[1][0]") and lines[-1].startswith("error: no complete runs")
    assert every_file(out2) == before


def test_compare_and_findings_leave_a_damaged_run_out_and_go_on(done, tmp_path):
    """Among good runs, a damaged one (here: another run's files under its id) is one warning and left out; compare
    and findings go on with the others. Only a set with no readable run is an error (the corpus cases)."""
    from reliability_corpus import IDENTITY, _copied_folder

    out, ewc_dir, run, _ = _copied_folder(Ctx(tmp_path, done[0] / "runs", done[1]))
    before = every_file(out)
    for args in (["findings", out], ["compare", f"mixed={out}", f"good={run}"]):
        res = cli(*args)
        assert res.exit_code == 0, res.output
        warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
        assert len(warnings) == 1 and f"damaged run left out: {ewc_dir}: it {IDENTITY}" in warnings[0], res.output
        assert "Traceback" not in res.output and not [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert every_file(out) == before


# ------------------------------------------------------------------------------------- the hostile-input corpus
def _wandb_unusable() -> bool:
    from chainforget.engine.logs import check_wandb

    try:
        check_wandb()
    except ConfigError:
        return True
    return False


CORPUS = all_cases(include_wandb=_wandb_unusable())
CORPUS_PASSED: set[str] = set()


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_hostile_input_corpus(done, tmp_path, no_model_work, case):
    """The hostile inputs and their generated variants, each through the real CLI (in-process): exit 2, exactly one
    line, starting with 'error:', no traceback, every file that existed under --out beforehand byte for byte the
    same (the complete run, its checkpoints and the prefix store included) and no file added."""
    root, run = done
    args = [str(a) for a in case.build(Ctx(tmp_path, root / "runs", run))]
    out = tmp_path / "copy" if case.out == "copy" else root / "runs"
    if args[0] in ("run", "leaderboard"):
        args += ["--out", str(out)]
    before = every_file(out)
    line = one_line_error(cli(*args))
    assert case.expect in line, line
    after = every_file(out)
    assert after == before  # nothing changed, nothing left behind (a refused run makes no folder)
    CORPUS_PASSED.add(case.id)


def test_reliability_doc_states_the_corpus_figures():
    """docs/reliability.md states the corpus size and pass figure; CHAINFORGET_WRITE_DOCS=1 rewrites them from
    this run (after the whole corpus passed), otherwise the stated size must equal the corpus as it is."""
    import os

    n = len(CORPUS)
    if os.environ.get("CHAINFORGET_WRITE_DOCS") == "1" and len(CORPUS_PASSED) == n:
        update_doc_section("corpus", f"**{n}/{n}** hostile inputs handled: exit status 2, one `error:` line, no "
                                     f"traceback, every existing file under `--out` byte-identical.")
    assert f"**{n}/{n}** hostile inputs handled" in doc_section("corpus"), (
        f"the corpus has {n} cases: rerun with CHAINFORGET_WRITE_DOCS=1 to update docs/reliability.md")
