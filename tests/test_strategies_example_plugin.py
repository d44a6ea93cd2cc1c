"""The third-party example (examples/chainforget-plugin-example): its hooks register a strategy, a metric and a task
that work, and its plugin module stays light. (Installing it with pip is tested by the lead's CLI test.)"""

import importlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from chainforget.plugins.registry import Registry

SRC = Path(__file__).resolve().parents[1] / "examples" / "chainforget-plugin-example" / "src"


@pytest.fixture(scope="module")
def plugin():
    sys.path.insert(0, str(SRC))
    try:
        yield importlib.import_module("chainforget_plugin_example.plugin")
    finally:
        sys.path.remove(str(SRC))


def registered(hook, kind):
    registry = Registry(kind)
    hook(registry=registry.scoped("chainforget-plugin-example 0.1.0"))
    return registry


def test_hooks_register_one_strategy_one_metric_one_task(plugin):
    strategies = registered(plugin.chainforget_register_strategies, "strategy")
    metrics = registered(plugin.chainforget_register_metrics, "metric")
    tasks = registered(plugin.chainforget_register_tasks, "task")
    assert strategies.names() == ["l2-anchor"] and metrics.names() == ["safety_retention"]
    assert tasks.names() == ["unit-convert"]
    assert all(e.source == "chainforget-plugin-example 0.1.0" and e.description
               for r in (strategies, metrics, tasks) for e in r)
    spec = strategies.get("l2-anchor")
    assert spec.resolve({"strength": "10"}) == {"strength": 10.0, "anchor_step": 0}
    assert spec.signature(spec.resolve(), 0) == {"strategy": "naive"}
    assert spec.signature(spec.resolve(), 1)["strategy"] == "l2-anchor"


def test_plugin_module_imports_nothing_heavy():
    code = (f"import sys; sys.path.insert(0, {str(SRC)!r}); import chainforget_plugin_example.plugin as p;"
            "from chainforget.plugins.registry import Registry;"
            "[h(registry=Registry('x')) for h in (p.chainforget_register_strategies, p.chainforget_register_metrics,"
            " p.chainforget_register_tasks)];"
            "print([m for m in ('torch', 'avalanche', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


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
