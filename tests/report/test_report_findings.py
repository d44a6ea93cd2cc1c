"""findings on synthetic runs (records drawn from planted accuracies, metrics computed by the metrics room): planted
effects are found, null ones are not, every answer states a minimum detectable effect, the JSON follows its schema
and the HTML page references nothing outside itself."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from test_report_factory import make_run

from chainforget.errors import ConfigError
from chainforget.metrics.compute import compute_all
from chainforget.report.findings import SCHEMA, findings
from chainforget.report.findings_render import render


def _acc(chain, forget, group_extra=None):
    """Every task: 0.3 before its stage, 0.8 right after, then 0.8 - forget[task] (+ a group's extra loss)."""
    group_extra = group_extra or {}

    def acc(task, step, group):
        a = chain.index(task) + 1
        if step < a:
            return 0.3
        return 0.8 if step == a else 0.8 - forget[task] - group_extra.get(group, 0.0)

    return acc


def _run(strategy, chain, seed, forget, group_extra=None, n=60):
    run = make_run(strategy, chain, seed, _acc(chain, forget, group_extra), n_per_group=n)
    r = run["result"]
    r.update(compute_all(run["records"], r["task_info"], r["stages"], eval_tasks=r["eval_tasks"], n_boot=300))
    return run


def _runs(naive_forget, replay_forget, seeds=(0,), group_extra=None, n=60):
    return [_run(s, chain, seed, f, group_extra, n) for s, f in (("naive", naive_forget), ("replay", replay_forget))
            for chain in (("bbq", "gsm8k"), ("gsm8k", "bbq")) for seed in seeds]


@pytest.fixture(scope="module")
def planted():
    # naive: safety first loses 80% of its gain (0.4 of 0.5), capability first 10%; Age forgets 0.3 more.
    # replay forgets little of either.
    return findings(_runs({"bbq": 0.4, "gsm8k": 0.05}, {"bbq": 0.05, "gsm8k": 0.05}, seeds=(0, 1, 2),
                          group_extra={"Age": 0.3}, n=80), n_boot=300)


def _one(answers, **where):
    (match,) = [a for a in answers if all(a[k] == v for k, v in where.items())]
    return match


def test_planted_effects_are_found_with_their_mde(planted):
    oa = _one(planted["order_asymmetry"]["answers"], setting="naive")
    assert oa["safety_task"] == "bbq" and oa["capability_task"] == "gsm8k"
    assert oa["difference"]["p"] < 0.05 and oa["difference"]["ci_low"] > 0
    assert oa["difference"]["mde"] > 0 and "safety is forgotten more" in oa["reading"]
    group = _one(planted["group_dependence"]["answers"], setting="naive", task="bbq")
    assert group["spread"]["p"] < 0.05 and group["spread"]["ci_low"] > 0 and group["spread"]["mde"] > 0
    assert {g["group"] for g in group["groups"]} == {"Age", "Gender", "Race"}
    assert "Age forgot more than every other group" in group["reading"]
    for g in group["groups"]:  # per-group intervals over seeds stay in the possible range of an accuracy drop
        assert -1.0 <= g["ci_low"] <= g["value"] <= g["ci_high"] <= 1.0, g
    safety = _one(planted["mitigation"]["answers"], setting="replay", chain="bbq,gsm8k", measure="safety forgetting")
    assert safety["difference"]["ci_high"] < 0 and safety["pairs"] == 3 and "forgets less than naive" in \
        safety["reading"]
    (front,) = planted["mitigation"]["pareto"]
    assert front["chain"] == "bbq,gsm8k" and "replay" in front["front"]


def test_null_effects_are_not_called_and_say_what_could_be_missed():
    found = findings(_runs({"bbq": 0.25, "gsm8k": 0.25}, {"bbq": 0.25, "gsm8k": 0.25}), n_boot=300)
    oa = _one(found["order_asymmetry"]["answers"], setting="naive")
    assert oa["difference"]["p"] >= 0.05 and "effects smaller than" in oa["reading"]
    for answer in found["group_dependence"]["answers"]:  # the interval never calls noise a spread
        assert (answer["spread"]["ci_low"] > 0) == (answer["spread"]["p"] < 0.05)
    capability = [a for a in found["mitigation"]["answers"] if a["measure"] == "final capability"]
    assert capability and all(a["difference"]["mde"] > 0 for a in capability)


def test_one_seed_group_answer_is_the_stored_metric_of_the_leaderboard():
    runs = _runs({"bbq": 0.3, "gsm8k": 0.1}, {"bbq": 0.1, "gsm8k": 0.1})
    found = findings(runs, n_boot=300)
    answer = _one(found["group_dependence"]["answers"], setting="naive", task="bbq")
    stored = runs[0]["result"]["metrics"]["biased_forgetting"]["bbq"]
    assert answer["spread"]["value"] == stored["value"] and answer["spread"]["p"] == stored["p"]
    assert answer["groups"][0]["ci"] == "simultaneous"


def test_json_follows_the_schema_and_html_is_self_contained(planted):
    data = json.loads(render(planted, "json"))
    jsonschema.validate(data, SCHEMA)
    page = render(planted, "html")
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") == 4
    assert page.count('src="data:image/png;base64,') >= 3  # asymmetry, per-group bars, Pareto
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:)", page)  # nothing loaded from elsewhere
    assert not re.search(r"https?://|@import|url\(|<script|<link", page)
    text = render(planted, "text")
    assert "(1) Order asymmetry" in text and "MDE" in text and "Pareto set" in text


def test_bad_requests_are_one_line_errors():
    runs = _runs({"bbq": 0.2, "gsm8k": 0.1}, {"bbq": 0.1, "gsm8k": 0.1})
    with pytest.raises(ConfigError, match="did you mean 'relative_forgetting'"):
        findings(runs, metric="relative_forgeting")
    with pytest.raises(ConfigError, match="own unit"):
        findings(runs, metric="forgetting")
    with pytest.raises(ConfigError, match="did you mean 'html'"):
        render({}, "htm")
    with pytest.raises(ConfigError, match="two runs"):
        findings(runs + runs[:1])
    none = findings([r for r in runs if r["result"]["tasks"][0] == "gsm8k"])  # one order only
    assert none["order_asymmetry"]["answers"] == [] and "both orders" in none["order_asymmetry"]["note"]


def test_an_order_asymmetry_the_data_cannot_bound_is_reported_unbounded():
    """12 examples per task (as the quick preset's GSM8K): the gain of the capability-first task is not clearly
    positive, so the difference's interval is unbounded, with no MDE and a reading that says so (never a finite
    interval made up by dropping resamples)."""
    runs = []
    for chain in (("bbq", "gsm8k"), ("gsm8k", "bbq")):
        run = make_run("naive", chain, 0, _acc(chain, {"bbq": 0.3, "gsm8k": 0.1}), n_per_group=4)
        r = run["result"]
        r.update(compute_all(run["records"], r["task_info"], r["stages"], eval_tasks=r["eval_tasks"], n_boot=100,
                             min_group_size=2))
        runs.append(run)
    (answer,) = findings(runs, n_boot=100, min_group_size=2)["order_asymmetry"]["answers"]
    diff = answer["difference"]
    assert diff["unbounded"] == "both" and diff["ci_low"] is None and diff["ci_high"] is None
    assert diff["value"] is not None and diff["mde"] is None and diff["p"] >= 0.05
    assert "unbounded" in answer["reading"] and "no effect size can be ruled out" in answer["reading"]
    assert answer["capability_first"]["unbounded"] == "both"  # the stored Fieller interval of that order
