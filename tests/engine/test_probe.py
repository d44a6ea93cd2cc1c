"""engine.probe: the model run on Examples outside the training loop, with the template's batches and loss."""

import pytest
import torch

from chainforget.engine.collate import IGNORE
from chainforget.engine.probe import example_batches, example_logits, example_loss, score
from chainforget.plugins import registries
from chainforget.tasks.base import Example


def examples(n=5):
    return [Example(id=f"p/{i}", group="g" if i % 2 else "h", prompt="Question: is ice cold?" + " really" * i
                    + "\nAnswer:", target=" Yes" if i % 2 else " No because it melts", gold=i % 2,
                    options=(" No", " Yes"), task="probe") for i in range(n)]


def test_batches_hold_what_training_sees(tokenizer):
    batches = list(example_batches(tokenizer, examples(5), max_length=64, batch_size=2))
    assert [len(b["ids"]) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b["ids"]] == [f"p/{i}" for i in range(5)]
    first = batches[0]
    assert first["tasks"] == ["probe", "probe"] and first["groups"] == ["h", "g"]
    # labels: -100 on the prompt and the padding, the target + EOS tokens elsewhere
    row = first["labels"][0]
    target = row[row != IGNORE].tolist()
    assert target[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(target[:-1]) == " No because it melts"


def test_truncation_keeps_the_target(tokenizer):
    long = [Example(id="p/long", group="g", prompt="word " * 300 + "\nAnswer:", target=" Yes", gold=1,
                    options=(" No", " Yes"), task="probe")]
    (batch,) = example_batches(tokenizer, long, max_length=32)
    assert batch["input_ids"].shape[1] == 32
    assert (batch["labels"] != IGNORE).sum().item() == len(tokenizer(" Yes")["input_ids"]) + 1  # + EOS


def test_per_example_loss_is_batch_invariant_and_consistent(tiny_model):
    model, tok = tiny_model
    exs = examples(5)
    with torch.no_grad():
        one = torch.cat([example_loss(model, b, "per_example")
                         for b in example_batches(tok, exs, max_length=64, batch_size=1)])
        single_means = torch.stack([example_loss(model, b, "mean")
                                    for b in example_batches(tok, exs, max_length=64, batch_size=1)])
        (batch,) = example_batches(tok, exs, max_length=64, batch_size=5)
        per = example_loss(model, batch, "per_example")
        total = example_loss(model, batch, "sum")
        mean = example_loss(model, batch, "mean")
    assert per.shape == (5,)
    assert torch.allclose(per, one, atol=1e-4) and torch.allclose(one, single_means, atol=1e-6)
    n_target = (batch["labels"][:, 1:] != IGNORE).sum(dim=1).float()
    assert torch.allclose((per * n_target).sum(), total, rtol=1e-5)
    assert torch.allclose(mean, total / n_target.sum(), rtol=1e-6)
    assert 9.0 < mean.item() < 12.0  # the random tiny model: about ln(49152) = 10.8 nats per token
    with pytest.raises(ValueError, match="reduction must be one of"):
        example_loss(model, batch, "median")


def test_memory_aware_synapses_importances(tiny_model):
    """The plugins.md recipe: MAS importance = mean |d ||logits||^2 / dw| over examples, one backward each."""
    model, tok = tiny_model
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    importance = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = list(example_batches(tok, examples(3), max_length=64))
    for batch in batches:
        model.zero_grad(set_to_none=True)
        example_logits(model, batch).pow(2).sum(dim=-1).mean().backward()
        for n, p in params.items():
            importance[n] += p.grad.abs() / len(batches)
    layer = importance["model.layers.0.mlp.down_proj.weight"]
    assert (layer >= 0).all() and layer.sum() > 0
    assert example_logits(model, batches[0]).shape[1] == model.config.vocab_size


def test_score_gives_the_runs_records(tiny_model):
    model, tok = tiny_model
    task = registries("tasks").get("bbq")
    exs = task.eval_examples(6)
    model.train()
    records = score(model, tok, task, exs, batch_size=4, stage=2)
    assert model.training  # flags restored
    assert [r["id"] for r in records] == [ex.id for ex in exs]
    assert all(r["step"] == 2 and r["task"] == "bbq" and set(r["scores"]) >= {"acc"} for r in records)
    again = score(model, tok, task.spec, exs, batch_size=1, stage=2)
    for a, b in zip(records, again):
        assert a["pred"] == b["pred"]
        assert a["option_logliks"] == pytest.approx(b["option_logliks"], abs=1e-3)
