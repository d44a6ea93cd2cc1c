"""The third-party example (examples/chainforget-plugin-example): its hooks register a strategy, a metric and a task
that work, and its plugin module stays light. (Installing it with pip is tested by the lead's CLI test.)"""

import importlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from chainforget.plugins.registry import Registry
from chainforget.tasks import builtin as builtin_tasks

SRC = Path(__file__).resolve().parents[2] / "examples" / "chainforget-plugin-example" / "src"


@pytest.fixture(scope="module")
def plugin():
    sys.path.insert(0, str(SRC))
    try:
        yield importlib.import_module("chainforget_plugin_example.plugin")
    finally:
        sys.path.remove(str(SRC))


def registered(hook, kind):
    registry = Registry(kind)
    if kind == "task":  # as in chainforget: the built-in tasks are registered before any plugin's
        builtin_tasks.chainforget_register_tasks(registry=registry.scoped("chainforget"))
    hook(registry=registry.scoped("chainforget-plugin-example 0.1.0"))
    return registry


def provided(registry):
    return [e.name for e in registry if e.source == "chainforget-plugin-example 0.1.0"]


def test_hooks_register_two_strategies_one_metric_two_tasks(plugin):
    strategies = registered(plugin.chainforget_register_strategies, "strategy")
    metrics = registered(plugin.chainforget_register_metrics, "metric")
    tasks = registered(plugin.chainforget_register_tasks, "task")
    assert strategies.names() == ["l2-anchor", "wise-ft"] and metrics.names() == ["safety_retention"]
    assert provided(tasks) == ["bbq-age", "unit-convert"]
    assert all(e.description for r in (strategies, metrics, tasks) for e in r)
    assert provided(strategies) == strategies.names() and provided(metrics) == metrics.names()
    spec = strategies.get("l2-anchor")
    assert spec.resolve({"strength": "10"}) == {"strength": 10.0, "anchor_step": 0}
    assert spec.signature(spec.resolve(), 0) == {"strategy": "naive"}
    assert spec.signature(spec.resolve(), 1)["strategy"] == "l2-anchor"
    metric = metrics.get("safety_retention")  # what leaderboard/compare/plot/findings read
    assert (metric.higher_is_better, metric.low, metric.high, metric.unit, metric.scope) == (True, 0.0, None,
                                                                                          "ratio", "task")


