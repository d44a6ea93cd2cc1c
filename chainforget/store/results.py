"""The result store of one run directory ``runs/<run-id>/`` (layout and schema in docs/contracts.md).

Why a store of its own: leaderboard, compare and plot read result files only, so these files are the product. They
are JSON (never pickle), written atomically, validated against the schema on read, and a run counts as complete only
when its ``DONE`` marker exists, which ``write_result`` writes last. A run killed at any moment is therefore either
complete or visibly incomplete, never half-read. The marker holds the sha256 of ``result.json`` and of every records
file; a reader verifies them, so an edited result, a damaged or deleted records file is refused, not read.

Layout (all paths from ``store/layout.py``)::

    runs/<run-id>/result.json                 the schema-versioned result (``write_result``)
    runs/<run-id>/DONE                        completion marker: {"schema_version", "sha256": {file: hex}}
    runs/<run-id>/records/step-<t>.jsonl.gz   per-example evaluation records of score-matrix row t
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

from chainforget.errors import DataError, brief
from chainforget.store.atomic import (
    MAX_JSON_BYTES,
    atomic_write_json,
    atomic_write_text,
    dumps_json,
    iter_jsonl_gz,
    loads_strict,
    read_json,
    write_error,
    write_jsonl_gz,
)
from chainforget.store.layout import DONE_FILE, RECORDS_DIR, RESULT_FILE, SPEC_FILE, RunLayout
from chainforget.store.markers import file_sha256, read_marker, write_marker

__all__ = ["DONE_FILE", "RECORDS_DIR", "RESULT_FILE", "SCHEMA_VERSION", "SPEC_FILE", "RunIdentityError", "check_record",
           "find_runs", "is_complete", "iter_records", "load_records", "load_result", "load_run", "record_stages",
           "records_path", "remove_unstarted_run", "run_damage", "validate_result", "write_records", "write_result"]

SCHEMA_VERSION = 1
REDO = "delete the run directory and rerun"

# key -> (allowed types, description); required keys first, then optional ones checked when present
_REQUIRED: dict[str, tuple[tuple[type, ...], str]] = {
    "run_id": ((str,), "a string"),
    "spec": ((dict,), "an object"),
    "tasks": ((list,), "a list of task names"),
    "stages": ((list,), "a list of stage labels"),
    "eval_tasks": ((list,), "a list of task names"),
    "task_info": ((dict,), "an object"),
    "score_matrix": ((list,), "a list of rows"),
    "metrics": ((dict,), "an object"),
}
_OPTIONAL: dict[str, tuple[tuple[type, ...], str]] = {
    "resolved_params": ((dict,), "an object"),
    "versions": ((dict,), "an object"),
    "git": ((str, type(None)), "a string or null"),
    "fingerprints": ((dict,), "an object"),
    "timings": ((dict,), "an object"),
    "group_score_matrix": ((dict,), "an object"),
    "group_sizes": ((dict,), "an object"),
    "sharpness": ((list, type(None)), "a list or null"),
    "train_config": ((dict,), "an object"),
    "metric_options": ((dict,), "an object"),
}
_RECORD_KEYS: dict[str, tuple[type, ...]] = {"task": (str,), "step": (int,), "id": (str,), "group": (str,)}


class RunIdentityError(DataError):
    """A run directory whose files describe another run (copied or renamed by hand, or two --outs merged): never
    reused, counted or shown; the fix is to delete that folder."""


def _corrupt(where: str, what: str) -> DataError:
    return DataError(f"{where}: {what}; the file is corrupt or was edited: {REDO}")


def _is_number(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _scalar(x: Any) -> bool:
    """What ``gold``, ``pred`` and ``parsed`` may hold: text, a finite number or null."""
    return x is None or isinstance(x, str) or _finite(x)


def _int_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in x)


def check_record(rec: dict, where: str) -> dict:
    """Every field a metric reads has its type (docs/contracts.md, "Evaluation records"); one-line DataError naming
    ``where`` (file and line) otherwise. Numbers must be finite: the writer stores a non-finite one as null."""
    def bad(field: str, what: str) -> DataError:
        return _corrupt(where, f"record field {field!r} must be {what}, got {brief(rec.get(field))}")

    for key, types in _RECORD_KEYS.items():
        if not isinstance(rec.get(key), types) or isinstance(rec.get(key), bool):
            raise _corrupt(where, f"record field {key!r} is missing or has the wrong type")
    for key in ("subgroup", "primary", "generated"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise bad(key, "text or null")
    for key in ("gold", "pred", "parsed"):
        if not _scalar(rec.get(key)):
            raise bad(key, "text, a finite number or null")
    if rec.get("correct") is not None and not _finite(rec["correct"]):
        raise bad("correct", "a finite number or null")
    scores = rec.get("scores")
    if not isinstance(scores, dict) or not all(v is None or _finite(v) for v in scores.values()):
        raise bad("scores", "an object of finite numbers (or null) per metric")
    if rec.get("meta") is not None and not isinstance(rec["meta"], dict):
        raise bad("meta", "an object or null")
    logliks = rec.get("option_logliks")
    if logliks is not None:
        if not isinstance(logliks, list) or not logliks or not all(_finite(v) for v in logliks):
            raise bad("option_logliks", "a non-empty list of finite numbers (one per option) or null")
        for key in ("option_lengths", "option_chars"):
            other = rec.get(key)
            if other is not None and (not _int_list(other) or len(other) != len(logliks)):
                raise _corrupt(where, f"option_logliks holds {len(logliks)} options but {key} is {brief(other)} "
                                      f"(one integer per option)")
        for key in ("gold", "pred"):
            value = rec.get(key)
            if isinstance(value, int) and not 0 <= value < len(logliks):
                raise _corrupt(where, f"record field {key!r} is option {value}, but option_logliks holds "
                                      f"{len(logliks)} options")
    return rec


def validate_result(result: Any, where: str = "result.json") -> dict:
    """Check a result dict against schema version ``SCHEMA_VERSION``; return it or raise a one-line DataError."""
    if not isinstance(result, dict):
        raise _corrupt(where, f"expected a JSON object, got {type(result).__name__}")
    version = result.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _corrupt(where, "no integer 'schema_version'")
    if version != SCHEMA_VERSION:
        fix = "upgrade chainforget or rerun into a new --out" if version > SCHEMA_VERSION else (
            "rerun into a new --out (or read it with the older chainforget that wrote it)"
        )
        raise DataError(
            f"{where} was written by schema version {version}; this chainforget reads version {SCHEMA_VERSION}: {fix}"
        )
    for key, (types, desc) in _REQUIRED.items():
        if key not in result:
            raise _corrupt(where, f"missing field {key!r}")
        if not isinstance(result[key], types):
            raise _corrupt(where, f"field {key!r} must be {desc}, got {type(result[key]).__name__}")
    for key, (types, desc) in _OPTIONAL.items():
        if key in result and not isinstance(result[key], types):
            raise _corrupt(where, f"field {key!r} must be {desc}, got {type(result[key]).__name__}")
    for key in ("tasks", "stages", "eval_tasks"):
        if not all(isinstance(x, str) for x in result[key]):
            raise _corrupt(where, f"field {key!r} must hold strings only")
    matrix, n_rows, n_cols = result["score_matrix"], len(result["stages"]), len(result["eval_tasks"])
    if len(matrix) != n_rows:
        raise _corrupt(where, f"score_matrix has {len(matrix)} rows but there are {n_rows} stages")
    for t, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != n_cols or not all(_is_number(x) for x in row):
            raise _corrupt(where, f"score_matrix row {t} must be {n_cols} numbers (one per eval task)")
    for task in result["eval_tasks"]:
        info = result["task_info"].get(task)
        if not isinstance(info, dict) or info.get("kind") not in ("safety", "capability"):
            raise _corrupt(where, f"task_info[{task!r}] must be an object with kind 'safety' or 'capability'")
        trained_at = info.get("trained_at")
        if trained_at is not None and (not isinstance(trained_at, int) or not 0 < trained_at < n_rows):
            raise _corrupt(where, f"task_info[{task!r}].trained_at must be null or a row index in 1..{n_rows - 1}")
    for name, per_key in result["metrics"].items():
        if not isinstance(per_key, dict) or not all(isinstance(v, dict) for v in per_key.values()):
            raise _corrupt(where, f"metrics[{name!r}] must map task names to objects")
    return result


def write_result(run_dir: str | os.PathLike, result: dict) -> Path:
    """Validate and write ``result.json`` atomically, then the ``DONE`` marker last; return the result path.

    The marker holds the sha256 of ``result.json`` and of every records file of the run's score-matrix rows.
    ``schema_version`` is filled in when absent. An existing marker is removed first, so a rewrite interrupted at
    any point leaves the run incomplete rather than pairing the old marker with a new result.
    """
    layout = RunLayout(run_dir)
    result = {"schema_version": SCHEMA_VERSION, **result}
    result.setdefault("records", f"{RECORDS_DIR}/")
    result.setdefault("complete", True)
    validate_result(json.loads(dumps_json(result)), str(layout.result))
    problem = _identity_problem(layout.root.name, result["run_id"])
    if problem is not None:  # a writer's bug: a result no reader would accept must not be written
        raise DataError(f"refusing to write {layout.result}: {problem}")
    if not layout.spec.is_file():
        atomic_write_json(layout.spec, result["spec"])
    try:
        layout.done.unlink(missing_ok=True)
    except OSError as exc:
        raise write_error(layout.done, exc) from exc
    atomic_write_text(layout.result, dumps_json(result) + "\n")
    records = [layout.records_name(t) for t in range(len(result["stages"])) if layout.records(t).is_file()]
    write_marker(layout.root, [RESULT_FILE, *records])
    return layout.result


def is_complete(run_dir: str | os.PathLike) -> bool:
    """True when the run's result and its completion marker both exist (``load_result`` verifies them)."""
    layout = RunLayout(run_dir)
    return layout.done.is_file() and layout.result.is_file()


