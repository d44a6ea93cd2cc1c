"""Every declared metric range holds for the values produced, whatever the task's unit."""

import numpy as np
from metrics_fixtures import info, task_records

from chainforget.metrics.compute import compute_all
from chainforget.plugins import registries


def _entries(per_key):
    for key, entry in per_key.items():
        if isinstance(entry, dict) and isinstance(entry.get("value"), (int, float)):
            yield key, entry


def test_declared_ranges_hold_for_accuracy_and_nats_per_token_tasks():
    rng = np.random.default_rng(0)
    groups = [g for g in "abc" for _ in range(25)]
    acc = [rng.integers(0, 2, 75).astype(float) for _ in range(3)]
    # a log-likelihood per token score (GSM8K's gold_logprob): -2.5 nats after training, -4 at the end
    nats = [rng.normal(mu, 0.5, 75) for mu in (-3.0, -2.5, -4.0)]
    recs = task_records("bbq", acc, groups) + task_records("gsm8k", nats, groups, "lp")
    ti = {**info({"bbq": 1}), "gsm8k": {**info({"gsm8k": 1})["gsm8k"], "primary_metric": "lp"}}
    out = compute_all(recs, ti, ["base", "both", "later"], min_group_size=20, n_boot=200)["metrics"]
    assert out["forgetting"]["gsm8k"]["value"] > 1  # 1.5 nats per token: outside the old declared [-1, 1]
    assert out["average_score"]["overall"]["value"] is None  # acc and lp are never averaged
    assert set(out["average_score"]) >= {"acc", "lp"} and out["average_score"]["lp"]["unit"] == "lp"
    registry = registries("metrics")
    for name, per_key in out.items():
        spec = registry.get(name)
        for key, entry in _entries(per_key):
            for field in ("value", "ci_low", "ci_high"):
                x = entry.get(field)
                if isinstance(x, (int, float)):
                    assert spec.low is None or x >= spec.low - 1e-12, (name, key, field, x)
                    assert spec.high is None or x <= spec.high + 1e-12, (name, key, field, x)