def test_plugin_module_imports_nothing_heavy():
    code = (f"import sys; sys.path.insert(0, {str(SRC)!r}); import chainforget_plugin_example.plugin as p;"
            "from chainforget.plugins.registry import Registry; from chainforget.tasks import builtin;"
            "tasks = Registry('task'); builtin.chainforget_register_tasks(registry=tasks);"
            "[h(registry=Registry('x')) for h in (p.chainforget_register_strategies, p.chainforget_register_metrics)];"
            "p.chainforget_register_tasks(registry=tasks);"
            "print([m for m in ('torch', 'avalanche', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_derived_task_is_bbq_age_by_stereotyped_group(plugin):
    tasks = registered(plugin.chainforget_register_tasks, "task")
    task, bbq = tasks.get("bbq-age"), tasks.get("bbq")
    assert task.spec.kind == "safety" and task.spec.metrics == bbq.spec.metrics
    evals = task.eval_examples()
    assert {e.group for e in evals} == {"old", "nonOld"} and {e.meta["category"] for e in evals} == {"Age"}
    bbq_eval = {e.id for e in bbq.eval_examples()}
    assert all(e.id.replace("bbq-age/", "bbq/", 1) in bbq_eval for e in evals)  # BBQ's own split, filtered


def test_task_ships_its_data_with_groups(plugin):
    task = registered(plugin.chainforget_register_tasks, "task").get("unit-convert")
    assert task.spec.kind == "capability"
    train, evals = task.train_examples(), task.eval_examples()
    assert len(train) == len(evals) == 32
    assert {e.group for e in train} == {"time", "length", "mass", "volume"}
    ex = train[0]
    assert ex.options[ex.gold] == ex.target and ex.task == "unit-convert"


def test_safety_retention_metric(plugin):
    from chainforget.metrics.base import MetricInputs

    spec = registered(plugin.chainforget_register_metrics, "metric").get("safety_retention")
    info = {"bbq": {"kind": "safety", "trained_at": 1, "higher_is_better": True},
            "toxigen": {"kind": "safety", "trained_at": 2, "higher_is_better": True},
            "unit-convert": {"kind": "capability", "trained_at": 3, "higher_is_better": True}}
    inputs = MetricInputs(records=[], task_info=info, stages=("base", "bbq", "toxigen", "unit-convert"),
                          eval_tasks=("bbq", "toxigen", "unit-convert"), views={},
                          score_matrix=[[0.4, 0.0, 0.3], [0.8, 0.0, 0.3], [0.7, 0.0, 0.3], [0.6, 0.5, 0.9]],
                          group_score_matrix={}, group_sizes={})
    out = spec.compute(inputs, {})
    assert set(out) == {"bbq", "toxigen"}  # capability tasks are not safety tasks
    assert out["bbq"]["value"] == pytest.approx(0.75)
    assert out["toxigen"]["value"] is None and "undefined" in out["toxigen"]["missing"]


def test_l2_anchor_penalty_and_state(plugin, tiny_model, tmp_path):
    import torch

    from chainforget.store.state import load_plugin_states, save_plugin_states
    from chainforget.strategies.base import StrategyContext

    model, _ = tiny_model
    model.model.embed_tokens.weight.requires_grad_(False)
    spec = registered(plugin.chainforget_register_strategies, "strategy").get("l2-anchor")
    ctx = StrategyContext(chain=("bbq", "unit-convert"), tasks={}, seed=0, limit_train=None, train_examples={})
    [anchor] = spec.make_plugins(spec.resolve({"strength": 4.0}), ctx)
    s = SimpleNamespace(model=model, experience=SimpleNamespace(current_experience=0), task_name="bbq")
    anchor.after_training_exp(s)
    assert set(anchor.anchor) == {n for n, p in model.named_parameters() if p.requires_grad}
    s.experience.current_experience = 1
    anchor.before_training_exp(s)
    s.loss, s.mb_weight = torch.tensor(2.0), 0.5
    anchor.before_backward(s)
    assert s.loss.item() == 2.0  # zero at the anchor
    with torch.no_grad():
        model.lm_head.weight.add_(0.01)  # tied to the frozen embedding: not trainable, no penalty
        model.model.norm.weight.add_(0.1)
    s.loss = torch.tensor(2.0)
    anchor.before_backward(s)
    n = model.model.norm.weight.numel()
    assert s.loss.item() == pytest.approx(2.0 + 4.0 / 2 * n * 0.01 * 0.5, rel=1e-4)
    save_plugin_states([anchor], tmp_path)
    [fresh] = spec.make_plugins(spec.resolve(), ctx)
    load_plugin_states([fresh], tmp_path)
    assert all(torch.equal(fresh.anchor[k], anchor.anchor[k]) for k in anchor.anchor)


# -- wise-ft: the weight-editing strategy --------------------------------------------------------------------------
def wise_ft(plugin):
    return registered(plugin.chainforget_register_strategies, "strategy").get("wise-ft")


def test_wise_ft_params_and_signature(plugin):
    from chainforget.errors import ConfigError

    spec = wise_ft(plugin)
    assert spec.resolve() == {"alpha": 0.5, "anchor": "first", "from_step": 1}
    with pytest.raises(ConfigError, match=r"^wise-ft.alpha must be in \(0, 1\], got 0.0$"):
        spec.resolve({"alpha": "0"})
    with pytest.raises(ConfigError, match="^wise-ft.anchor must be one of first, step, got 'last'$"):
        spec.resolve({"anchor": "last"})
    assert "alpha=0.5 (float (0, 1]):" in spec.list_columns(verbose=True)["hyper-parameters"]
    params = spec.resolve()
    assert spec.signature(params, 0) == {"strategy": "naive"}
    assert spec.signature(params, 1) == {"strategy": "wise-ft", "params": params}
    assert spec.signature(spec.resolve({"alpha": 1}), 3) == {"strategy": "naive"}  # alpha 1 is naive


def _strategy(model, step, restored=False):
    return SimpleNamespace(model=model, experience=SimpleNamespace(current_experience=step), task_name="t",
                           stage_restored=restored)


def _trained(model, delta):
    import torch

    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(delta)


def test_wise_ft_first_anchor_interpolates_every_later_step(plugin, tiny_model, tmp_path):
    import torch

    from chainforget.store.state import load_plugin_states, save_plugin_states
    from chainforget.strategies.base import StrategyContext

    model, _ = tiny_model
    spec = wise_ft(plugin)
    ctx = StrategyContext(chain=("a", "b", "c"), tasks={}, seed=0, limit_train=None, train_examples={})
    [p] = spec.make_plugins(spec.resolve({"alpha": 0.25}), ctx)
    w = lambda: model.model.norm.weight.detach().clone()  # noqa: E731
    p.before_training_exp(_strategy(model, 0))
    _trained(model, 1.0)
    p.after_training_exp(_strategy(model, 0))
    assert p.anchor == {} and p.interpolated == []  # step 0 trains as naive
    anchor = w()
    p.before_training_exp(_strategy(model, 1))
    _trained(model, 1.0)
    p.after_training_exp(_strategy(model, 1))
    assert torch.allclose(w(), anchor + 0.25, atol=1e-6)
    p.before_training_exp(_strategy(model, 2))  # the anchor stays the weights when step 1 started
    _trained(model, 2.0)
    p.after_training_exp(_strategy(model, 2))
    assert torch.allclose(w(), anchor + 0.25 * (0.25 + 2.0), atol=1e-6) and p.interpolated == [1, 2]
    before = w()
    p.after_training_exp(_strategy(model, 2, restored=True))  # a reused stage: the stored weights hold the edit
    assert torch.equal(w(), before) and p.interpolated == [1, 2]
    save_plugin_states([p], tmp_path)
    [fresh] = spec.make_plugins(spec.resolve({"alpha": 0.25}), ctx)
    load_plugin_states([fresh], tmp_path)
    assert set(fresh.anchor) == set(p.anchor) and all(torch.equal(fresh.anchor[k], p.anchor[k]) for k in p.anchor)


def test_wise_ft_step_anchor_under_lora_edits_adapters_only(plugin, tiny_model):
    import torch

    from chainforget.engine.training import TrainConfig, apply_finetune
    from chainforget.strategies.base import StrategyContext

    base, _ = tiny_model
    model = apply_finetune(base, TrainConfig(finetune="lora", lora_r=2))
    frozen = {n: t.detach().clone() for n, t in model.named_parameters() if not t.requires_grad}
    spec = wise_ft(plugin)
    ctx = StrategyContext(chain=("a", "b"), tasks={}, seed=0, limit_train=None, train_examples={})
    [p] = spec.make_plugins(spec.resolve({"alpha": 0.5, "anchor": "step", "from_step": 0}), ctx)
    p.before_training_exp(_strategy(model, 0))
    assert p.anchor and all("lora_" in n for n in p.anchor)
    start = {n: t.clone() for n, t in p.anchor.items()}
    _trained(model, 1.0)
    p.after_training_exp(_strategy(model, 0))
    assert p.anchor == {} and p.state_dict() == {}  # the step anchor is not carried across steps
    for n, t in model.named_parameters():
        if t.requires_grad:
            assert torch.allclose(t, start[n] + 0.5, atol=1e-6)
        else:
            assert torch.equal(t, frozen[n])
