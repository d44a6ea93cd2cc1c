"""Training computes logits at target positions only: losses and gradients equal the full-logits path's."""

import copy

import pytest
import torch
from strategy_fixtures import make_context
from test_template import make, stream, toy_examples

from chainforget.engine.training import target_logits, target_logits_loss, target_mask, target_token_loss
from chainforget.strategies.lwf import LwFPlugin


class GradRecorder:
    """Per micro-batch loss and, per optimizer step, every trainable gradient (before the update)."""

    def __init__(self, needs_full_logits=False):
        self.needs_full_logits = needs_full_logits
        self.losses, self.grads, self.shapes, self.full = [], [], [], []

    def before_backward(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))
        self.shapes.append(tuple(strategy.mb_output.shape))
        self.positions = getattr(self, "positions", 0) + strategy.mbatch["input_ids"].numel()
        self.full.append(strategy.mb_logits is not None)

    def before_update(self, strategy, **kwargs):
        self.grads.append({n: p.grad.detach().clone() for n, p in strategy.model.named_parameters()
                           if p.grad is not None})

    def __getattr__(self, name):
        if name.startswith(("before_", "after_")):
            return lambda strategy, **kwargs: None
        raise AttributeError(name)


def train_once(model, tok, plugins, full, **cfg):
    s = make(model, tok, plugins, micro_batch_size=3, max_steps=2, batch_size=4, **cfg)
    s.full_logits = full
    s.train(stream(toy_examples(8))[0])
    return s


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_target_position_loss_and_gradients_equal_the_full_logits_path(tiny_model, finetune):
    start, tok = tiny_model
    runs = {}
    for full in (False, True):
        rec = GradRecorder()
        train_once(copy.deepcopy(start), tok, [rec], full, finetune=finetune)
        runs[full] = rec
    target, ref = runs[False], runs[True]
    assert target.full == [False] * len(target.full) and all(ref.full)
    n_targets = [shape[0] for shape in target.shapes]
    assert all(len(shape) == 2 for shape in target.shapes) and target.shapes == ref.shapes
    assert sum(n_targets) < 0.6 * target.positions  # the head ran on far fewer rows than every position
    assert target.losses == pytest.approx(ref.losses, rel=1e-5, abs=1e-7)
    assert len(target.grads) == len(ref.grads) == 2
    for g_target, g_ref in zip(target.grads, ref.grads):
        assert g_target.keys() == g_ref.keys() and g_target
        for name in g_ref:
            torch.testing.assert_close(g_target[name], g_ref[name], rtol=1e-4, atol=1e-6)


def test_a_plugin_that_needs_full_logits_gets_them(tiny_model):
    model, tok = tiny_model
    rec = GradRecorder(needs_full_logits=True)
    seen = {}

    class FullReader(GradRecorder):
        def after_forward(self, strategy, **kwargs):
            seen["full"] = strategy.mb_logits.detach().clone()
            seen["target"] = strategy.mb_output.detach().clone()
            seen["mask"] = strategy.mb_target_mask.clone()
            seen["index"] = strategy.mb_target_index.clone()

    train_once(model, tok, [rec, FullReader()], full=False)
    assert all(rec.full)
    full, mask, index = seen["full"], seen["mask"], seen["index"]
    assert full.dim() == 3 and not mask[:, -1].any()
    torch.testing.assert_close(seen["target"], full[mask])
    torch.testing.assert_close(seen["target"], full[index[:, 0], index[:, 1]])


def test_lwf_on_target_positions_equals_lwf_on_full_logits(tiny_model):
    start, tok = tiny_model
    start = start.double()  # float64: a small KL term is compared, not float32 rounding
    ctx = make_context(("safe", "cap"))
    runs = {}
    for full in (False, True):
        model = copy.deepcopy(start)
        plugin = LwFPlugin(alpha=0.5, temperature=2.0, context=ctx)
        plugin.teacher = copy.deepcopy(start).eval()  # as on a later chain step: distil from a frozen copy
        with torch.no_grad():
            model.lm_head.weight.mul_(1.3)  # the student differs from the teacher, so the KL term is not zero
        plugin.before_training_exp = lambda strategy, **kw: None  # keep the teacher set above
        rec = GradRecorder()
        train_once(model, tok, [plugin, rec], full)
        runs[full] = (rec, plugin.last_kl)
    (target, kl_target), (ref, kl_ref) = runs[False], runs[True]
    assert kl_target > 0 and kl_target == pytest.approx(kl_ref, rel=1e-4)
    assert target.losses == pytest.approx(ref.losses, rel=1e-5)
    for g_target, g_ref in zip(target.grads, ref.grads):
        for name in g_ref:
            torch.testing.assert_close(g_target[name], g_ref[name], rtol=1e-4, atol=1e-6)


def test_target_helpers_match_full_logits(tiny_model):
    model, tok = tiny_model
    from chainforget.engine.collate import collate, encode_examples

    batch = collate(encode_examples(tok, toy_examples(5), 64), tok.pad_token_id)
    keep = target_mask(batch["labels"])
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        part = target_logits(model, batch)
    assert part.shape == (batch["n_target"], full.shape[-1])
    torch.testing.assert_close(part, full[keep], rtol=1e-5, atol=1e-5)
    targets = batch["labels"][:, 1:][keep[:, :-1]]
    assert target_logits_loss(part, targets, "sum").item() == pytest.approx(
        target_token_loss(full, batch["labels"], "sum").item(), rel=1e-5)
    assert target_logits_loss(part, targets, "mean").item() == pytest.approx(
        target_token_loss(full, batch["labels"], "mean").item(), rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        target_logits_loss(part, targets, "per_example")
