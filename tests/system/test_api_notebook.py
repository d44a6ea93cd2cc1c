"""The notebook example end to end on `tiny-trained`: each task's own stage raises its score, so relative
forgetting, findings' question (1) and the Pareto front are defined; the Python API's DataFrames hold the CLI's
numbers."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import cli_process

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notebook_api.py"


def cli(*args, cwd):
    code, out, err = cli_process(*args, cwd=cwd, timeout=600)
    assert code == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    out = subprocess.run([sys.executable, str(EXAMPLE), "--out", "runs"], capture_output=True, text=True, cwd=root,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return root, out.stdout


def test_the_example_prints_its_analysis(example):
    _, stdout = example
    assert stdout.startswith("4 runs under runs/")
    for heading in ("Score matrices", "Relative forgetting", "BBQ accuracy per group", "Missing values say why",
                    "The leaderboard", "Per-example records"):
        assert heading in stdout


def test_each_tasks_own_stage_raises_its_score(example):
    """On tiny-trained every first task gains from its own stage: relative forgetting is defined in every run."""
    root, _ = example
    results = [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*/result.json"))]
    assert len(results) == 4
    for result in results:
        first = result["spec"]["chain"][0]
        entry = result["metrics"]["relative_forgetting"][first]
        assert entry["gain"] > 0, (result["run_id"], entry)
        assert isinstance(entry["value"], float) and math.isfinite(entry["value"])


def test_findings_answer_question_one_with_a_number_and_draw_a_pareto_front(example):
    root, _ = example
    doc = json.loads(cli("findings", "runs", "--n-boot", "200", "--format", "json", cwd=root))
    answers = doc["order_asymmetry"]["answers"]
    assert answers and all(isinstance(a["difference"]["value"], float) for a in answers)
    assert {a["capability_first"]["task"] for a in answers} == {"gsm8k"}
    assert doc["mitigation"]["pareto"], doc["mitigation"]


def test_api_frames_hold_the_clis_numbers(example):
    import chainforget.api as cf

    root, _ = example
    res = cf.load(root / "runs")
    m = res.metrics
    board = json.loads(cli("leaderboard", "--no-run", "--out", "runs", "--format", "json", "--columns",
                           "relative_forgetting", cwd=root))
    checked = 0
    for row in board["rows"]:
        mine = m[(m.strategy == row["strategy"]) & (m.chain == row["chain"])]
        last = mine.stage.max()
        for key, metric, task in (("bbq_forgetting", "forgetting", "bbq"), ("gsm8k_final", "score", "gsm8k"),
                                  ("bbq_relative_forgetting", "relative_forgetting", "bbq"),
                                  ("gsm8k_relative_forgetting", "relative_forgetting", "gsm8k")):
            cell = row[key]
            match = mine[(mine.metric == metric) & (mine.task == task) & (mine.group == "all")]
            if metric == "score":
                match = match[match.stage == last]
            if cell["value"] is None:  # missing in the CLI: missing (or absent) in the API, never a number
                assert match.value.isna().all()
                continue
            (found,) = match.itertuples()
            assert found.value == pytest.approx(cell["value"], abs=1e-12)
            for bound in ("ci_low", "ci_high"):
                if cell[bound] is not None:
                    assert getattr(found, bound) == pytest.approx(cell[bound], abs=1e-12)
            assert found.unit == cell["unit"]
            checked += 1
    assert checked >= 10
    # the API's leaderboard is that same JSON, one row per cell
    long = cf.leaderboard(root / "runs", columns=["relative_forgetting"])
    flat = {(r["strategy"], r["chain"], c["key"]): r[c["key"]]["value"]
            for r in board["rows"] for c in board["columns"] if c["kind"] == "measure"}
    assert len(long) == len(flat)
    for r in long.itertuples():
        expected = flat[(r.strategy, r.chain, r.column)]
        assert (expected is None and math.isnan(r.value)) or r.value == expected


def test_records_frame_rebuilds_the_score_matrix(example):
    import chainforget.api as cf

    root, _ = example
    res = cf.load(root / "runs")
    rec, m = res.records, res.metrics
    assert set(rec.columns) >= {"run_id", "stage", "stage_label", "task", "id", "group", "score", "acc", "gold_logprob"}
    means = rec.groupby(["run_id", "stage", "task"]).score.mean()
    scores = m[(m.metric == "score") & (m.group == "all")].set_index(["run_id", "stage", "task"]).value
    assert len(means) == len(scores) > 0
    for key, value in scores.items():
        assert means[key] == pytest.approx(value, abs=1e-9)
    assert set(res.runs.run_id) == set(m.run_id) and len(res.runs) == 4


def test_run_from_python_is_the_clis_run(example):
    """cf.run with the suite's settings names the suite's naive run (same run id), so it is read, not retrained;
    a bad setting is the CLI's one-line error."""
    import chainforget.api as cf
    from chainforget.errors import ChainforgetError

    sys.path.insert(0, str(EXAMPLE.parent))
    from notebook_api import SUITE

    root, _ = example
    settings = {k: SUITE[k] for k in ("model", "limit_train", "limit_eval", "task_options", "eval_batch_size")}
    res = cf.run("bbq,gsm8k", out=root / "runs", train=SUITE["train"], **settings)
    (run_id,) = res.runs.run_id
    assert (root / "runs" / run_id / "result.json").is_file() and run_id.startswith("bbq-gsm8k_naive_s0_")
    assert len(list((root / "runs").glob("bbq-gsm8k_naive_*"))) == 1  # nothing new was trained
    with pytest.raises(ChainforgetError, match="unknown strategy 'naiv'; did you mean 'naive'"):
        cf.run("bbq,gsm8k", strategy="naiv", out=root / "runs", **settings)
