"""Training config validation, collation/batch plans, schedules and checkpoint primitives (no Avalanche needed)."""

import os
import random

import numpy as np
import pytest
import torch

from chainforget.engine.collate import TrainBatches, collate, data_seed, encode_examples, shuffled_batches
from chainforget.engine.training import TrainConfig, fields_help, lr_factor, make_optimizer, make_scheduler
from chainforget.errors import ConfigError, DataError
from chainforget.tasks.base import Example


@pytest.mark.parametrize("kwargs,message", [
    ({"learning_rate": -1}, "learning_rate must be > 0, got -1; pass --lr with a positive number"),
    ({"batch_size": 0}, "batch_size must be >= 1, got 0; pass --batch-size"),
    ({"micro_batch_size": -2}, "micro_batch_size must be >= 1"),
    ({"warmup_ratio": 1.0}, "warmup_ratio must be in [0, 1)"),
    ({"schedule": "cosin"}, "schedule must be one of linear|cosine|constant, got 'cosin'"),
    ({"finetune": "qlora"}, "finetune must be one of full|lora"),
    ({"epochs": 1.5}, "epochs must be a whole number"),
    ({"max_steps": 0}, "max_steps must be >= 1"),
    ({"lora_targets": "q proj"}, "lora_targets must be comma-separated module names"),
    ({"learning_rate": float("inf")}, "learning_rate must be > 0, got inf"),
    ({"sort_by_length": "yes"}, "sort_by_length must be a boolean"),
])
def test_config_validation_one_liners(kwargs, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_from_mapping_and_help():
    cfg = TrainConfig.from_mapping({"learning_rate": "3e-4", "epochs": "2", "sort_by_length": "false",
                                    "max_steps": "none", "lora_alpha": 32})
    assert (cfg.learning_rate, cfg.epochs, cfg.sort_by_length, cfg.max_steps) == (3e-4, 2, False, None)
    assert cfg.lora_alpha == 32.0 and isinstance(cfg.lora_alpha, float) and cfg == TrainConfig(
        learning_rate=3e-4, epochs=2, sort_by_length=False, lora_alpha=32.0)
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        TrainConfig.from_mapping({"learning_rat": 1e-4})
    assert TrainConfig(batch_size=8, micro_batch_size=3).accumulation_steps == 3
    rows = {r["name"]: r for r in fields_help()}
    assert set(rows) == set(TrainConfig().to_dict())
    assert rows["learning_rate"]["flag"] == "--lr" and rows["schedule"]["choices"] == ("linear", "cosine", "constant")
    assert all(r["help"] for r in rows.values())


def test_schedule_warmup_and_decay():
    cfg = TrainConfig(warmup_ratio=0.25, schedule="linear")
    factors = [lr_factor(s, 8, cfg) for s in range(8)]
    assert factors[0] == pytest.approx(1 / 3) and factors[2] == 1.0  # 2 warm-up steps; the first step learns
    assert all(a > b for a, b in zip(factors[2:], factors[3:])) and factors[-1] > 0
    cos = [lr_factor(s, 8, TrainConfig(warmup_ratio=0.0, schedule="cosine")) for s in range(8)]
    assert cos[0] == 1.0 and cos[4] == pytest.approx(0.5)
    assert {lr_factor(s, 8, TrainConfig(warmup_ratio=0.0, schedule="constant")) for s in range(8)} == {1.0}
    lin = torch.nn.Linear(2, 2)
    opt = make_optimizer(lin, TrainConfig(learning_rate=0.1, warmup_ratio=0.25))
    sched = make_scheduler(opt, TrainConfig(learning_rate=0.1, warmup_ratio=0.25), 8)
    seen = []
    for _ in range(3):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])


def ex(i, prompt, target):
    return Example(id=f"t/{i}", group="g", prompt=prompt, target=target, gold=0, task="t")


def test_encoding_masks_prompt_keeps_target_and_truncates_left(tokenizer):
    items = encode_examples(tokenizer, [ex(0, "Question: 2 + 2 = ", "4"), ex(1, "word " * 50 + "end:", " yes")], 16)
    short, long = items
    assert tokenizer.decode(short.input_ids[short.n_prompt:]) == " 4" + tokenizer.eos_token  # space moved right
    assert not short.truncated and long.truncated and len(long.input_ids) == 16
    assert tokenizer.decode(long.input_ids[long.n_prompt:]) == " yes" + tokenizer.eos_token
    assert tokenizer.decode(long.input_ids[:long.n_prompt]).endswith("end:")  # the prompt lost its start
    batch = collate(items, tokenizer.pad_token_id)
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    n0 = len(short.input_ids)
    assert (labels[0, :short.n_prompt] == -100).all() and (labels[0, n0:] == -100).all()
    assert torch.equal(labels[0, short.n_prompt:n0], ids[0, short.n_prompt:n0])
    assert mask[0].sum() == n0 and mask[1].sum() == 16
    assert batch["n_target"] == short.n_target + long.n_target and batch["ids"] == ["t/0", "t/1"]


