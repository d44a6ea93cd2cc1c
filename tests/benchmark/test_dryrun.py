"""``--dry-run``: writes nothing, names the stages a partial run left reusable, and plans exactly the tokens a real
run records in result.json (``timings.tokens``), chat template and a plugin strategy's extra passes included."""

import pytest
from test_runner import FAST_METRICS, spec

from chainforget.benchmark import dryrun
from chainforget.benchmark.runner import run
from chainforget.plugins import manager
from chainforget.strategies.base import StageWork, StrategyPlugin, StrategySpec


def bbq_only(strategy, **kw):
    """A one-stage run (the fast case)."""
    return spec(strategy, chain=("bbq",), limit_train=9, limit_eval=18, task_options={}, **kw)


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_dry_run_writes_nothing_and_plans_the_tokens_the_run_records(tmp_path):
    out = tmp_path / "runs"
    s = spec("replay")  # replay: the buffer of bbq joins the gsm8k stage, which the plan must count too
    plan = dryrun.dry_run([s], out, probe_machine=False)
    assert tree(out) == [] and not out.exists()
    (rp,) = plan.runs
    assert not rp.complete and not rp.base_reused and [st.reused for st in rp.stages] == [False, False]
    assert set(rp.stages[1].train) == {"gsm8k", "bbq"}
    assert sum(plan.positions["score"].values()) == rp.evaluations * sum(w.padded for w in rp.score.values())
    result = run(s, out, progress=False, metric_options=FAST_METRICS)
    tokens = result["timings"]["tokens"]
    assert tokens == rp.tokens()
    assert set(tokens["train"]) == {"1", "2"} and set(tokens["score"]) == {"0", "1", "2"}
    stage = tokens["train"]["2"]
    assert stage["padded"] > stage["tokens"] > 0  # the estimate follows padded positions, which the run counts too
    again = dryrun.dry_run([s], out, probe_machine=False)
    assert again.runs[0].complete and any("nothing to train" in line for line in again.lines)


def test_dry_run_reads_the_chat_templated_prompts_the_run_reads(tmp_path):
    out = tmp_path / "runs"
    s = bbq_only("naive", chat_template=True)
    (chat,) = dryrun.dry_run([s], out, probe_machine=False).runs
    (plain,) = dryrun.dry_run([bbq_only("naive")], out, probe_machine=False).runs
    assert chat.tokens()["train"]["1"]["tokens"] > plain.tokens()["train"]["1"]["tokens"]
    assert chat.tokens()["score"]["0"]["tokens"] > plain.tokens()["score"]["0"]["tokens"]
    assert run(s, out, progress=False, metric_options=FAST_METRICS)["timings"]["tokens"] == chat.tokens()


class TwicePlugin(StrategyPlugin):
    """A second forward and backward over every optimizer batch (as SAM's), through the template's own API."""

    def before_update(self, strategy, **kwargs):
        strategy.recompute_loss_and_backward()


TWICE = StrategySpec(name="twice", description="every batch trained through twice (a test plugin)",
                     make_plugins=lambda params, ctx: [TwicePlugin()],
                     stage_work=lambda plugins, stage, task: StageWork(extra_passes=1))


@pytest.fixture()
def twice():
    manager.registries("strategies").register("twice", TWICE, TWICE.description)
    yield
    manager.reset()


def test_a_plugin_strategy_is_estimated_with_the_passes_it_declares(tmp_path, twice):
    out = tmp_path / "runs"
    s = bbq_only("twice")
    (est,) = dryrun.dry_run([s], out, probe_machine=False).runs
    (naive,) = dryrun.dry_run([bbq_only("naive")], out, probe_machine=False).runs
    assert est.stages[0].passes == 2
    assert est.tokens()["train"]["1"] == {k: 2 * v for k, v in naive.tokens()["train"]["1"].items()}
    assert run(s, out, progress=False, metric_options=FAST_METRICS)["timings"]["tokens"] == est.tokens()


def test_dry_run_after_a_partial_run_lists_reused_and_trained_stages(tmp_path):
    out = tmp_path / "runs"
    run(spec("naive"), out, progress=False, metric_options=FAST_METRICS)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    plan = dryrun.dry_run([spec("ewc"), spec("naive", chain=("gsm8k", "bbq")), spec("lwf")], out,
                          probe_machine=False)
    ewc, other, lwf = plan.runs
    assert ewc.base_reused and [st.reused for st in ewc.stages] == [True, False]  # EWC's step 1 is naive's
    assert other.base_reused and [st.reused for st in other.stages] == [False, False]
    assert lwf.base_reused and [st.reused for st in lwf.stages] == [True, False]
    assert [st.cost for st in lwf.stages] == [1.0, 1.35] and ewc.stages[0].after_tokens > 0  # declared facts
    text = "\n".join(plan.lines)
    assert "stage 1 bbq: reused" in text and "stage 2 gsm8k: train" in text
    assert "stages to train: 4, reused from the prefix store: 2" in text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written, nothing touched


def test_dry_run_estimate_uses_a_probe(tmp_path):
    plan = dryrun.dry_run([spec("naive")], tmp_path / "runs", probe_machine=True)
    assert set(plan.throughput.train) == {"bbq", "gsm8k"} and set(plan.throughput.score) == {"bbq", "gsm8k"}
    assert plan.estimate_s > 0 and plan.parts["train"] > 0 and plan.parts["score"] > 0
    assert any(line.startswith("estimated wall time:") for line in plan.lines)
    assert not (tmp_path / "runs").exists()
