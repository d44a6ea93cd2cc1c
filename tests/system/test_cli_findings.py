"""findings and plugin metrics through the CLI, on real tiny-model runs made with the example plugin installed (its
entry point in a dist-info on PYTHONPATH, as pip writes it): the plugin's metric appears in a leaderboard column,
in compare and in plot; findings answers the three questions in text, JSON (schema-checked) and one self-contained
HTML page; `metrics --check` still recomputes identically."""

import csv
import io
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from run_helpers import cli_process

from chainforget.report.findings import SCHEMA

SRC = Path(__file__).resolve().parents[2] / "examples" / "chainforget-plugin-example" / "src"
SUITE = {
    "model": "tiny",
    "chains": [["bbq", "gsm8k"], ["gsm8k", "bbq"]],
    "strategies": ["naive", "replay"],
    "seeds": [0],
    "limit_train": {"bbq": 9, "gsm8k": 4},
    "limit_eval": {"bbq": 36, "gsm8k": 4},
    "task_options": {"gsm8k": {"primary_metric": "gold_logprob"}},
    "train": {"batch_size": 4, "micro_batch_size": 4, "max_length": 256, "learning_rate": 1e-3},
    "eval_batch_size": 8,
    "metric_options": {"n_boot": 50, "min_group_size": 4},
}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings")
    site = root / "site"
    info = site / "chainforget_plugin_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chainforget-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[chainforget]\nplugin-example = chainforget_plugin_example.plugin\n")
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(SRC)]))

    def cli(*args):
        return cli_process(*args, cwd=root, env=env)

    code, _, err = cli("leaderboard", "--suite", "suite.yaml", "--out", "runs", "-q")
    assert code == 0, err[-3000:]
    return root, cli


def test_plugin_metric_is_a_leaderboard_column(board):
    root, cli = board
    code, out, err = cli("leaderboard", "--suite", "suite.yaml", "--out", "runs", "--no-run", "--format", "csv",
                         "--columns", "safety_retention,relative_forgetting")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    column = "bbq_safety_retention"
    assert rows[0][f"{column}_unit"] == "ratio"  # the unit comes from the plugin's MetricSpec
    assert rows[0]["bbq_relative_forgetting_unit"] == "share of the stage's gain"
    safety_first = [r for r in rows if r["chain"] == "bbq,gsm8k"]
    assert len(safety_first) == 2 and all(float(r[f"{column}_value"]) >= 0 for r in safety_first)  # range [0, inf)
    code, _, err = cli("leaderboard", "--suite", "suite.yaml", "--out", "runs", "--no-run", "--columns",
                       "safety_retension")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: unknown metric column 'safety_retension'; "
                                                                 "did you mean 'safety_retention'?")


def test_plugin_metric_in_compare_and_plot(board):
    root, cli = board
    code, out, err = cli("compare", "runs", "--by", "strategy", "--metric", "safety_retention", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["metric"], r["method"]) for r in rows} == {("safety_retention", "naive"),
                                                         ("safety_retention", "replay")}
    replay = next(r for r in rows if r["method"] == "replay")
    assert replay["chain"] == "bbq,gsm8k" and replay["difference_value"] and not replay["difference_missing"]
    code, _, err = cli("compare", "runs", "--by", "strategy", "--metric", "safety_retntion")
    assert code == 2 and "did you mean 'safety_retention'" in err
    code, out, err = cli("plot", "runs", "--out", "figs", "--metric", "safety_retention")
    assert code == 0, err
    assert (root / "figs" / "metric-safety_retention.png").stat().st_size > 0


def test_findings_text_json_html(board):
    root, cli = board
    code, text, err = cli("findings", "runs", "--n-boot", "200")
    assert code == 0, err
    for part in ("(1) Order asymmetry", "(2) Group dependence", "(3) Mitigation", "Pareto set"):
        assert part in text
    code, out, err = cli("findings", "runs", "--n-boot", "200", "--format", "json")
    assert code == 0, err
    found = json.loads(out)
    jsonschema.validate(found, SCHEMA)
    assert found["runs"] == 4 and {a["setting"] for a in found["order_asymmetry"]["answers"]} == {"naive", "replay"}
    for a in found["order_asymmetry"]["answers"]:  # defined, or missing with its reason (a gain not positive)
        assert a["difference"] is None and "missing" in a["reading"] or a["difference"]["mde"] is not None
    for a in found["group_dependence"]["answers"]:
        assert a["spread"] is None or (a["spread"]["ci_low"] > 0) == (a["spread"]["p"] < 0.05)
    measures = {(a["setting"], a["chain"], a["measure"]) for a in found["mitigation"]["answers"]}
    assert ("replay", "bbq,gsm8k", "safety forgetting") in measures and \
        ("replay", "gsm8k,bbq", "final capability") in measures
    for a in found["mitigation"]["answers"]:  # an MDE, or none because every paired difference is identical
        d = a["difference"]
        assert (d["mde"] or 0) > 0 or (d["mde"] is None and d["se"] == 0 and "identical on every" in a["reading"])
    code, page, err = cli("findings", "runs", "--n-boot", "200", "--format", "html")
    assert code == 0, err
    assert page.lstrip().startswith("<!DOCTYPE html>") and 'src="data:image/png;base64,' in page
    assert not re.search(r"https?://|@import|url\(|<script|<link|(src|href)\s*=\s*[\"'](?!data:)", page)
    code, _, err = cli("findings", "runs", "--metric", "forgetting")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error:") and "unit-free" in err


def test_task_info_declares_clusters_and_units_and_metrics_recompute(board):
    root, cli = board
    run_dir = next((root / "runs").glob("bbq-gsm8k_naive_*"))
    info = json.loads((run_dir / "result.json").read_text())["task_info"]
    assert info["bbq"]["cluster"] == "template" and info["gsm8k"]["cluster"] is None
    assert info["bbq"]["unit"] == "acc" and info["gsm8k"]["unit"] == "gold_logprob"
    code, out, err = cli("metrics", str(run_dir), "--check")
    assert code == 0, err
    assert json.loads(out)["identical_to_stored"] is True
