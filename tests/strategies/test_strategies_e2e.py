"""Strategies end to end: short chains on the tiny model through the real CausalLMTemplate."""

import copy

import torch
from test_strategies import make_context, specs

from chainforget.engine.datasets import examples_dataset
from chainforget.engine.template import CausalLMTemplate
from chainforget.engine.training import target_token_loss
from chainforget.store.state import load_plugin_states, save_plugin_states
from chainforget.strategies.selection import group_counts

CFG = dict(batch_size=4, micro_batch_size=2, max_length=48, learning_rate=3e-3, warmup_ratio=0.0,
           schedule="constant", max_grad_norm=0.0)


class Spy:
    """Records, per experience, the ids and tasks of every micro-batch the template trains on."""

    def __init__(self):
        self.ids, self.tasks = [], []

    def before_training_exp(self, strategy, **kwargs):
        self.ids.append([])
        self.tasks.append([])

    def before_forward(self, strategy, **kwargs):
        self.ids[-1] += list(strategy.mbatch["ids"])
        self.tasks[-1] += list(strategy.mbatch["tasks"])


def stream(ctx, *example_lists):
    """Avalanche train experiences over ``example_lists`` (experience k = chain step k), as the benchmark builds."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    sets = [examples_dataset(examples, ctx.tasks) for examples in example_lists]
    return list(benchmark_from_datasets(train=sets, test=sets[:1]).train_stream)


def train_chain(model, tok, ctx, plugins, extra=(), only=None, **cfg):
    """Train the chain, then any ``extra`` example lists as further experiences (``only``: just those indices)."""
    template = CausalLMTemplate(model, tok, {**CFG, **cfg}, plugins=plugins, progress=False)
    for k, exp in enumerate(stream(ctx, *[ctx.train_examples[t] for t in ctx.chain], *extra)):
        if only is None or k in only:
            template.train(exp)
    return template


def plugins_for(name, ctx, **overrides):
    spec = specs()[name]
    return spec.make_plugins(spec.resolve(overrides), ctx)


def test_replay_batches_hold_the_group_balanced_buffer(tiny_model, tmp_path):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap"), safe={"A": 4, "B": 2, "C": 2}, cap={"all": 8})
    [replay] = plugins_for("replay", ctx, fraction=0.375)
    spy = Spy()
    train_chain(model, tok, ctx, [replay, spy])
    assert sorted(spy.ids[0]) == sorted(e.id for e in ctx.train_examples["safe"])  # step 0: exactly naive
    step1 = spy.ids[1]
    replayed = [i for i in step1 if i.startswith("safe/")]
    assert len(step1) == 8 + 3 and len(set(step1)) == 11  # every example once: 8 new + ceil(0.375 * 8) replayed
    assert sorted(replayed) == sorted(replay.buffer["safe"])
    assert group_counts([e for e in ctx.train_examples["safe"] if e.id in replayed]) == {"A": 1, "B": 1, "C": 1}
    assert [t for i, t in zip(step1, spy.tasks[1]) if i.startswith("safe/")] == ["safe"] * 3  # own task kept
    # the buffer survives a checkpoint through the engine's plugin-state files
    save_plugin_states([replay], tmp_path)
    [fresh] = plugins_for("replay", ctx, fraction=0.25)
    load_plugin_states([fresh], tmp_path)
    assert fresh.buffer == replay.buffer


def test_ewc_chain_consolidates_pulls_toward_anchor_and_resumes(tiny_model, tmp_path):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap"), safe={"A": 2, "B": 2}, cap={"all": 8})
    naive_model = copy.deepcopy(model)
    [plugin] = plugins_for("ewc", ctx, **{"lambda": 1e7})
    train_chain(model, tok, ctx, [plugin])
    assert plugin.consolidated == [0] and plugin.last_penalty > 0
    train_chain(naive_model, tok, ctx, [])
    anchor = plugin.anchors[0]
    fisher = plugin.fishers[0]

    def weighted_drift(m):
        params = dict(m.named_parameters())
        return sum(float((fisher[n] * (params[n].detach() - anchor[n]) ** 2).sum()) for n in fisher)

    assert weighted_drift(model) < 0.5 * weighted_drift(naive_model)
    # checkpoint and restore through the engine's plugin-state files: same penalty afterwards
    save_plugin_states([plugin], tmp_path)
    [restored] = plugins_for("ewc", ctx, **{"lambda": 1e7})
    load_plugin_states([restored], tmp_path)
    assert restored.consolidated == [0]
    for n in fisher:
        assert torch.equal(restored.fishers[0][n], fisher[n]) and torch.equal(restored.anchors[0][n], anchor[n])


def test_lwf_chain_distils_from_the_pre_experience_model(tiny_model):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap"), safe={"A": 4, "B": 4}, cap={"all": 8})
    [plugin] = plugins_for("lwf", ctx)

    class KLSpy:
        kls = []

        def after_backward(self, strategy, **kwargs):
            self.kls.append(plugin.last_kl)

    train_chain(model, tok, ctx, [plugin, KLSpy()])
    # step 0 trains 8 examples in 4 micro-batches without a teacher; step 1's first micro-batch sees teacher ==
    # student (KL exactly 0), later ones a drifted student (KL > 0)
    assert KLSpy.kls[:4] == [None] * 4
    assert KLSpy.kls[4] == 0.0 and all(k > 0 for k in KLSpy.kls[6:])
    assert plugin.teacher is None  # freed after the experience


def test_sam_through_the_template_steps_with_the_perturbed_point_gradient(tiny_model):
    model, tok = tiny_model
    ctx = make_context(("cap",), cap={"all": 8})
    [sam] = plugins_for("sam", ctx, rho=0.1)
    seen = {}

    class Before:
        def before_training_iteration(self, strategy, **kwargs):
            seen.setdefault("micros", [])
            seen["current"] = []

        def after_backward(self, strategy, **kwargs):
            seen["current"].append({k: v for k, v in strategy.mbatch.items()})

        def before_update(self, strategy, **kwargs):
            if "g" not in seen:
                seen["g"] = [p.grad.clone() for p in strategy.model.parameters()]
                seen["w"] = copy.deepcopy(strategy.model)
                seen["micros"] = seen["current"]

    class After:
        def before_update(self, strategy, **kwargs):
            if "g_sam" not in seen:
                seen["g_sam"] = [p.grad.clone() for p in strategy.model.parameters()]
                seen["w_after"] = [p.detach().clone() for p in strategy.model.parameters()]

    train_chain(model, tok, ctx, [Before(), sam, After()], max_steps=1)
    assert len(seen["micros"]) == 2  # batch 4 = 2 micro-batches: SAM re-ran both
    ref = seen["w"]
    assert all(torch.equal(a, b.detach()) for a, b in zip(seen["w_after"], ref.parameters()))  # restored
    g = torch.cat([x.flatten() for x in seen["g"]])
    with torch.no_grad():
        for p, gp in zip(ref.parameters(), seen["g"]):
            p.add_(0.1 * gp / g.norm())
    ref.zero_grad()
    total = sum(m["n_target"] for m in seen["micros"])
    for m in seen["micros"]:
        logits = ref(input_ids=m["input_ids"], attention_mask=m["attention_mask"]).logits
        (target_token_loss(logits, m["labels"], "sum") / total).backward()
    expected = torch.cat([p.grad.flatten() for p in ref.parameters()])
    got = torch.cat([x.flatten() for x in seen["g_sam"]])
    assert ((got - expected).norm() / expected.norm()).item() < 1e-4
    assert ((got - g).norm() / g.norm()).item() > 1e-2


def test_safety_retune_stage_trains_on_the_configured_mix(tiny_model):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap"), safe={"A": 6, "B": 6, "C": 6}, cap={"all": 20})
    spec = specs()["safety-retune"]
    assert spec.make_plugins(spec.resolve(), ctx) == []
    [stage] = spec.extra_stages(spec.resolve({"safety_fraction": 0.2}), ctx)
    spy = Spy()
    train_chain(model, tok, ctx, [spy], extra=[stage.examples], only={2}, batch_size=8, micro_batch_size=8)
    [ids] = spy.ids
    assert len(ids) == 24 and sum(i.startswith("cap/") for i in ids) == 20
    safe = [e for e in ctx.train_examples["safe"] if e.id in set(ids)]
    assert sorted(group_counts(safe).values()) == [1, 1, 2]  # ceil(0.2 * 20) = 4 over 3 groups


def test_joint_and_naive_train_without_plugins(tiny_model):
    model, tok = tiny_model
    ctx = make_context(("safe", "cap"), safe={"A": 4}, cap={"all": 4})
    s = specs()
    assert s["joint"].joint and s["joint"].make_plugins(s["joint"].resolve(), ctx) == []
    union = [e for t in ctx.chain for e in ctx.train_examples[t]]
    spy = Spy()
    template = CausalLMTemplate(model, tok, CFG, plugins=s["naive"].make_plugins({}, ctx) + [spy], progress=False)
    template.train(stream(ctx, union)[0])
    assert sorted(spy.ids[0]) == sorted(e.id for e in union) and set(spy.tasks[0]) == {"safe", "cap"}
    assert template.exp_step == 2
