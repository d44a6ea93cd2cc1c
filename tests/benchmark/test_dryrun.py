"""``--dry-run``: writes nothing, names the stages a partial run left reusable, counts the tokens a real run runs."""

import pytest
from test_runner import FAST_METRICS, spec

from chainforget.benchmark import dryrun
from chainforget.benchmark.runner import run
from chainforget.engine import collate as collate_module
from chainforget.engine import loglik
from chainforget.engine.template import CausalLMTemplate


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture()
def counted(monkeypatch):
    """Tokens a real run trains (the template's own count per experience) and scores (packed rows it runs)."""
    seen = {"train": [], "score": 0, "train_padded": 0, "score_padded": 0}
    train_exp = CausalLMTemplate._train_exp
    real_collate = collate_module.collate

    def counting_collate(items, pad_id):
        batch = real_collate(items, pad_id)
        seen["train_padded"] += int(batch["input_ids"].numel())  # positions a training forward computes
        return batch

    def counting_train(self, *args, **kwargs):
        train_exp(self, *args, **kwargs)
        seen["train"].append(self.train_stats["tokens"])

    forward = loglik._forward_batch

    def counting_forward(model, rows, pad_id, device):
        seen["score"] += sum(r.length for r in rows)
        seen["score_padded"] += len(rows) * max(r.length for r in rows)
        return forward(model, rows, pad_id, device)

    monkeypatch.setattr(CausalLMTemplate, "_train_exp", counting_train)
    monkeypatch.setattr(collate_module, "collate", counting_collate)
    monkeypatch.setattr(loglik, "_forward_batch", counting_forward)
    return seen


def test_dry_run_writes_nothing_and_counts_what_the_run_processes(tmp_path, counted):
    out = tmp_path / "runs"
    s = spec("replay")  # replay: the buffer of bbq joins the gsm8k stage, which the plan must count too
    plan = dryrun.dry_run([s], out, probe_machine=False)
    assert tree(out) == [] and not out.exists()
    (rp,) = plan.runs
    assert not rp.complete and not rp.base_reused and [st.reused for st in rp.stages] == [False, False]
    assert set(rp.stages[1].train) == {"gsm8k", "bbq"}
    run(s, out, progress=False, metric_options=FAST_METRICS)
    planned_train = [sum(w.tokens for w in st.train.values()) for st in rp.stages]
    assert counted["train"] == planned_train
    assert counted["score"] == rp.evaluations * sum(w.tokens for w in rp.score.values())
    # the estimate follows padded positions: the planned batches pad exactly as the real ones
    assert abs(counted["train_padded"] - sum(w.padded for st in rp.stages for w in st.train.values())) <= 2
    assert counted["score_padded"] == rp.evaluations * sum(w.padded for w in rp.score.values())
    assert counted["train_padded"] > sum(counted["train"]) and counted["score_padded"] > counted["score"]
    again = dryrun.dry_run([s], out, probe_machine=False)
    assert again.runs[0].complete and any("nothing to train" in line for line in again.lines)


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
