"""Content-addressed stage checkpoints: identical chain prefixes are trained (and evaluated) once.

The weights after training stage k depend only on the model, the training settings, the seed, the data of stages
0..k and what the strategy did at each of them (its *training signature*). Their hash names a directory under
``<runs>/_prefix/`` holding the trainable weights after that stage and the evaluation records of that model on the
run's evaluation set. Any later run whose prefix hashes the same loads them instead of training. A file lock per key
keeps two processes from training the same prefix at once. A ``DONE`` marker written last, holding the sha256 of every
file of the entry, means complete; an entry whose files do not match it is damaged, never reused, and recomputed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from chainforget.config.spec import short_hash
from chainforget.store.atomic import atomic_write_json, iter_jsonl_gz, read_json, remove_stale_temps, write_jsonl_gz
from chainforget.store.layout import META_FILE, PREFIX_DIR, PREFIX_RECORDS_FILE, WEIGHTS_FILE, PrefixLayout
from chainforget.store.markers import verify_marker, write_marker
from chainforget.store.results import check_record
from chainforget.store.state import load_trainable, save_trainable

__all__ = ["PREFIX_DIR", "PrefixStore", "base_key", "is_stage_key", "stage_key"]

_STAGE_KEY = re.compile(r"s[1-9]\d*-[0-9a-f]{16}")


def base_key(common: Mapping[str, Any]) -> str:
    """Key of the untrained (base) model's evaluation: model + finetune wrapping + evaluation set."""
    return "base-" + short_hash({"common": common}, 16)


def stage_key(common: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> str:
    """Key of the weights after the last of ``steps`` (each: task/data id + strategy signature)."""
    return f"s{len(steps)}-" + short_hash({"common": common, "steps": list(steps)}, 16)


def is_stage_key(key: Any) -> bool:
    """True for a key ``stage_key`` makes (``s<k>-<16 hex>``): what a checkpoint may name, and nothing else (a
    path such as ``../x`` never reaches the file system)."""
    return isinstance(key, str) and _STAGE_KEY.fullmatch(key) is not None


class PrefixStore:
    """The entries under ``<out>/_prefix/``; an entry is reusable only when its DONE marker's checksums match."""

    def __init__(self, runs_dir: Path):
        self.layout = PrefixLayout(runs_dir)
        self.root = self.layout.root

    def path(self, key: str) -> Path:
        return self.layout.entry(key).root

    def _required(self, key: str) -> list[str]:
        return ([] if key.startswith("base-") else [WEIGHTS_FILE]) + [PREFIX_RECORDS_FILE, META_FILE]

    def damage(self, key: str) -> str | None:
        """None when the entry is complete and every file matches its checksum, else what is wrong."""
        return verify_marker(self.path(key), self._required(key))

    def complete(self, key: str) -> bool:
        """True for a complete, intact entry (every file verified against the DONE marker's sha256)."""
        return self.layout.entry(key).done.exists() and self.damage(key) is None

    def usable(self, key: str, echo=None) -> bool:
        """Under the key's lock: True for an intact entry; a damaged one is removed (and said so), so the caller
        recomputes it: a damaged prefix is never reused. Stale temp files of a killed writer are cleared."""
        entry = self.layout.entry(key)
        if entry.done.exists():
            problem = self.damage(key)
            if problem is None:
                return True
            if echo:
                echo(f"prefix entry {entry.root} is damaged ({problem}); recomputing it")
            shutil.rmtree(entry.root, ignore_errors=True)
        elif entry.root.is_dir():
            remove_stale_temps(entry.root)  # a killed writer's leftovers; the caller holds the key's lock
        return False

    def lock(self, key: str, timeout: float = -1):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.layout.lock(key)), timeout=timeout)

    def save(self, key: str, model, records: list[dict], meta: Mapping[str, Any], with_weights: bool = True) -> None:
        """Write weights (optional: the base entry has none), records and meta; then DONE with their checksums."""
        entry = self.layout.entry(key)
        entry.root.mkdir(parents=True, exist_ok=True)
        entry.done.unlink(missing_ok=True)  # a rewrite never pairs an old marker with new files
        if with_weights:
            save_trainable(model, entry.weights)
        write_jsonl_gz(entry.records, records)
        atomic_write_json(entry.meta, dict(meta))
        write_marker(entry.root, self._required(key) if with_weights else [PREFIX_RECORDS_FILE, META_FILE])

    def load_weights(self, key: str, model) -> None:
        load_trainable(model, self.layout.entry(key).weights)

    def load_records(self, key: str) -> list[dict]:
        """The entry's evaluation records, bounded and typed as a run's are (they become the run's records)."""
        path = self.layout.entry(key).records
        return [check_record(rec, f"{path} line {n}") for n, rec in iter_jsonl_gz(path)]

    def load_meta(self, key: str) -> dict:
        meta = read_json(self.layout.entry(key).meta, "prefix meta")
        return meta if isinstance(meta, dict) else {}
