"""The one reader of a run trusts nothing unverified: bounded streaming reads, typed records, strict JSON, identity."""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from chainforget.errors import DataError
from chainforget.store.atomic import iter_jsonl_gz, read_json
from chainforget.store.markers import write_marker
from chainforget.store.results import (
    RunIdentityError,
    check_record,
    load_records,
    load_result,
    remove_unstarted_run,
    write_records,
    write_result,
)

RECORD = {"task": "bbq", "step": 1, "id": "bbq/Age/1", "group": "Age", "subgroup": "old", "gold": 2, "pred": 0,
          "correct": 0.0, "scores": {"acc": 0.0, "acc_norm": 1.0}, "primary": "acc",
          "option_logliks": [-3.1, -5.0, -4.2], "option_lengths": [3, 4, 2], "option_chars": [9, 8, 7],
          "generated": None, "parsed": None, "meta": {"category": "Age"}}


def test_a_gzip_bomb_is_refused_quickly_in_bounded_memory(tmp_path):
    """64 MiB of valid lines (64 KB compressed) against an 8 MiB limit: refused before one line is parsed, with a
    peak far below the inflated size (the shipped limit is 256 MiB; the same code path)."""
    path = tmp_path / "step-1.jsonl.gz"
    line = (json.dumps(RECORD) + "\n").encode()
    block = line * 1000
    with gzip.open(path, "wb", compresslevel=1) as gz:
        for _ in range((64 << 20) // len(block)):
            gz.write(block)
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(DataError, match="inflates to more than 8 MiB of records"):
        next(iter_jsonl_gz(path, max_bytes=8 << 20))
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20, peak  # a few 1 MiB chunks, never the file
    assert seconds < 5, seconds


def test_a_long_line_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n' + b"[" * (3 << 20) + b"\n"))
    tracemalloc.start()
    with pytest.raises(DataError, match=r"r\.jsonl\.gz line 2: longer than 1024 KiB"):
        list(iter_jsonl_gz(path))
    assert tracemalloc.get_traced_memory()[1] < 8 << 20
    tracemalloc.stop()


def test_non_finite_numbers_are_refused_by_every_json_reader(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": Infinity}\n'))
    with pytest.raises(DataError, match=r"line 2: non-finite number Infinity"):
        list(iter_jsonl_gz(path))
    (tmp_path / "f.json").write_text('{"a": NaN}')
    with pytest.raises(DataError, match="non-finite number NaN"):
        read_json(tmp_path / "f.json")
    (tmp_path / "big.json").write_text(" " * 100 + "{}")
    with pytest.raises(DataError, match="more than the 0 MiB"):
        read_json(tmp_path / "big.json", max_bytes=10)


@pytest.mark.parametrize("change, expect", [
    ({"scores": {"acc": "x"}}, "'scores' must be an object of finite numbers"),
    ({"scores": None}, "'scores' must be an object"),
    ({"option_logliks": [1.0]}, "option_logliks holds 1 options but option_lengths is [3, 4, 2]"),
    ({"option_logliks": [], "option_lengths": None}, "'option_logliks' must be a non-empty list"),
    ({"option_logliks": ["a", 1, 2]}, "'option_logliks' must be a non-empty list of finite numbers"),
    ({"gold": 5}, "'gold' is option 5, but option_logliks holds 3 options"),
    ({"pred": -1}, "'pred' is option -1"),
    ({"pred": [0]}, "'pred' must be text, a finite number or null"),
    ({"gold": {"a": 1}}, "'gold' must be text"),
    ({"correct": "yes"}, "'correct' must be a finite number or null"),
    ({"meta": [1]}, "'meta' must be an object or null"),
    ({"subgroup": 3}, "'subgroup' must be text or null"),
    ({"group": None}, "record field 'group' is missing or has the wrong type"),
    ({"step": True}, "record field 'step' is missing or has the wrong type"),
])
def test_every_record_field_is_typed_where_it_is_read(change, expect):
    with pytest.raises(DataError) as info:
        check_record({**RECORD, **change}, "r.jsonl.gz line 7")
    msg = str(info.value)
    assert msg.startswith("r.jsonl.gz line 7: ") and expect in msg and "\n" not in msg


def test_generation_and_null_fields_pass():
    gen = {**RECORD, "task": "gsm8k", "gold": "120", "pred": None, "correct": None, "scores": {"gold_logprob": -3.4},
           "option_logliks": None, "option_lengths": None, "option_chars": None, "generated": "12", "parsed": 12.0}
    assert check_record(gen, "x") is gen and check_record(RECORD, "x") is RECORD


def _complete(run_dir: Path) -> dict:
    """A complete two-row run (base, bbq) of six records per row, written through the store."""
    records = {t: [{**RECORD, "step": t, "id": f"bbq/Age/{i}", "scores": {"acc": float(i % 2), "acc_norm": 0.0},
                    "correct": float(i % 2)} for i in range(6)] for t in (0, 1)}
    for step, rows in records.items():
        write_records(run_dir, step, rows)
    result = {"run_id": run_dir.name, "spec": {"chain": ["bbq"], "strategy": "naive"}, "tasks": ["bbq"],
              "stages": ["base", "bbq"], "eval_tasks": ["bbq"],
              "task_info": {"bbq": {"kind": "safety", "primary_metric": "acc", "trained_at": 1}},
              "score_matrix": [[0.5], [0.5]], "metrics": {}}
    write_result(run_dir, result)
    return result


def test_a_folder_holding_another_runs_files_is_refused(tmp_path):
    """Copy a finished run over another run id: the folder name, run_id, spec and spec.json must agree."""
    import shutil

    _complete(tmp_path / "naive-run")
    shutil.copytree(tmp_path / "naive-run", tmp_path / "ewc-run")
    with pytest.raises(RunIdentityError) as info:
        load_result(tmp_path / "ewc-run")
    assert str(info.value) == (f"{tmp_path / 'ewc-run'}: it holds the result of run 'naive-run', not of 'ewc-run' as "
                               f"its folder name says; delete {tmp_path / 'ewc-run'} (copied or renamed by hand?) and "
                               f"rerun")
    spec = json.loads((tmp_path / "naive-run" / "spec.json").read_text())
    (tmp_path / "naive-run" / "spec.json").write_text(json.dumps({**spec, "strategy": "ewc"}))
    with pytest.raises(RunIdentityError, match="its spec.json and result.json describe different runs"):
        load_result(tmp_path / "naive-run")
    (tmp_path / "naive-run" / "spec.json").unlink()
    with pytest.raises(RunIdentityError, match="its spec.json is missing"):
        load_result(tmp_path / "naive-run")
    with pytest.raises(DataError, match="refusing to write .* holds the result of run 'x'"):
        write_result(tmp_path / "y", {**_complete(tmp_path / "x"), "run_id": "x"})


def test_records_edited_with_a_recomputed_marker_are_typed_on_read(tmp_path):
    result = _complete(tmp_path / "r")
    path = tmp_path / "r" / "records" / "step-1.jsonl.gz"
    rows = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    rows[3]["scores"] = {"acc": "x"}
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    write_marker(tmp_path / "r", ["result.json", *(f"records/step-{t}.jsonl.gz" for t in range(len(result["stages"])))])
    assert load_result(tmp_path / "r")["run_id"] == "r"  # the marker vouches; the reader's types do not
    with pytest.raises(DataError, match=r"step-1\.jsonl\.gz line 4: record field 'scores' must be"):
        load_records(tmp_path / "r")


def test_only_an_unstarted_run_folder_is_removed(tmp_path):
    unstarted = tmp_path / "a"
    unstarted.mkdir()
    (unstarted / "spec.json").write_text("{}")
    (unstarted / ".lock").write_text("")
    (unstarted / "logs").mkdir()
    assert remove_unstarted_run(unstarted) and not unstarted.exists()
    started = tmp_path / "b"
    (started / "records").mkdir(parents=True)
    (started / "spec.json").write_text("{}")
    (started / "records" / "step-0.jsonl.gz").write_bytes(b"")
    assert not remove_unstarted_run(started) and (started / "records" / "step-0.jsonl.gz").exists()
    from filelock import FileLock

    busy = tmp_path / "c"
    busy.mkdir()
    (busy / "spec.json").write_text("{}")
    with FileLock(str(busy / ".lock")):  # another process is starting this run
        assert not remove_unstarted_run(busy) and (busy / "spec.json").exists()


def test_prefix_entry_records_are_typed_as_a_runs_are(tmp_path):
    """A reused prefix entry's records become the run's: edited with the marker recomputed, they are one line."""
    from chainforget.store.prefix import PrefixStore, base_key

    store, key = PrefixStore(tmp_path), base_key({"model": "tiny"})
    store.save(key, None, [{**RECORD, "step": 0}], {"stage": "base"}, with_weights=False)
    assert store.load_records(key) == [{**RECORD, "step": 0}]
    entry = store.path(key)
    (entry / "records.jsonl.gz").write_bytes(gzip.compress(json.dumps({**RECORD, "scores": {"acc": "x"}}).encode()))
    write_marker(entry, ["records.jsonl.gz", "meta.json"])
    assert store.complete(key)  # the marker vouches for the edit; the reader's types do not
    with pytest.raises(DataError, match=r"records\.jsonl\.gz line 1: record field 'scores' must be"):
        store.load_records(key)
