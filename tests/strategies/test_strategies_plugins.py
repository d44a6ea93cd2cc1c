"""Strategy plugins on the tiny model through a fake strategy object that holds what the template contract exposes."""

import copy
from types import SimpleNamespace

import pytest
import torch
from test_strategies import make_context, specs

from chainforget.engine.collate import collate, encode_examples
from chainforget.engine.training import TrainConfig, apply_finetune, target_logits, target_mask, target_token_loss
from chainforget.strategies import ewc, lwf, sam


def micro_batch(tokenizer, examples, max_length=64):
    return collate(encode_examples(tokenizer, examples, max_length), tokenizer.pad_token_id)


def fake_strategy(model, tokenizer, ctx, step, mbatch=None):
    """What the template contract promises a plugin: model, tokenizer, train_cfg, experience, task name, batch."""
    s = SimpleNamespace(model=model, tokenizer=tokenizer, train_cfg=SimpleNamespace(max_length=64),
                        experience=SimpleNamespace(current_experience=step), task_name=ctx.chain[step],
                        target_token_loss=target_token_loss, mbatch=mbatch)
    return s


def forward(s, mb_weight=1.0, batch_tokens=None):
    """The template's forward for one micro-batch: logits and the contract's normalised loss."""
    s.mb_target_mask = target_mask(s.mbatch["labels"])
    s.mb_output = target_logits(s.model, s.mbatch, s.mb_target_mask)  # target positions only, as the template
    s.loss = target_token_loss(s.model(input_ids=s.mbatch["input_ids"], attention_mask=s.mbatch["attention_mask"])
                               .logits, s.mbatch["labels"], "sum") / (batch_tokens or s.mbatch["n_target"])
    s.mb_weight = mb_weight
    return s.loss


def trainable_vector(model):
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


# -- EWC ---------------------------------------------------------------------------------------------------------
def test_ewc_fisher_is_per_sample_squared_grads_over_trainable_params(tiny_model):
    model, tok = tiny_model
    model.model.embed_tokens.weight.requires_grad_(False)  # frozen: must get no importance
    ctx = make_context(("safe", "cap"), safe={"A": 2, "B": 1})
    plugin = ewc.EWCPlugin(specs()["ewc"].resolve({"fisher_samples": 0}), ctx)
    plugin.after_training_exp(fake_strategy(model, tok, ctx, 0))
    assert plugin.consolidated == [0] and len(plugin.fishers) == 1
    fisher = plugin.fishers[0]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(fisher) == names and "model.embed_tokens.weight" not in fisher
    # independent computation: mean over the 3 examples of (grad of its mean target-token loss)^2
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    for ex in ctx.train_examples["safe"]:
        model.zero_grad()
        b = micro_batch(tok, [ex])
        target_token_loss(model(input_ids=b["input_ids"]).logits, b["labels"], "mean").backward()
        for n, p in model.named_parameters():
            if p.requires_grad:
                expected[n] += p.grad ** 2 / 3
    for n in names:
        # float32 sums in another order (thread count) differ by ~1e-5 of a tensor's largest entry, not of each one
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-5 * float(expected[n].abs().max()))
    assert sum(float(f.sum()) for f in fisher.values()) > 0


def test_ewc_penalty_zero_at_anchor_and_quadratic_away_from_it(tiny_model):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap"), safe={"A": 3, "B": 3})
    params = specs()["ewc"].resolve({"lambda": 50.0})
    plugin = ewc.EWCPlugin(params, ctx)
    plugin.after_training_exp(fake_strategy(model, tok, ctx, 0))
    s = fake_strategy(model, tok, ctx, 1, micro_batch(tok, ctx.train_examples["cap"][:2]))
    plugin.before_training_exp(s)
    ce = forward(s, mb_weight=0.5)
    plugin.before_backward(s)
    assert s.loss.item() == ce.item() and plugin.last_penalty == 0.0

    torch.manual_seed(1)
    direction = {n: torch.randn_like(p) * 1e-2 for n, p in model.named_parameters()}
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    penalties = []
    for t in (1.0, 2.0, 3.0):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(anchor[n] + t * direction[n])
        ce = forward(s, mb_weight=0.5)
        plugin.before_backward(s)
        penalties.append(s.loss.item() - ce.item())
        manual = sum(float((plugin.fishers[0][n] * (t * direction[n]) ** 2).sum()) for n in direction)
        assert penalties[-1] == pytest.approx(50.0 / 2 * manual * 0.5, rel=1e-3)
    assert penalties[0] > 0
    assert penalties[1] == pytest.approx(4 * penalties[0], rel=1e-3)
    assert penalties[2] == pytest.approx(9 * penalties[0], rel=1e-3)
    # the penalty's gradient pulls back toward the anchor
    model.zero_grad()
    s.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_ewc_on_lora_counts_adapter_weights_only(tiny_model):
    model, tok = tiny_model
    model = apply_finetune(model, TrainConfig(finetune="lora", lora_targets="q_proj,v_proj"))
    ctx = make_context(("safe", "cap"), safe={"A": 2, "B": 2})
    plugin = ewc.EWCPlugin(specs()["ewc"].resolve(), ctx)
    plugin.after_training_exp(fake_strategy(model, tok, ctx, 0))
    names = set(plugin.fishers[0])
    assert names and all("lora_" in n for n in names)
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}


