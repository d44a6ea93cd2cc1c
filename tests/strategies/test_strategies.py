"""Strategy specs without a model: registration, hyper-parameter validation, selection, replay buffer, re-tune mix."""

import subprocess
import sys

import pytest
from strategy_fixtures import make_context, make_examples  # noqa: F401

from chainforget.errors import ConfigError, DataError
from chainforget.plugins.registry import Registry
from chainforget.strategies import builtin, replay, safety_retune
from chainforget.strategies.base import Param, naive_at_first_task
from chainforget.strategies.selection import group_counts, quota, select

NAMES = {"naive", "replay", "ewc", "lwf", "safety-retune", "sam", "joint"}


def specs():
    registry = Registry("strategy")
    builtin.chainforget_register_strategies(registry=registry.scoped("chainforget"))
    return {e.name: e.obj for e in registry}


# -- registration and hyper-parameters ---------------------------------------------------------------------------
def test_all_builtins_register_with_descriptions_and_flags():
    s = specs()
    assert set(s) == NAMES
    assert all(spec.description for spec in s.values())
    assert s["joint"].joint and not any(spec.joint for n, spec in s.items() if n != "joint")
    assert s["safety-retune"].extra_stages is not None
    assert [n for n, spec in s.items() if spec.extra_stages] == ["safety-retune"]


