"""A metric that no run defines says so in one line: compare refuses (exit 2) when nothing requested is defined and
warns when some is, its JSON lists what is missing and why; plot warns and draws the rest."""

from __future__ import annotations

import json

import pytest
from test_report_factory import make_run

from chainforget.commands.reports import compare_command, plot_command
from chainforget.errors import DataError
from chainforget.report.summary import run_summary
from chainforget.store.results import write_records, write_result

SF = ("bbq", "gsm8k")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for strategy, forget in (("naive", 0.3), ("replay", 0.1)):
        run = make_run(strategy, SF, 0, lambda t, s, g, f=forget: (0.8 - f * (s == 2)) if t == "bbq" else 0.2,
                       n_per_group=20)
        run_dir = root / run["result"]["run_id"]
        for step in range(3):
            write_records(run_dir, step, [r for r in run["records"] if r["step"] == step])
        write_result(run_dir, run["result"])
    return root


def test_compare_of_metrics_missing_everywhere(runs_dir):
    args = dict(baseline=None, by="strategy", n_boot=50, seed=0, fmt="json")
    with pytest.raises(DataError) as info:
        compare_command([str(runs_dir)], metrics=["drift"], **args)
    message = str(info.value)
    assert "\n" not in message and message.startswith("metric drift is missing in every run (needs a safety task")
    text, warnings = compare_command([str(runs_dir)], metrics=["drift", "forgetting", "biased_forgetting"], **args)
    doc = json.loads(text)
    assert doc["missing_metrics"] == [{"metric": "drift",
                                       "missing": "needs a safety task that is evaluated but never trained"}]
    assert {row["metric"] for row in doc["rows"]} == {"forgetting", "biased_forgetting"}
    for row in [r for r in doc["rows"] if r["metric"] == "biased_forgetting"]:  # compared by its own value and p
        assert row["difference"]["missing"].startswith("the baseline itself" if row["method"] == "naive" else
                                                       "a spread is compared by its own value and p")
        assert row["significant"] is (row["value"]["p"] < 0.05)
    assert [w for w in warnings if "drift" in w] == [
        "metric drift is missing in every run (needs a safety task that is evaluated but never trained); left out "
        "of the table"]
    base = [row for row in doc["rows"] if row["method"] == "naive"][0]
    assert base["difference"]["missing"] == "the baseline itself" and base["significant"] is None


def test_plot_of_a_metric_missing_everywhere_warns_in_one_line(runs_dir, tmp_path, monkeypatch):
    from chainforget.commands import reports

    drawn = []  # the figures themselves are tested in test_report_plots; here only what plot says about the metric
    monkeypatch.setattr(reports, "plot_all", lambda results, out, metrics: drawn.append((len(results), metrics)) or [])
    files, warnings = plot_command([str(runs_dir)], str(tmp_path), metrics=["relative_forgetting", "forgetting"])
    assert drawn == [(2, ("relative_forgetting", "forgetting"))]
    (line,) = warnings
    assert line == "metric relative_forgetting is missing in every run (no run stores a value for it); no figure drawn for it"


def test_run_summary_prints_each_missing_value_with_its_reason():
    run = make_run("naive", ("gsm8k", "bbq"), 0)
    result = {**run["result"], "run_id": "r1"}
    result["metrics"] = {"forgetting": {"bbq": {"value": None, "missing": "bbq is trained in the last stage"},
                                        "gsm8k": {"value": 0.1, "ci_low": 0.0, "ci_high": 0.2}}}
    text = run_summary(result)
    table = text.split("forgetting (positive = forgot)")[1]
    assert "bbq is trained in the last stage" in table and "n/a (1)" in table
    assert "  (2) not computed for this run" in table  # biased forgetting, worst group, p: no entry stored
    rows = [line.split() for line in table.splitlines() if line.startswith(("bbq", "gsm8k"))]
    assert len(rows) == 2 and all("-" not in row for row in rows)  # no bare dash standing in for a value
