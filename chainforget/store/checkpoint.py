"""A run's checkpoint of stage k, ``checkpoints/step-<k>/``: its ``state.json`` schema written, read and verified here.

Why one module: the checkpoint is written by the stage runner and read by ``--resume`` and by ``chainforget
sharpness``; with the schema and the prefix-key format written out at each of them, a change to one was a silent
misread at another. ``state.json`` says which prefix entry holds the stage's weights (``{"prefix": key, "stage":
label, "step": k}``); the plugin states lie beside it; the ``DONE`` marker, written last, holds the sha256 of each.
"""

from __future__ import annotations

from typing import Any, Callable

from chainforget.errors import DataError
from chainforget.store.atomic import atomic_write_json, read_json
from chainforget.store.layout import STATE_FILE, CheckpointLayout
from chainforget.store.markers import verify_marker, write_marker
from chainforget.store.prefix import is_stage_key

__all__ = ["checkpoint_problem", "read_checkpoint", "write_checkpoint"]


def write_checkpoint(ckpt: CheckpointLayout, prefix_key: str, stage_label: str,
                     save_plugins: Callable[[Any], list[str]]) -> None:
    """Write stage ``ckpt.stage``'s checkpoint: plugin states (``save_plugins(directory)`` returns their keys), then
    ``state.json``, then the marker with every file's sha256. An old marker is removed first, so a rewrite never
    pairs it with new files."""
    ckpt.root.mkdir(parents=True, exist_ok=True)
    ckpt.done.unlink(missing_ok=True)
    keys = save_plugins(ckpt.root)
    atomic_write_json(ckpt.state, {"prefix": prefix_key, "stage": stage_label, "step": ckpt.stage})
    write_marker(ckpt.root, [p.name for key in keys for p in ckpt.plugin_files(key)] + [STATE_FILE])


def read_checkpoint(ckpt: CheckpointLayout) -> tuple[dict | None, str | None]:
    """``(state, None)`` for an intact checkpoint (marker verified, schema checked), else ``(None, what is wrong)``."""
    if not ckpt.state.exists() and not ckpt.done.exists():
        return None, "it does not exist"
    problem = verify_marker(ckpt.root, [STATE_FILE])
    if problem is not None:
        return None, problem
    try:
        state = read_json(ckpt.state, "checkpoint file")
    except DataError:
        return None, "its state.json is not valid JSON"
    if not isinstance(state, dict) or not is_stage_key(state.get("prefix")):
        return None, "its state.json names no prefix entry"
    if state.get("step") not in (None, ckpt.stage) or not isinstance(state.get("stage", ""), str):
        return None, f"its state.json describes another stage (step {state.get('step')!r})"
    return state, None


def checkpoint_problem(ckpt: CheckpointLayout, prefix_key: str) -> str | None:
    """None when the checkpoint is intact and holds exactly the prefix entry ``prefix_key``, else the reason."""
    state, problem = read_checkpoint(ckpt)
    if problem is None and state["prefix"] != prefix_key:
        problem = "state.json names another prefix entry"
    return problem