def _check_version(result: Any, where: str) -> None:
    version = result.get("schema_version") if isinstance(result, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        fix = "upgrade chainforget or rerun into a new --out" if version > SCHEMA_VERSION else (
            "rerun into a new --out (or read it with the older chainforget that wrote it)"
        )
        raise DataError(
            f"{where} was written by schema version {version}; this chainforget reads version {SCHEMA_VERSION}: {fix}"
        )


def load_result(run_dir: str | os.PathLike) -> dict:
    """Read and verify ``result.json`` of a complete run (one-line DataError otherwise).

    Verified: the marker's checksums of ``result.json`` and of the records of every score-matrix row the result
    claims, then the schema. Reading needs no write access to the run directory.
    """
    layout = RunLayout(run_dir)
    run_dir = layout.root
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a run directory; check the path")
    if not is_complete(run_dir):
        raise DataError(f"{run_dir}: incomplete run: rerun the same command to finish it")
    try:
        size = layout.result.stat().st_size
        if size > MAX_JSON_BYTES:
            raise DataError(f"{layout.result} is {size / (1 << 20):.0f} MiB, more than the {MAX_JSON_BYTES >> 20} MiB "
                            f"a result of chainforget holds (not one it wrote); {REDO}")
        raw = layout.result.read_bytes()
    except OSError as exc:
        raise DataError(f"could not read {layout.result}: {exc.strerror or exc}") from None
    try:
        result = loads_strict(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        result, bad_json = None, getattr(exc, "msg", None) or type(exc).__name__
    except ValueError as exc:  # NaN or Infinity: the writer stores null
        result, bad_json = None, str(exc)
    else:
        bad_json = None
    _check_version(result, str(run_dir))
    marker, problem = read_marker(run_dir)
    if marker is None:
        raise DataError(f"{run_dir}: {problem}, so nothing vouches for its result (an older chainforget wrote it, "
                        f"or it was edited); {REDO}")
    sums = marker["sha256"]
    if sums.get(RESULT_FILE) != hashlib.sha256(raw).hexdigest():
        raise DataError(f"{layout.result} does not match its completion marker (changed after the run finished); "
                        f"{REDO}")
    if bad_json is not None:
        raise _corrupt(str(layout.result), f"bad JSON ({bad_json})")
    validate_result(result, str(run_dir))
    for stage in range(len(result["stages"])):
        name = layout.records_name(stage)
        if name not in sums or not layout.records(stage).is_file():
            raise DataError(f"{run_dir}: {name} is missing, but the run claims {len(result['stages'])} score-matrix "
                            f"rows; {REDO}")
        try:
            same = file_sha256(layout.records(stage)) == sums[name]
        except OSError as exc:
            raise DataError(f"could not read {layout.records(stage)}: {exc.strerror or exc}") from None
        if not same:
            raise DataError(f"{layout.records(stage)} does not match its completion marker (damaged or changed "
                            f"after the run finished); {REDO}")
    check_identity(run_dir, result)
    return result


def _identity_problem(folder: str, run_id: str) -> str | None:
    """What makes a folder name and a result's run id disagree (None when they agree)."""
    if folder != run_id:
        return f"it holds the result of run {brief(run_id)}, not of {brief(folder)} as its folder name says"
    return None


def check_identity(run_dir: str | os.PathLike, result: dict) -> None:
    """The folder name, result.json's ``run_id``, its ``spec`` and ``spec.json`` describe one run, else a one-line
    ``RunIdentityError``: a folder copied over another run's id, renamed by hand, or two --outs merged would
    otherwise pass one strategy's result off as another's (reused by ``run``, counted as a seed of a leaderboard).
    """
    layout = RunLayout(run_dir)
    fix = f"delete {layout.root} (copied or renamed by hand?) and rerun"
    problem = _identity_problem(layout.root.name, result["run_id"])
    if problem is None:
        spec = read_json(layout.spec, "run spec", fix=fix) if layout.spec.is_file() else None
        if spec is None:
            problem = "its spec.json is missing"
        elif json.dumps(spec, sort_keys=True) != json.dumps(result["spec"], sort_keys=True):
            problem = "its spec.json and result.json describe different runs"
    if problem is not None:
        raise RunIdentityError(f"{layout.root}: {problem}; {fix}")


def run_damage(run_dir: str | os.PathLike) -> str | None:
    """None when a complete run loads and verifies, else the one-line reason (leaderboards report and go on)."""
    try:
        load_result(run_dir)
    except DataError as exc:
        return str(exc)
    return None


def records_path(run_dir: str | os.PathLike, stage: int) -> Path:
    return RunLayout(run_dir).records(stage)


def write_records(run_dir: str | os.PathLike, stage: int, records: Iterable[dict]) -> Path:
    """Write the evaluation records of score-matrix row ``stage`` atomically; return the file path."""
    path = records_path(run_dir, stage)
    write_jsonl_gz(path, records)
    return path


def record_stages(run_dir: str | os.PathLike) -> list[int]:
    """The score-matrix rows whose records are on disk, ascending."""
    return RunLayout(run_dir).record_stages()


def iter_records(run_dir: str | os.PathLike, stages: Iterable[int] | None = None) -> Iterator[dict]:
    """The evaluation records of a run (or of the given ``stages``), in stage order, streamed line by line with the
    reader's bounds (``atomic.iter_jsonl_gz``) and every field typed (``check_record``)."""
    wanted = record_stages(run_dir) if stages is None else sorted(set(stages))
    for stage in wanted:
        path = records_path(run_dir, stage)
        for lineno, rec in iter_jsonl_gz(path, fix=REDO):
            check_record(rec, f"{path} line {lineno}")
            if rec["step"] != stage:
                raise _corrupt(f"{path} line {lineno}", f"record has step {rec['step']} in the file of stage {stage}")
            yield rec


def load_records(run_dir: str | os.PathLike, stages: Iterable[int] | None = None) -> list[dict]:
    """All evaluation records of a run (or of the given ``stages``), in stage order, checked (``iter_records``)."""
    return list(iter_records(run_dir, stages))


def load_run(run_dir: str | os.PathLike, with_records: bool = True) -> dict:
    """``{"run_dir", "result", "records"}`` for one complete run: what compare and plots consume. The records are
    those of the rows the verified result claims (the files its marker vouches for), nothing else."""
    result = load_result(run_dir)
    return {
        "run_dir": str(run_dir),
        "result": result,
        "records": load_records(run_dir, range(len(result["stages"]))) if with_records else None,
    }


def remove_unstarted_run(run_dir: str | os.PathLike) -> bool:
    """Remove a run folder holding nothing a run computed (its ``spec.json``, its lock, empty folders: what a run
    refused before its first evaluation leaves), unless another process holds its lock; True when removed.

    Why: a refused run must leave ``--out`` as it was; an empty folder would later be reported as an incomplete run.
    """
    layout = RunLayout(run_dir)
    if not layout.root.is_dir() or any(p.is_file() and p not in (layout.spec, layout.lock) or p.is_symlink()
                                       for p in layout.root.rglob("*")):
        return False
    from filelock import FileLock, Timeout

    lock = FileLock(str(layout.lock), timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError):
        return False  # another process works in it, or it cannot be locked (read-only): leave it
    try:
        shutil.rmtree(layout.root, ignore_errors=True)
    finally:
        lock.release()
    return not layout.root.exists()


def _looks_like_run(path: Path) -> bool:
    return RunLayout(path).looks_like_run()


def find_runs(paths_or_globs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Complete run directories under the given paths or globs, and one warning per incomplete run skipped.

    Each argument may be a run directory, a directory holding run directories at any depth (folders starting with
    ``.`` or ``_`` are skipped), a ``result.json``, or a glob of these. An argument that matches nothing, or no run
    at all, is a one-line DataError (a typo should not silently give an empty table).
    """
    found: dict[Path, None] = {}
    warnings: list[str] = []
    for arg in paths_or_globs:
        text = os.fspath(arg)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else ([text] if os.path.exists(text) else [])
        if not matches:
            raise DataError(f"no file or directory matches {text!r}; check the path")
        candidates: list[Path] = []
        for match in map(Path, matches):
            if match.is_file() and match.name in (RESULT_FILE, DONE_FILE):
                match = match.parent
            if not match.is_dir():
                continue
            if _looks_like_run(match):
                candidates.append(match)
                continue
            for root, dirs, _files in os.walk(match):
                dirs.sort()
                for name in list(dirs):
                    if name.startswith((".", "_")):  # hidden and internal (e.g. _prefix) folders
                        dirs.remove(name)
                    elif _looks_like_run(Path(root) / name):
                        candidates.append(Path(root) / name)
                        dirs.remove(name)
        if not candidates:
            raise DataError(f"{text} holds no runs; pass run directories or the --out of a leaderboard")
        for run in candidates:
            if is_complete(run):
                found.setdefault(run, None)
            else:
                msg = f"{run}: incomplete run skipped; rerun the same command to finish it"
                if msg not in warnings:
                    warnings.append(msg)
    return sorted(found), warnings
