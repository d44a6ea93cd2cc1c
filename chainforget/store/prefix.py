"""Content-addressed stage checkpoints: identical chain prefixes are trained (and evaluated) once.

The weights after training stage k depend only on the model, the training settings, the seed, the data of stages
0..k and what the strategy did at each of them (its *training signature*). Their hash names a directory under
``<runs>/_prefix/`` holding the trainable weights after that stage and the evaluation records of that model on the
run's evaluation set. Any later run whose prefix hashes the same loads them instead of training. A file lock per key
keeps two processes from training the same prefix at once; a ``DONE`` marker written last means complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from chainforget.config.spec import short_hash

PREFIX_DIR = "_prefix"


def base_key(common: Mapping[str, Any]) -> str:
    """Key of the untrained (base) model's evaluation: model + finetune wrapping + evaluation set."""
    return "base-" + short_hash({"common": common}, 16)


def stage_key(common: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> str:
    """Key of the weights after the last of ``steps`` (each: task/data id + strategy signature)."""
    return f"s{len(steps)}-" + short_hash({"common": common, "steps": list(steps)}, 16)


class PrefixStore:
    def __init__(self, runs_dir: Path):
        self.root = Path(runs_dir) / PREFIX_DIR

    def path(self, key: str) -> Path:
        return self.root / key

    def complete(self, key: str) -> bool:
        return (self.path(key) / "DONE").exists()

    def lock(self, key: str, timeout: float = -1):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{key}.lock"), timeout=timeout)

    def save(self, key: str, model, records: list[dict], meta: Mapping[str, Any], with_weights: bool = True) -> None:
        """Write weights (optional: the base entry has none), records and meta; DONE last."""
        from chainforget.store.atomic import atomic_write_json, atomic_write_text, write_jsonl_gz

        d = self.path(key)
        d.mkdir(parents=True, exist_ok=True)
        if with_weights:
            from chainforget.store.state import save_trainable

            save_trainable(model, d / "weights.safetensors")
        write_jsonl_gz(d / "records.jsonl.gz", records)
        atomic_write_json(d / "meta.json", dict(meta))
        atomic_write_text(d / "DONE", "ok\n")

    def load_weights(self, key: str, model) -> None:
        from chainforget.store.state import load_trainable

        load_trainable(model, self.path(key) / "weights.safetensors")

    def load_records(self, key: str) -> list[dict]:
        from chainforget.store.atomic import read_jsonl_gz

        return list(read_jsonl_gz(self.path(key) / "records.jsonl.gz"))
