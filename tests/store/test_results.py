"""The result store and its atomic-write primitives: crashes and full disks never corrupt or half-publish a file."""

from __future__ import annotations

import errno
import gzip
import json
import os
from pathlib import Path

import pytest
from report.test_report_factory import make_result, make_run  # tests/report (pythonpath: tests)

from chainforget.errors import ChainforgetError, DataError
from chainforget.store import atomic, results
from chainforget.store.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_jsonl_gz,
    write_jsonl_gz,
)
from chainforget.store.results import (
    SCHEMA_VERSION,
    find_runs,
    is_complete,
    load_records,
    load_result,
    load_run,
    write_records,
    write_result,
)


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def mine(run_dir, result):
    """``result`` as the result of the run ``run_dir`` is named after (a folder holds only its own run's result)."""
    return {**result, "run_id": Path(run_dir).name}


def write_complete(run_dir, result):
    """A complete run as the runner leaves it: one records file per score-matrix row, then the result."""
    for step in range(len(result["stages"])):
        write_records(run_dir, step, [])
    return write_result(run_dir, mine(run_dir, result))


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_roundtrip_and_no_temp_left(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write_json(path, {"a": [1, 2.5, float("nan")]})
    assert json.loads(path.read_text()) == {"a": [1, 2.5, None]}  # strict JSON: NaN stored as null
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["f.json"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_enospc_keeps_old_file_and_removes_temp(tmp_path, monkeypatch, failing):
    path = tmp_path / "result.json"
    atomic_write_bytes(path, b"old contents")
    monkeypatch.setattr(atomic.os, failing, _enospc)
    with pytest.raises(DataError) as info:
        atomic_write_bytes(path, b"new contents that never land")
    assert _one_line(info.value) == f"could not write {path}: no space left on device; free space and rerun"
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["result.json"]


def test_failure_mid_stream_keeps_old_records(tmp_path):
    """A disk that fills up half-way through a records file leaves the previous file intact, no temp files."""
    path = tmp_path / "records" / "step-1.jsonl.gz"
    write_jsonl_gz(path, [{"i": i} for i in range(3)])
    before = path.read_bytes()

    def rows():
        for i in range(5000):
            if i == 4000:
                raise OSError(errno.ENOSPC, "No space left on device")
            yield {"i": i, "pad": "x" * 50}

    with pytest.raises(ChainforgetError, match="no space left on device; free space and rerun"):
        write_jsonl_gz(path, rows())
    assert path.read_bytes() == before
    assert read_jsonl_gz(path) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert os.listdir(path.parent) == ["step-1.jsonl.gz"]


def test_non_os_error_mid_write_propagates_and_cleans_up(tmp_path):
    path = tmp_path / "f.jsonl.gz"
    with pytest.raises(TypeError):
        write_jsonl_gz(path, [{"ok": 1}, {"bad": object()}])
    assert os.listdir(tmp_path) == []


def test_jsonl_gz_is_byte_deterministic(tmp_path):
    rows = [{"task": "bbq", "id": str(i), "x": i / 3} for i in range(100)]
    write_jsonl_gz(tmp_path / "a.jsonl.gz", rows)
    write_jsonl_gz(tmp_path / "b.jsonl.gz", rows)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert read_jsonl_gz(tmp_path / "a.jsonl.gz") == rows


def test_truncated_gzip_names_file_and_line(tmp_path):
    path = tmp_path / "step-2.jsonl.gz"
    write_jsonl_gz(path, [{"i": i, "text": f"row {i} " * 20} for i in range(2000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        read_jsonl_gz(path)
    msg = _one_line(info.value)
    assert msg.startswith(f"{path} line ") and "truncated or corrupt gzip" in msg
    line = int(msg.split(" line ")[1].split(":")[0])
    assert 1 < line < 2000  # the first line that could not be read, somewhere in the middle


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n{"a": 3,,}\n{"a": 4}\n'))
    with pytest.raises(DataError, match=r"r\.jsonl\.gz line 3: bad JSON"):
        read_jsonl_gz(path)
    path.write_bytes(gzip.compress(b'{"a": 1}\n[1, 2]\n'))
    with pytest.raises(DataError, match=r"line 2: expected a JSON object, got list"):
        read_jsonl_gz(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"r\.jsonl\.gz line 1: truncated or corrupt gzip"):
        read_jsonl_gz(path)


# ---------------------------------------------------------------- result store


def test_write_then_load_result_roundtrip(tmp_path):
    run_dir = tmp_path / "runs" / "abc"
    result = make_result(strategy="replay", forgetting=0.05)
    assert not is_complete(run_dir)
    write_complete(run_dir, result)
    assert is_complete(run_dir)
    loaded = load_result(run_dir)
    assert loaded["schema_version"] == SCHEMA_VERSION
    assert loaded["metrics"] == result["metrics"] and loaded["score_matrix"] == result["score_matrix"]
    assert sorted(os.listdir(run_dir)) == ["DONE", "records", "result.json", "spec.json"]
    marker = json.loads((run_dir / "DONE").read_text())
    assert sorted(marker["sha256"]) == ["records/step-0.jsonl.gz", "records/step-1.jsonl.gz",
                                        "records/step-2.jsonl.gz", "result.json"]


def test_done_marker_written_after_result(tmp_path, monkeypatch):
    """If writing the result fails, no DONE marker exists; a previously complete run becomes incomplete."""
    run_dir = tmp_path / "run"
    write_complete(run_dir, make_result())
    monkeypatch.setattr(atomic.os, "replace", _enospc)
    with pytest.raises(DataError, match="no space left"):
        write_result(run_dir, mine(run_dir, make_result(forgetting=0.3)))
    monkeypatch.undo()
    assert not is_complete(run_dir)
    with pytest.raises(DataError) as info:
        load_result(run_dir)
    assert _one_line(info.value) == f"{run_dir}: incomplete run: rerun the same command to finish it"


def test_missing_done_marker_is_incomplete(tmp_path):
    run_dir = tmp_path / "x"
    write_complete(run_dir, make_result())
    (run_dir / "DONE").unlink()
    with pytest.raises(DataError, match="incomplete run: rerun the same command to finish it"):
        load_result(run_dir)


def test_schema_version_mismatch(tmp_path):
    run_dir = tmp_path / "runs" / "x"
    write_complete(run_dir, make_result())
    data = json.loads((run_dir / "result.json").read_text())
    data["schema_version"] = 2
    text = json.dumps(data)
    (run_dir / "result.json").write_text(text)
    (run_dir / "DONE").write_text("from another version\n")  # the version is reported first, whatever the marker
    with pytest.raises(DataError) as info:
        load_result(run_dir)
    assert _one_line(info.value) == (
        f"{run_dir} was written by schema version 2; this chainforget reads version 1: "
        "upgrade chainforget or rerun into a new --out"
    )


def test_optional_fields_may_be_null_where_the_runner_writes_null(tmp_path):
    result = {**make_result(), "sharpness": None, "git": None, "train_config": {"finetune": "full"}}
    write_complete(tmp_path / "r", result)
    assert load_result(tmp_path / "r")["sharpness"] is None
    with pytest.raises(DataError, match="field 'sharpness' must be a list or null, got str"):
        write_result(tmp_path / "s", mine("s", {**result, "sharpness": "high"}))


def test_edited_or_invalid_result_is_rejected(tmp_path):
    run_dir = tmp_path / "x"
    write_complete(run_dir, make_result())
    (run_dir / "result.json").write_text((run_dir / "result.json").read_text().replace('"bbq"', '"bqq"', 1))
    with pytest.raises(DataError, match="does not match its completion marker"):
        load_result(run_dir)
    bad = make_result()
    bad["score_matrix"] = bad["score_matrix"][:-1]
    with pytest.raises(DataError, match="score_matrix has 2 rows but there are 3 stages"):
        write_result(tmp_path / "y", mine("y", bad))
    bad = make_result()
    del bad["task_info"]
    with pytest.raises(DataError, match="missing field 'task_info'"):
        write_result(tmp_path / "z", mine("z", bad))
    assert not (tmp_path / "y").exists()  # validated before anything is written


def test_records_roundtrip_and_validation(tmp_path):
    run = make_run(n_per_group=5)
    run_dir = tmp_path / "r"
    for step in range(3):
        write_records(run_dir, step, [r for r in run["records"] if r["step"] == step])
    write_result(run_dir, mine(run_dir, run["result"]))
    assert load_records(run_dir) == run["records"]
    assert len(load_records(run_dir, stages=[2])) == 2 * 3 * 5
    loaded = load_run(run_dir)
    assert loaded["result"]["run_id"] == "r" and len(loaded["records"]) == len(run["records"])
    write_records(run_dir, 1, [{**run["records"][0], "step": 0}])
    with pytest.raises(DataError, match=r"step-1\.jsonl\.gz line 1: record has step 0 in the file of stage 1"):
        load_records(run_dir)


def test_find_runs_nested_globs_and_incomplete(tmp_path):
    base = tmp_path / "runs"
    for name in ("a", "b", "suite/c"):
        write_complete(base / name, make_result())
    write_records(base / "d", 0, [{"task": "bbq", "step": 0, "id": "1", "group": "g"}])  # killed before result
    atomic_write_json(base / "e" / "spec.json", {"chain": ["bbq"]})  # killed before the first evaluation
    prefix = base / "_prefix" / "s1-abc"  # shared-prefix store: DONE + records file, but not a run
    write_jsonl_gz(prefix / "records.jsonl.gz", [])
    atomic_write_text(prefix / "DONE", "ok\n")
    runs, warnings = find_runs([base])
    assert runs == [base / "a", base / "b", base / "suite" / "c"]
    assert warnings == [f"{base / name}: incomplete run skipped; rerun the same command to finish it"
                        for name in ("d", "e")]
    runs, _ = find_runs([str(base / "[ab]"), base / "a" / "result.json"])
    assert runs == [base / "a", base / "b"]
    with pytest.raises(DataError, match="no file or directory matches"):
        find_runs([str(tmp_path / "nope*")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no runs"):
        find_runs([tmp_path / "empty"])


def test_no_pickle_in_store():
    import inspect

    for module in (atomic, results):
        source = inspect.getsource(module)
        assert "pickle" not in source.replace("never pickle", "")


def test_written_files_get_the_normal_umask_permissions(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_json(path, {})
    assert path.stat().st_mode & 0o777 == 0o666 & ~atomic._current_umask()


# ---------------------------------------------------------------------------------------- checksummed markers


def test_a_marker_without_checksums_is_refused(tmp_path):
    """Editing result.json and writing {} (or the old "ok") into DONE must not bypass the tamper check."""
    run_dir = tmp_path / "x"
    write_complete(run_dir, make_result())
    for marker in ("{}", "ok\n", '{"schema_version": 1, "sha256": {}}', '{"sha256": {"result.json": "abc"}}'):
        (run_dir / "DONE").write_text(marker)
        with pytest.raises(DataError, match="holds no checksums, so nothing vouches for its result") as info:
            load_result(run_dir)
        _one_line(info.value)


def test_a_complete_run_must_hold_every_step_it_claims(tmp_path):
    run_dir = tmp_path / "x"
    write_complete(run_dir, make_result())
    (run_dir / "records" / "step-1.jsonl.gz").unlink()
    with pytest.raises(DataError, match=r"records/step-1\.jsonl\.gz is missing, but the run claims 3 score-matrix "
                                        r"rows; delete the run directory and rerun"):
        load_result(run_dir)
    write_records(run_dir, 1, [{"task": "bbq", "step": 1, "id": "1", "group": "g"}])  # other bytes than marked
    with pytest.raises(DataError, match=r"step-1\.jsonl\.gz does not match its completion marker"):
        load_result(run_dir)
    assert results.run_damage(run_dir).startswith(str(run_dir / "records"))
    write_complete(tmp_path / "ok", make_result())
    assert results.run_damage(tmp_path / "ok") is None

