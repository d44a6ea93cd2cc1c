"""The stage checkpoint (state.json + plugin states + DONE): written, read and verified by store.checkpoint only."""

from __future__ import annotations

import json

from chainforget.store.atomic import atomic_write_json
from chainforget.store.checkpoint import checkpoint_problem, read_checkpoint, write_checkpoint
from chainforget.store.layout import RunLayout
from chainforget.store.markers import write_marker
from chainforget.store.prefix import is_stage_key, stage_key

KEY = stage_key({"model": "tiny"}, [{"data": "bbq", "signature": {}}])


def _plugins(directory):
    atomic_write_json(directory / "00-ewc.json", {"lam": 1})
    (directory / "00-ewc.safetensors").write_bytes(b"tensors")
    return ["00-ewc"]


def test_written_checkpoint_reads_back_and_names_its_prefix_entry(tmp_path):
    ckpt = RunLayout(tmp_path / "run").checkpoint(1)
    write_checkpoint(ckpt, KEY, "bbq", _plugins)
    state, problem = read_checkpoint(ckpt)
    assert problem is None and state == {"prefix": KEY, "stage": "bbq", "step": 1}
    assert checkpoint_problem(ckpt, KEY) is None
    assert checkpoint_problem(ckpt, stage_key({"model": "other"}, [{}])) == "state.json names another prefix entry"
    marker = json.loads(ckpt.done.read_text())
    assert sorted(marker["sha256"]) == ["00-ewc.json", "00-ewc.safetensors", "state.json"]


def test_damaged_or_foreign_checkpoints_are_named(tmp_path):
    layout = RunLayout(tmp_path / "run")
    assert read_checkpoint(layout.checkpoint(3)) == (None, "it does not exist")
    ckpt = layout.checkpoint(1)
    write_checkpoint(ckpt, KEY, "bbq", _plugins)
    (ckpt.root / "00-ewc.safetensors").write_bytes(b"other")
    assert read_checkpoint(ckpt) == (None, "00-ewc.safetensors does not match its checksum")
    for state, expect in (({"prefix": "../../etc"}, "names no prefix entry"), ([1], "names no prefix entry"),
                          ({"prefix": KEY, "step": 2}, "describes another stage")):
        write_checkpoint(ckpt, KEY, "bbq", _plugins)
        atomic_write_json(ckpt.state, state)  # edited, and its marker recomputed
        write_marker(ckpt.root, ["state.json"])
        assert expect in read_checkpoint(ckpt)[1]
    ckpt.state.write_text("{not json")
    write_marker(ckpt.root, ["state.json"])
    assert read_checkpoint(ckpt) == (None, "its state.json is not valid JSON")


def test_only_keys_the_prefix_store_makes_are_stage_keys():
    assert is_stage_key(KEY)
    assert not any(is_stage_key(k) for k in (None, 5, "s0-" + "0" * 16, "s1-" + "g" * 16, "base-" + "0" * 16,
                                             KEY + "/..", "../" + KEY))
