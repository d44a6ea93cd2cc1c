"""GPU-efficiency choices, each checked on CPU for equal results: host reads of the loss every N steps, SDPA
attention, padding in length-bucketed batches, the fused AdamW, and eval batches sized to fill a device."""

import pytest
import torch
from test_template import make, stream, toy_examples, weights

from chainforget.errors import TrainingError


def _train(model, tok, sync_every, n=24, **cfg):
    tpl = make(model, tok, **{"batch_size": 4, "micro_batch_size": 2, "max_steps": None, **cfg})
    tpl.sync_every = sync_every
    reads = []
    original = tpl._read_pending
    tpl._read_pending = lambda current: (reads.append(current), original(current))[1]
    tpl.train(stream(toy_examples(n))[0])
    return tpl, reads


def test_reading_the_loss_every_n_steps_changes_nothing_but_the_reads():
    from chainforget.engine.models import load_tiny

    a, reads_a = _train(*load_tiny(seed=0), sync_every=1)
    b, reads_b = _train(*load_tiny(seed=0), sync_every=4)
    assert a.exp_step == b.exp_step == 6
    assert reads_a == [1, 2, 3, 4, 5, 6, 6] and reads_b == [4, 6, 6]  # the last read of each finds nothing new
    assert a.step_losses == b.step_losses and len(a.step_losses) == 6
    assert (a.last_loss, a.last_grad_norm) == (b.last_loss, b.last_grad_norm)
    wa, wb = weights(a.model), weights(b.model)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)


def test_a_late_read_still_names_the_step_that_went_non_finite(tiny_model):
    model, tok = tiny_model
    tpl = make(model, tok, batch_size=4, micro_batch_size=4, max_steps=None)
    tpl.sync_every = 4
    original = tpl.criterion
    tpl.criterion = lambda: original() * (float("nan") if tpl.exp_step == 1 else 1.0)
    with pytest.raises(TrainingError) as info:
        tpl.train(stream(toy_examples(24))[0])
    msg = str(info.value)
    assert "non-finite loss (nan)" in msg and "at optimizer step 2;" in msg and "training stopped" in msg


def test_sdpa_attention_equals_eager_attention():
    from chainforget.engine.models import load_tiny

    model, tok = load_tiny(seed=0)
    assert model.config._attn_implementation == "sdpa"
    ids = tok(["a plum is a fruit", "is a fig a fruit? yes it is"], padding=True, return_tensors="pt")
    with torch.no_grad():
        sdpa = model(**ids).logits
        model.set_attn_implementation("eager")
        eager = model(**ids).logits
    mask = ids["attention_mask"].bool()
    assert torch.allclose(sdpa[mask], eager[mask], atol=1e-5)


def test_padding_in_a_length_bucketed_batch_does_not_change_an_examples_loss(tiny_model, tokenizer):
    from chainforget.engine.collate import collate, encode_examples
    from chainforget.engine.training import target_token_loss

    model, tok = tiny_model
    enc = encode_examples(tok, toy_examples(6), 256)
    batch = collate(enc, tok.pad_token_id)
    with torch.no_grad():
        together = target_token_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                                     .logits, batch["labels"], "per_example")
        alone = [target_token_loss(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                   b["labels"], "sum") for b in (collate([e], tok.pad_token_id) for e in enc)]
    assert len({len(e.input_ids) for e in enc}) > 1  # the batch really pads
    assert together.tolist() == pytest.approx([float(x) for x in alone], abs=1e-4)


def test_fused_adamw_takes_the_same_steps_as_the_default_one(tiny_model):
    from chainforget.engine.models import load_tiny
    from chainforget.engine.training import TrainConfig, make_optimizer

    cfg = TrainConfig(learning_rate=1e-3, weight_decay=0.01)
    assert "fused" not in make_optimizer(tiny_model[0], cfg).defaults or not make_optimizer(
        tiny_model[0], cfg).defaults["fused"]  # CPU parameters: the default is the plain implementation
    results = []
    for fused in (False, True):
        model, tok = load_tiny(seed=0)
        opt = make_optimizer(model, cfg, fused=fused)
        assert bool(opt.defaults.get("fused")) == fused
        ids = tok(["a plum is a fruit"], return_tensors="pt")["input_ids"]
        for _ in range(3):
            opt.zero_grad()
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
        results.append(weights(model))
    plain, fused = results
    assert max(float((plain[n] - fused[n]).abs().max()) for n in plain) < 1e-6


def test_eval_batch_that_fills_a_device_scores_like_batch_one(tokenizer):
    from test_scoring import mc_examples, mc_spec

    from chainforget.engine.memory import GIB, eval_batch_size_for, shape_of_model
    from chainforget.engine.models import load_tiny, resolve_model
    from chainforget.engine.precision import choose_precision
    from chainforget.engine.scoring import score_examples

    shape = shape_of_model(resolve_model("tiny"))
    p = choose_precision("float32", "full", device="cpu")
    small, big = (eval_batch_size_for(shape, p, free, 512) for free in (1 * GIB, 80 * GIB))
    assert 1 <= small < big <= 256
    model, tok = load_tiny(seed=0)
    exs = mc_examples(24, seed=5)
    one = score_examples(model, tok, mc_spec(), exs, batch_size=1, progress=False)
    full = score_examples(model, tok, mc_spec(), exs, batch_size=big, progress=False)
    assert [r["scores"] for r in one] == [r["scores"] for r in full]
    for a, b in zip(one, full):
        assert a["option_logliks"] == pytest.approx(b["option_logliks"], abs=1e-4)