def test_ewc_online_keeps_one_pair_separate_keeps_one_per_task_and_state_round_trips(tiny_model, tmp_path):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap", "safe2"), safe={"A": 2, "B": 2}, cap={"all": 3})
    online = ewc.EWCPlugin(specs()["ewc"].resolve({"decay": 0.5}), ctx)
    separate = ewc.EWCPlugin(specs()["ewc"].resolve({"mode": "separate"}), ctx)
    for plugin in (online, separate):
        plugin.after_training_exp(fake_strategy(model, tok, ctx, 0))
    first = {n: f.clone() for n, f in online.fishers[0].items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    for plugin in (online, separate):
        plugin.after_training_exp(fake_strategy(model, tok, ctx, 1))
        plugin.after_training_exp(fake_strategy(model, tok, ctx, 2))  # the last step: nothing left to protect
    assert len(online.fishers) == len(online.anchors) == 1 and online.consolidated == [0, 1]
    assert len(separate.fishers) == len(separate.anchors) == 2
    for n in first:
        torch.testing.assert_close(online.fishers[0][n], 0.5 * first[n] + separate.fishers[1][n])
        torch.testing.assert_close(online.anchors[0][n], separate.anchors[1][n])

    # checkpoint: tensors through safetensors, the rest through JSON
    import json

    from safetensors.torch import load_file, save_file

    state = separate.state_dict()
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    rest = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    save_file(tensors, str(tmp_path / "ewc.safetensors"))
    restored = ewc.EWCPlugin(specs()["ewc"].resolve({"mode": "separate"}), ctx)
    restored.load_state_dict({**load_file(str(tmp_path / "ewc.safetensors")), **json.loads(json.dumps(rest))})
    assert restored.consolidated == [0, 1]
    s = fake_strategy(model, tok, ctx, 2, micro_batch(tok, ctx.train_examples["safe2"][:2]))
    for plugin in (separate, restored):
        forward(s)
        plugin.before_backward(s)
    assert restored.last_penalty == pytest.approx(separate.last_penalty, rel=1e-6) and restored.last_penalty > 0
    # restoring into the other mode is refused; a lost state is reported, not silently ignored
    with pytest.raises(Exception, match="resume with the same ewc.mode"):
        online.load_state_dict(state)
    fresh = ewc.EWCPlugin(specs()["ewc"].resolve(), ctx)
    with pytest.raises(Exception, match=r"no Fisher for chain tasks \[0, 1\]"):
        fresh.before_training_exp(fake_strategy(model, tok, ctx, 2))


# -- LwF ---------------------------------------------------------------------------------------------------------
def test_lwf_is_cross_entropy_when_student_equals_teacher_and_distils_otherwise(tiny_model):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap"))
    plugin = lwf.LwFPlugin(alpha=0.7, temperature=2.0, context=ctx)
    s0 = fake_strategy(model, tok, ctx, 0)
    plugin.before_training_exp(s0)
    assert plugin.teacher is None  # first chain step: nothing to distil from

    s = fake_strategy(model, tok, ctx, 1, micro_batch(tok, ctx.train_examples["cap"][:3]))
    plugin.before_training_exp(s)
    assert plugin.teacher is not None and not any(p.requires_grad for p in plugin.teacher.parameters())
    ce = forward(s, mb_weight=0.25, batch_tokens=40)
    plugin.before_backward(s)
    assert s.loss.item() == ce.item() and plugin.last_kl == 0.0

    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)  # the student drifts (tied embeddings: the teacher is a separate copy)
    ce = forward(s, mb_weight=0.25, batch_tokens=40)
    plugin.before_backward(s)
    labels = s.mbatch["labels"]
    mask = labels[:, 1:] != -100
    t_logits = plugin.teacher(input_ids=s.mbatch["input_ids"]).logits[:, :-1][mask] / 2.0
    s_logits = s.model(input_ids=s.mbatch["input_ids"]).logits[:, :-1][mask] / 2.0
    p_t = torch.softmax(t_logits, -1)
    kl = (p_t * (torch.log_softmax(t_logits, -1) - torch.log_softmax(s_logits, -1))).sum(-1).mean()
    assert kl.item() > 0
    assert (s.loss - ce).item() == pytest.approx(0.7 * 4.0 * kl.item() * 0.25, rel=1e-4)
    plugin.after_training_exp(s)
    assert plugin.teacher is None


# -- SAM ---------------------------------------------------------------------------------------------------------
def test_sam_two_step_update_with_gradient_accumulation(tiny_model):
    model, tok = tiny_model
    ctx = make_context(("cap",), cap={"all": 4})
    micro = [micro_batch(tok, ctx.train_examples["cap"][:2]), micro_batch(tok, ctx.train_examples["cap"][2:])]
    total = sum(m["n_target"] for m in micro)

    def accumulate(m):
        for b in micro:
            (target_token_loss(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                               b["labels"], "sum") / total).backward()

    s = fake_strategy(model, tok, ctx, 0)
    s.recompute_loss_and_backward = lambda: accumulate(model)
    reference = copy.deepcopy(model)
    w0 = trainable_vector(model)

    accumulate(model)  # the template's micro-batches: g at w
    g = torch.cat([p.grad.flatten() for p in model.parameters()])
    plugin = sam.SAMPlugin(rho=0.05)
    plugin.before_update(s)

    assert torch.equal(trainable_vector(model), w0)  # weights restored bit for bit before the optimizer step
    assert plugin.last_perturbation_norm == pytest.approx(0.05, rel=1e-4)
    # the gradient left for the optimizer is the one at w + rho * g / ||g||, computed independently
    with torch.no_grad():
        offset = 0
        for p in reference.parameters():
            n = p.numel()
            p.add_(0.05 * g[offset:offset + n].view_as(p) / g.norm())
            offset += n
    accumulate(reference)
    g_perturbed = torch.cat([p.grad.flatten() for p in reference.parameters()])
    g_sam = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert ((g_sam - g_perturbed).norm() / g_perturbed.norm()).item() < 1e-4
    assert ((g_sam - g).norm() / g.norm()).item() > 1e-2  # really a different gradient than at w