def test_builtin_module_imports_nothing_heavy():
    code = ("import sys; from chainforget.plugins import registries; registries('strategies').get('ewc');"
            "print([m for m in ('torch', 'avalanche', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_signatures_share_naive_prefix_where_training_is_identical():
    s = specs()
    naive = s["naive"].signature({}, 0)
    for name in ("replay", "ewc", "lwf"):
        params = s[name].resolve()
        assert s[name].signature(params, 0) == naive
        assert s[name].signature(params, 1) == {"strategy": name, "params": params}
    retune = s["safety-retune"]
    assert all(retune.signature(retune.resolve(), k) == naive for k in range(3))
    sam = s["sam"]
    assert sam.signature(sam.resolve(), 0) != naive  # SAM changes training from the first step


def test_resolve_parses_set_strings_and_validates():
    s = specs()
    assert s["replay"].resolve({"fraction": "0.1", "size": "3", "selection": "random"}) == {
        "fraction": 0.1, "size": 3, "selection": "random", "seed": -1}
    assert s["ewc"].resolve({"lambda": "5"})["lambda"] == 5.0
    assert s["ewc"].resolve({"lambda": 7})["lambda"] == 7.0  # YAML int for a float param
    cases = [
        ("replay", {"fraction": "lots"}, "replay.fraction must be a float, got 'lots'"),
        ("replay", {"fraction": 1.5}, r"replay.fraction must be in \[0, 1\], got 1.5"),
        ("replay", {"size": "2.5"}, "replay.size must be an int"),
        ("replay", {"selection": "stratified"}, "replay.selection must be one of group_balanced, random"),
        ("replay", {"fractoin": 0.1}, "did you mean replay.fraction"),
        ("ewc", {"lambda": "nan"}, "ewc.lambda must be a finite number"),
        ("ewc", {"lambda": -1}, r"ewc.lambda must be in \[0"),
        ("ewc", {"mode": "offline"}, "ewc.mode must be one of online, separate"),
        ("lwf", {"temperature": 0}, "lwf.temperature must be in"),
        ("sam", {"rho": True}, "sam.rho must be a float, got True"),
        ("naive", {"anything": 1}, "strategy 'naive' has no hyper-parameter 'anything'"),
    ]
    for name, overrides, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            s[name].resolve(overrides)
        assert "\n" not in str(info.value)


def test_param_bool_and_describe():
    p = Param("flag", "bool", False, "a switch")
    assert p.parse("yes") is True and p.parse("0") is False
    with pytest.raises(ConfigError, match="flag must be a bool"):
        p.parse("maybe")
    assert Param("lam", "float", 1e4, "pull", low=0.0, high=1e12).describe() == \
        "lam=10000.0 (float [0, 1e+12]): pull"


def test_naive_at_first_task():
    sig = naive_at_first_task("x")
    assert sig({"a": 1}, 0) == {"strategy": "naive"} and sig({"a": 1}, 2) == {"strategy": "x", "params": {"a": 1}}


# -- selection -------------------------------------------------------------------------------------------------
def test_quota_rounds_up_and_caps():
    assert quota(100, 0.05) == 5 and quota(10, 0.05) == 1 and quota(21, 0.1) == 3
    assert quota(10, 0.0) == 0 and quota(10, 0.5, size=30) == 10 and quota(100, 0.05, size=7) == 7


def test_group_balanced_selection_keeps_every_group_and_is_deterministic():
    ex = make_examples("t", {"A": 40, "B": 20, "C": 2})
    chosen = select(ex, 12, "group_balanced", "k")
    assert len(chosen) == 12
    assert group_counts(chosen) == {"A": 5, "B": 5, "C": 2}  # C has only 2: its spare quota goes to A and B
    assert [e.id for e in chosen] == [e.id for e in select(ex, 12, "group_balanced", "k")]
    assert [e.id for e in chosen] != [e.id for e in select(ex, 12, "group_balanced", "other")]
    assert len({e.id for e in chosen}) == 12
    # random: uniform, deterministic, and usually misses the rare group at this size
    r = select(ex, 12, "random", "k")
    assert [e.id for e in r] == [e.id for e in select(ex, 12, "random", "k")] and len(r) == 12


# -- replay buffer ---------------------------------------------------------------------------------------------
def test_replay_buffer_fraction_group_balance_and_seed():
    ctx = make_context(("safe", "cap", "cap2"))
    plugin = replay.ReplayPlugin(specs()["replay"].resolve({"fraction": 0.1}), ctx)
    assert plugin.buffer_examples(0) == []
    step1 = plugin.buffer_examples(1, "cap")
    assert len(step1) == 7  # ceil(0.1 * 65)
    assert all(e.id.startswith("safe/") for e in step1)
    assert set(group_counts(step1)) == {"A", "B", "C"}
    assert max(group_counts(step1).values()) - min(group_counts(step1).values()) <= 1
    step2 = plugin.buffer_examples(2, "cap2")
    assert [e.id for e in step2[:7]] == [e.id for e in step1]
    assert len([e for e in step2 if e.id.startswith("cap/")]) == 6  # ceil(0.1 * 60)
    # same data + seed -> same buffer in a fresh plugin; another seed -> another buffer
    again = replay.ReplayPlugin(specs()["replay"].resolve({"fraction": 0.1}), ctx).buffer_examples(2, "cap2")
    assert [e.id for e in again] == [e.id for e in step2]
    other = replay.ReplayPlugin(specs()["replay"].resolve({"fraction": 0.1, "seed": 9}), ctx).buffer_examples(1)
    assert [e.id for e in other] != [e.id for e in step1]
    sized = replay.ReplayPlugin(specs()["replay"].resolve({"size": 3}), ctx).buffer_examples(1)
    assert len(sized) == 3 and set(group_counts(sized)) == {"A", "B", "C"}


def test_replay_state_round_trip_and_stale_ids():
    ctx = make_context(("safe", "cap"))
    params = specs()["replay"].resolve({"fraction": 0.2, "selection": "random"})
    plugin = replay.ReplayPlugin(params, ctx)
    before = [e.id for e in plugin.buffer_examples(1, "cap")]
    state = plugin.state_dict()
    import json

    state = json.loads(json.dumps(state))  # JSON-able
    restored = replay.ReplayPlugin(params, ctx)
    restored.load_state_dict(state)
    assert restored.buffer == plugin.buffer
    assert [e.id for e in restored.buffer_examples(1, "cap")] == before
    restored.load_state_dict({"buffer": {"safe": ["safe/A/0", "safe/Z/404"]}})
    with pytest.raises(DataError, match="safe/Z/404"):
        restored.buffer_examples(1, "cap")


# -- safety re-tuning ------------------------------------------------------------------------------------------
def test_safety_retune_stage_mix():
    ctx = make_context(("safe", "cap"), cap={"all": 200})
    stages = specs()["safety-retune"].extra_stages(specs()["safety-retune"].resolve(), ctx)
    assert [s.label for s in stages] == ["retune"]
    ex = stages[0].examples
    cap = [e for e in ex if e.id.startswith("cap/")]
    safe = [e for e in ex if e.id.startswith("safe/")]
    assert len(cap) == 200 and len(safe) == 10  # ceil(0.05 * 200)
    assert len({e.id for e in ex}) == len(ex)
    assert group_counts(safe) == {"A": 4, "B": 3, "C": 3} or sorted(group_counts(safe).values()) == [3, 3, 4]
    assert ex[:10] != cap[:10] or ex[200:] != safe  # shuffled, not appended
    again = specs()["safety-retune"].extra_stages(specs()["safety-retune"].resolve(), ctx)[0].examples
    assert [e.id for e in again] == [e.id for e in ex]


def test_safety_retune_uses_last_capability_and_splits_safety_tasks():
    ctx = make_context(("safe", "cap", "safe2", "cap2"))
    params = specs()["safety-retune"].resolve({"safety_fraction": 0.2})
    ex = safety_retune.retune_examples(params, ctx)
    assert not [e for e in ex if e.id.startswith("cap/")]
    assert len([e for e in ex if e.id.startswith("cap2/")]) == 30
    assert len([e for e in ex if e.id.startswith("safe/")]) == 3  # ceil(0.2 * 30) = 6, split 3 + 3
    assert len([e for e in ex if e.id.startswith("safe2/")]) == 3


def test_safety_retune_needs_both_kinds():
    spec = specs()["safety-retune"]
    with pytest.raises(ConfigError, match="needs a capability task"):
        spec.extra_stages(spec.resolve(), make_context(("safe",)))
    with pytest.raises(ConfigError, match="needs a safety task"):
        spec.extra_stages(spec.resolve(), make_context(("cap",)))
