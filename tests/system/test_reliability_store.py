"""The store under damage: real full disks (tmpfs), read-only directories, flipped bytes and hand-edited state.

What must hold: a real ENOSPC while writing weights is one line and leaves no temporary file; a complete
result reads from a read-only --out; a damaged prefix entry or checkpoint is detected by its checksums and never
reused (the store recomputes it); the advice printed for a damaged run works when followed as written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from reliability_support import TINY, comparable, every_file, snapshot, temp_files
from run_helpers import cli_invoke

from chainforget.errors import DataError

CONFIG = {"model": "tiny", "chain": ["bbq", "gsm8k"], "strategy": "naive", **TINY}


cli = cli_invoke


def ok(res):
    assert res.exit_code == 0, (res.exit_code, res.output, res.exception)
    return res.output


def one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One complete run (naive, bbq -> gsm8k, tiny model) and its config file."""
    root = tmp_path_factory.mktemp("store")
    (root / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    ok(cli("run", "--config", root / "run.yaml", "--out", root / "runs", "-q"))
    (run,) = [d for d in (root / "runs").iterdir() if (d / "DONE").exists()]
    return root, run


def _copy(reference, tmp_path) -> tuple[Path, Path]:
    root, run = reference
    shutil.copytree(root / "runs", tmp_path / "runs", ignore=shutil.ignore_patterns("*.lock"))
    return tmp_path / "runs", tmp_path / "runs" / run.name


# ------------------------------------------------------------------------------------------- real full disk
@pytest.fixture()
def tmpfs(tmp_path):
    """A real 2 MiB tmpfs (we run as root in CI); skipped only where mounting is refused, saying why."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(res.stderr or res.stdout).strip() or res.returncode}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_disk_while_writing_weights_is_one_line_and_leaves_no_temp_file(reference, tmpfs):
    """The tiny model's weights (13 MB) do not fit a 2 MiB tmpfs: the spec, records and base entry are written,
    the stage-1 weights fail with ENOSPC. Then with less room still, the records fail. After freeing space the
    same command finishes with the files of the uninterrupted run."""
    root, run = reference
    out = tmpfs / "o"
    line = one_line_error(cli("run", "--config", root / "run.yaml", "--out", out, "-q"))
    assert line.startswith("error: could not write ") and "weights.safetensors: no space left on device; free " \
        "space and rerun" in line, line
    assert temp_files(out) == []  # no temporary file of any name
    before = every_file(out)
    filler = tmpfs / "filler"
    free = shutil.disk_usage(tmpfs).free
    filler.write_bytes(b"\0" * max(0, free - 4096))  # now even a records file does not fit
    res = cli("run", "--config", root / "run.yaml", "--out", out, "-q")
    assert "no space left on device" in one_line_error(res)
    assert temp_files(out) == []
    after = every_file(out)
    assert {k: after.get(k) for k in before} == before  # what was written before is untouched
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    ok(cli("run", "--config", root / "run.yaml", "--out", out, "-q"))
    assert comparable(out / run.name) == comparable(run)
    assert temp_files(out) == []


def test_a_complete_result_reads_from_a_read_only_out(reference, tmpfs):
    """`run` of a complete run, `metrics`, `compare` and `leaderboard --no-run` need no write access."""
    root, run = reference
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
    shutil.copytree(root / "runs", tmpfs / "runs", ignore=shutil.ignore_patterns("*.lock"))
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        with pytest.raises(OSError):
            (tmpfs / "runs" / "probe").write_text("x")  # really read-only, even for root
        assert "bbq" in ok(cli("run", "--config", root / "run.yaml", "--out", tmpfs / "runs", "-q"))
        ok(cli("metrics", tmpfs / "runs" / run.name, "--check"))
        ok(cli("compare", f"a={tmpfs / 'runs' / run.name}", f"b={tmpfs / 'runs' / run.name}", "--n-boot", 20))
        suite = {"model": "tiny", "chains": [["bbq", "gsm8k"]], "strategies": ["naive"], "seeds": [0], **TINY}
        (root / "suite.yaml").write_text(yaml.safe_dump(suite))
        assert "naive" in ok(cli("leaderboard", "--suite", root / "suite.yaml", "--out", tmpfs / "runs", "--no-run"))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=False)


# --------------------------------------------------------------------------------------- damaged prefix entries
def _flip(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip-weights", "truncate-records", "marker-ok-text", "delete-meta"])
def test_a_damaged_prefix_entry_is_never_reused_and_is_recomputed(reference, tmp_path, damage):
    """Flipped bytes in the weights, a truncated records file, an old unchecksummed marker or a missing file: the
    next run that needs the entry says it is damaged, retrains it and ends with the uninterrupted run's files."""
    root, run = reference
    out, copy = _copy(reference, tmp_path)
    shutil.rmtree(copy)  # another run sharing the prefix would see the same; the simplest is to recompute this one
    (entry,) = sorted(out.glob("_prefix/s1-*"))
    good = snapshot(entry)
    if damage == "flip-weights":
        _flip(entry / "weights.safetensors")
    elif damage == "truncate-records":
        (entry / "records.jsonl.gz").write_bytes((entry / "records.jsonl.gz").read_bytes()[:40])
    elif damage == "marker-ok-text":
        (entry / "DONE").write_text("ok\n")
    else:
        (entry / "meta.json").unlink()
    res = cli("run", "--config", root / "run.yaml", "--out", out)
    ok(res)
    assert f"prefix entry {entry} is damaged" in res.output and "recomputing it" in res.output, res.output
    assert "stage 1 (bbq): training on" in res.output
    assert snapshot(entry) == good  # recomputed bit for bit
    assert comparable(copy) == comparable(run)


def test_following_the_advice_for_a_damaged_run_works(reference, tmp_path):
    """A records file deleted from a complete run: every reader refuses it with one line that says to delete the
    run directory and rerun; doing exactly that finishes with the same files."""
    root, run = reference
    out, copy = _copy(reference, tmp_path)
    (copy / "records" / "step-1.jsonl.gz").unlink()
    for args in (["metrics", copy], ["run", "--config", root / "run.yaml", "--out", out, "-q"]):
        line = one_line_error(cli(*args))
        assert line.endswith("delete the run directory and rerun"), line
    shutil.rmtree(copy)
    ok(cli("run", "--config", root / "run.yaml", "--out", out, "-q"))
    assert comparable(copy) == comparable(run)


@pytest.mark.parametrize("damage", ["truncate-state", "edit-state", "marker-ok-text"])
def test_resume_ignores_a_damaged_checkpoint(reference, tmp_path, damage):
    """`--resume` restores a stage only from a checkpoint whose checksums match; a damaged one is said and
    ignored (the stage is reused from its intact prefix entry), and the run ends identical."""
    root, run = reference
    out, copy = _copy(reference, tmp_path)
    (copy / "DONE").unlink()
    (copy / "result.json").unlink()
    ckpt = copy / "checkpoints" / "step-1"
    if damage == "truncate-state":
        (ckpt / "state.json").write_text((ckpt / "state.json").read_text()[:5])
    elif damage == "edit-state":
        (ckpt / "state.json").write_text("{}")
    else:
        (ckpt / "DONE").write_text("ok\n")
    res = cli("run", "--config", root / "run.yaml", "--out", out, "--resume")
    ok(res)
    assert f"checkpoint {ckpt} is damaged" in res.output and "not resuming from it" in res.output, res.output
    assert "stage 2 (gsm8k): resumed from" in res.output  # the intact one is still used
    assert comparable(copy) == comparable(run)


# ------------------------------------------------------------------------------------------ plugin states
def test_damaged_plugin_states_are_one_line(tmp_path):
    """A truncated plugin-state safetensors file, and a state naming a class that is not a dataclass."""
    import torch

    from chainforget.store.state import load_plugin_states, save_plugin_states

    class Stateful:
        name = "buffer"

        def __init__(self):
            self.state = {"w": torch.ones(3), "n": 2}

        def state_dict(self):
            return self.state

        def load_state_dict(self, state):
            self.state = state

    save_plugin_states([Stateful()], tmp_path)
    weights, meta = tmp_path / "00-buffer.safetensors", tmp_path / "00-buffer.json"
    weights.write_bytes(weights.read_bytes()[:-3])
    with pytest.raises(DataError, match="cannot read plugin state .*00-buffer.safetensors") as info:
        load_plugin_states([Stateful()], tmp_path)
    assert "\n" not in str(info.value)
    save_plugin_states([Stateful()], tmp_path)
    saved = json.loads(meta.read_text())
    for name, expect in (("chainforget.errors:brief", "is not a dataclass"),
                         ("chainforget.errors:NoSuchThing", "does not exist"),
                         ("chainforget.tasks.base:SplitRule", "has fields")):
        saved["state"] = {"__dataclass__": name, "fields": {"x": 1}}
        meta.write_text(json.dumps(saved))
        with pytest.raises(DataError, match=expect):
            load_plugin_states([Stateful()], tmp_path)
    saved["state"] = {"__tensor__": "missing"}
    meta.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="lacks"):
        load_plugin_states([Stateful()], tmp_path)


def test_weights_are_written_byte_identically(tiny_model, tmp_path):
    """The safetensors header is written with sorted keys: two writes of the same weights are the same bytes, so
    checksums in markers and byte comparisons of reruns agree."""
    from chainforget.store.state import save_trainable

    save_trainable(tiny_model[0], tmp_path / "a.safetensors")
    save_trainable(tiny_model[0], tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]


def test_tex_like_task_and_group_names_plot_as_written(tmp_path):
    """A task named ``x$\\frac{$`` (and such a group) crashed plot (mathtext); labels are now plain text."""
    from report.test_report_factory import make_run

    from chainforget.report.plots import plot_all

    odd = "x$\\\\frac{$"  # JSON-escaped backslash: the task name is x$\frac{$
    results = []
    for strategy in ("naive", "replay"):
        text = json.dumps(make_run(strategy, n_per_group=5)["result"]).replace('"bbq', '"' + odd)
        results.append(json.loads(text.replace('"Age"', '"$\\\\alpha_{"')))
    assert "x$\\frac{$" in results[0]["eval_tasks"]
    files = plot_all(results, tmp_path / "figs")
    assert files and all(Path(f).stat().st_size > 0 for f in files)
