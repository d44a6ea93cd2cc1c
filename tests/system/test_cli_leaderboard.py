"""The researcher's CLI end to end on the tiny model: leaderboard, formats, no-op rerun, shards, compare, plot."""

import csv
import io
import json

import pytest
import yaml
from run_helpers import cli_process

MICRO = {
    "model": "tiny",
    "chains": [["bbq", "gsm8k"], ["gsm8k", "bbq"]],
    "strategies": ["naive", "ewc"],
    "seeds": [0],
    "limit_train": {"bbq": 9, "gsm8k": 4},
    "limit_eval": {"bbq": 18, "gsm8k": 4},
    "task_options": {"gsm8k": {"primary_metric": "gold_logprob"}},
    "train": {"batch_size": 4, "micro_batch_size": 4, "max_length": 256, "learning_rate": 1e-3},
    "eval_batch_size": 8,
    "metric_options": {"n_boot": 50},
}


cli = cli_process


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """The micro suite run once in shards (two processes, one after the other) and once in one process."""
    root = tmp_path_factory.mktemp("board")
    (root / "suite.yaml").write_text(yaml.safe_dump(MICRO))
    for shard in ("1/2", "2/2"):
        code, _, err = cli("leaderboard", "--suite", "suite.yaml", "--out", "sharded", "--shard", shard, "-q",
                           cwd=root)
        assert code == 0, err[-3000:]
    code, whole, err = cli("leaderboard", "--suite", "suite.yaml", "--out", "whole", "-q", cwd=root)
    assert code == 0, err[-3000:]
    return root, whole


def test_table_rows_and_columns(board):
    root, whole = board
    code, out, _ = cli("leaderboard", "--suite", "suite.yaml", "--out", "whole", "--no-run", "--format", "csv",
                       cwd=root)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["strategy"], r["chain"]) for r in rows} == {
        ("naive", "bbq,gsm8k"), ("ewc", "bbq,gsm8k"), ("naive", "gsm8k,bbq"), ("ewc", "gsm8k,bbq")}
    header = list(rows[0])
    assert any(h.startswith("bbq") and "biased" in h for h in header)
    assert any(h.startswith("bbq") and "forgetting" in h and "biased" not in h for h in header)
    assert any("gsm8k" in h for h in header)
    assert "naive" in whole and "ewc" in whole


def test_every_format_parses(board):
    root, _ = board
    for fmt in ("github", "plain", "latex", "html", "json", "csv"):
        code, out, err = cli("leaderboard", "--suite", "suite.yaml", "--out", "whole", "--no-run", "--format", fmt,
                             cwd=root)
        assert code == 0, err
        if fmt == "json":
            data = json.loads(out)
            assert len(data["rows"]) == 4 and all("strategy" in row for row in data["rows"])
        elif fmt == "latex":
            assert "\\begin{tabular}" in out
        elif fmt == "html":
            assert "<table>" in out and "ewc" in out


def test_rerun_is_a_noop(board):
    root, whole = board
    before = {p: p.stat().st_mtime_ns for p in (root / "whole").rglob("result.json")}
    code, again, err = cli("leaderboard", "--suite", "suite.yaml", "--out", "whole", cwd=root)
    assert code == 0
    assert again == whole
    assert "training on" not in err  # nothing retrained
    assert {p: p.stat().st_mtime_ns for p in (root / "whole").rglob("result.json")} == before


def test_shards_merge_into_the_same_table(board):
    root, whole = board
    code, merged, _ = cli("leaderboard", "--suite", "suite.yaml", "--out", "sharded", "--no-run", cwd=root)
    assert code == 0
    assert merged == whole


def test_compare_and_plot(board):
    root, _ = board
    code, out, err = cli("compare", "whole", "--by", "strategy", "--baseline", "naive", "--n-boot", "50",
                         "--format", "csv", cwd=root)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["method"] for r in rows} == {"naive", "ewc"}
    code, out, err = cli("plot", "whole", "--out", "figs", cwd=root)
    assert code == 0, err
    files = list((root / "figs").iterdir())
    assert any(f.suffix == ".png" for f in files) and any(f.suffix == ".pdf" for f in files)
    assert all(f.stat().st_size > 0 for f in files)


def test_metrics_command_recomputes_identically(board):
    root, _ = board
    run_dir = next((root / "whole").glob("bbq-gsm8k_ewc_*"))
    code, out, err = cli("metrics", str(run_dir), "--check", cwd=root)
    assert code == 0, err
    assert json.loads(out)["identical_to_stored"] is True


def _numbers(measure):
    return [measure[k] for k in ("value", "ci_low", "ci_high", "p") if measure[k] is not None]


def test_json_outputs_parse_into_numbers_with_their_schema(board):
    """leaderboard, compare, findings and list as JSON: versioned schema ids, numbers (never display strings),
    and a reason wherever a value is missing."""
    import jsonschema

    from chainforget.report import schemas
    from chainforget.report.findings import SCHEMA as FINDINGS

    root, _ = board
    runs = [("leaderboard", "--suite", "suite.yaml", "--out", "whole", "--no-run", "--format", "json"),
            ("compare", "whole", "--by", "strategy", "--n-boot", "50", "--format", "json"),
            ("findings", "whole", "--n-boot", "50", "--format", "json"),
            ("list", "--format", "json")]
    docs = []
    for args in runs:
        code, out, err = cli(*args, cwd=root)
        assert code == 0, err
        docs.append(json.loads(out))
    board_doc, compare_doc, findings_doc, list_doc = docs
    for doc, schema in ((board_doc, schemas.LEADERBOARD), (compare_doc, schemas.COMPARE)):
        jsonschema.validate(doc, schema)
        schemas.check_table(doc)
        measures = [row[c["key"]] for row in doc["rows"] for c in doc["columns"] if c["kind"] == "measure"]
        assert all(isinstance(x, float) for m in measures for x in _numbers(m))
        assert all((m["value"] is None) == bool(m["missing"]) for m in measures)  # no value without a reason
        assert any(m["value"] is not None for m in measures)
    assert board_doc["schema"] == "chainforget.leaderboard/2" and compare_doc["schema"] == "chainforget.compare/2"
    naive = [r for r in board_doc["rows"] if r["strategy"] == "naive" and r["chain"] == "bbq,gsm8k"][0]
    assert naive["seeds"] == 1 and naive["bbq_forgetting"]["unit"] == "acc" and naive["bbq_forgetting"]["n"] > 0
    assert naive["gsm8k_vs_naive"]["missing"] == "naive is the baseline"
    assert compare_doc["baseline"] == "naive"
    jsonschema.validate(findings_doc, FINDINGS)
    jsonschema.validate(list_doc, schemas.LIST)
    metric = [m for m in list_doc["metrics"] if m["name"] == "relative_forgetting"][0]
    assert metric["higher_is_better"] is False and metric["unit"] == "share of the stage's gain"
    assert {s["name"] for s in list_doc["strategies"]} >= {"naive", "ewc", "replay"}


def test_compare_of_a_metric_missing_everywhere_says_so(board):
    root, _ = board
    code, out, err = cli("compare", "whole", "--by", "strategy", "--metric", "drift", cwd=root)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "metric drift is missing in every run" in err
    code, out, err = cli("compare", "whole", "--by", "strategy", "--metric", "drift", "--metric", "forgetting",
                         "--n-boot", "50", cwd=root)
    assert code == 0 and "forgetting" in out
    assert "warning: metric drift is missing in every run" in err