def test_shuffled_batches_are_seeded_complete_and_independent_of_micro_size():
    lengths = [random.Random(i).randint(5, 60) for i in range(50)]
    plan = shuffled_batches(lengths, 8, 3, seed=1)
    again = shuffled_batches(lengths, 8, 3, seed=1)
    assert plan == again and plan != shuffled_batches(lengths, 8, 3, seed=2)
    flat = [i for batch in plan for micro in batch for i in micro]
    assert sorted(flat) == list(range(50))
    assert all(len(m) <= 3 for b in plan for m in b) and all(sum(map(len, b)) <= 8 for b in plan)
    as_sets = [sorted(i for m in b for i in m) for b in plan]
    for micro in (1, 2, 8):
        assert [sorted(i for m in b for i in m) for b in shuffled_batches(lengths, 8, micro, seed=1)] == as_sets
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in as_sets])
    unsorted = [sorted(i for m in b for i in m) for b in shuffled_batches(lengths, 8, 8, seed=1, sort_by_length=False)]
    assert spread < np.mean([np.ptp([lengths[i] for i in b]) for b in unsorted])  # buckets cut padding


def test_train_batches_epochs_differ_but_replay_exactly(tokenizer):
    items = encode_examples(tokenizer, [ex(i, f"Q{i}: " + "x " * (i % 7), " a") for i in range(40)], 64)
    def make():
        return TrainBatches(items, batch_size=8, micro_batch_size=4, seed=3, sort_by_length=True, pad_id=0)
    first, second = make(), make()
    e0 = [[m["ids"] for m in b.micro_batches] for b in first]
    e1 = [[m["ids"] for m in b.micro_batches] for b in first]
    assert e0 != e1 and e0 == [[m["ids"] for m in b.micro_batches] for b in second]
    assert len(first) == 5
    shard = TrainBatches(items, batch_size=8, micro_batch_size=4, seed=3, sort_by_length=True, pad_id=0,
                         process_index=1, num_processes=2)
    whole = next(iter(make()))
    half = next(iter(shard))
    assert half.n_target == whole.n_target and sum(len(m["ids"]) for m in half.micro_batches) == 4
    # the data-order seed is a function of the run seed and the examples, not of the experience's position
    assert data_seed(0, items) == data_seed(0, list(items)) != data_seed(1, items) != data_seed(0, items[1:])


# ------------------------------------------------------------------------------------------- checkpoint files
def test_trainable_round_trip_full_with_tied_embeddings(tiny_model, tmp_path):
    from chainforget.engine.models import load_tiny
    from chainforget.store.state import load_trainable, save_trainable

    model, _ = tiny_model
    path = tmp_path / "w" / "weights.safetensors"
    n = save_trainable(model, path)
    assert n == len(list(model.parameters())) and os.listdir(path.parent) == ["weights.safetensors"]
    other, _ = load_tiny(seed=1)
    assert not torch.equal(other.lm_head.weight, model.lm_head.weight)
    load_trainable(other, path)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    assert other.lm_head.weight.data_ptr() == other.model.embed_tokens.weight.data_ptr()  # still tied
    with pytest.raises(DataError, match="do not match this model"):
        load_trainable(torch.nn.Linear(2, 2), path)


def test_trainable_round_trip_lora_saves_adapters_only(tiny_model, tmp_path):
    from safetensors.torch import load_file

    from chainforget.engine.training import apply_finetune
    from chainforget.store.state import load_trainable, save_trainable

    model, _ = tiny_model
    cfg = TrainConfig(finetune="lora", lora_r=2, lora_targets="q_proj")
    peft = apply_finetune(model, cfg)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_()
    save_trainable(peft, tmp_path / "a.safetensors")
    saved = load_file(str(tmp_path / "a.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    from chainforget.engine.models import load_tiny

    fresh = apply_finetune(load_tiny(seed=0)[0], cfg)
    load_trainable(fresh, tmp_path / "a.safetensors")
    x = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(fresh(input_ids=x).logits, peft(input_ids=x).logits)


def test_weights_reach_the_disk_before_their_name(tiny_model, tmp_path, monkeypatch):
    """Checkpoint weights are fsynced before the rename and the directory after it (power-loss safety)."""
    from chainforget.store import state

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(state.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(state.os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    path = tmp_path / "w.safetensors"
    state.save_trainable(tiny_model[0], path)
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".w.safetensors.")) and events[1][1] == str(path)
    assert events[2][1] == str(tmp_path)


class Stateful:
    name = "buffer"

    def __init__(self, state=None):
        self.state = state

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


def test_plugin_states_round_trip(tmp_path):
    from chainforget.store.state import load_plugin_states, save_plugin_states

    example = Example(id="bbq/1", group="Age", prompt="p", target=" t", gold=1, options=(" a", " t"),
                      meta={"category": "Age", "n": [1, 2]}, task="bbq")
    state = {"importance": {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}, "count": 3,
             "buffer": [example], "by_step": {1: "a", 2: "b"}, "pair": (1, "x"), "arr": np.arange(3)}
    keys = save_plugin_states([object(), Stateful(state)], tmp_path)
    assert keys == ["01-buffer"] and sorted(os.listdir(tmp_path)) == ["01-buffer.json", "01-buffer.safetensors"]
    fresh = Stateful()
    load_plugin_states([object(), fresh], tmp_path)
    got = fresh.state
    assert torch.equal(got["importance"]["w"], state["importance"]["w"]) and got["count"] == 3
    assert got["buffer"] == [example] and got["by_step"] == {1: "a", 2: "b"} and got["pair"] == (1, "x")
    assert torch.equal(got["arr"], torch.arange(3))
    with pytest.raises(DataError, match="no state for plugin"):
        load_plugin_states([Stateful()], tmp_path / "nothing")
