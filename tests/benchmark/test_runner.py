"""End-to-end runs on the tiny model: result files, prefix reuse, resume, recompute from disk."""

import json

import pytest

from chainforget.benchmark.runner import run
from chainforget.config.spec import RunSpec
from chainforget.errors import ChainforgetError
from chainforget.store import results as store

SMALL = dict(model="tiny", limit_train={"bbq": 9, "gsm8k": 4}, limit_eval={"bbq": 18, "gsm8k": 4},
             task_options={"gsm8k": {"primary_metric": "gold_logprob"}},
             train={"batch_size": 4, "micro_batch_size": 4, "max_length": 256, "learning_rate": 1e-3},
             eval_batch_size=8)
FAST_METRICS = {"n_boot": 50}


def spec(strategy="naive", chain=("bbq", "gsm8k"), **kw):
    return RunSpec(chain=chain, strategy=strategy, **{**SMALL, **kw})


def test_run_writes_complete_result_and_recomputes_identically(tmp_path):
    result = run(spec(), tmp_path, progress=False, metric_options=FAST_METRICS)
    run_dir = tmp_path / result["run_id"]
    assert store.is_complete(run_dir)
    assert result["stages"] == ["base", "bbq", "gsm8k"]
    assert result["tasks"] == ["bbq", "gsm8k"] and result["eval_tasks"] == ["bbq", "gsm8k"]
    assert len(result["score_matrix"]) == 3 and all(len(row) == 2 for row in result["score_matrix"])
    assert set(result["group_score_matrix"]["bbq"]) == {
        "Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance", "Race_ethnicity",
        "Religion", "SES", "Sexual_orientation"}
    f = result["metrics"]["forgetting"]["bbq"]
    r = result["score_matrix"]
    assert f["value"] == pytest.approx(r[1][0] - r[2][0])
    assert result["task_info"]["bbq"]["trained_at"] == 1 and result["task_info"]["gsm8k"]["trained_at"] == 2
    assert result["versions"]["torch"] and "train_config" in result
    for step in range(3):
        assert (run_dir / "records" / f"step-{step}.jsonl.gz").exists()
    from chainforget.metrics.compute import recompute_run

    again = recompute_run(run_dir)
    for key in ("score_matrix", "group_score_matrix", "metrics"):
        assert json.dumps(again[key], sort_keys=True) == json.dumps(result[key], sort_keys=True)
    # a second call is a no-op that returns the stored result
    assert run(spec(), tmp_path, progress=False, metric_options=FAST_METRICS) == result


def test_strategies_share_identical_prefixes(tmp_path):
    naive = run(spec("naive"), tmp_path, progress=False, metric_options=FAST_METRICS)
    ewc = run(spec("ewc"), tmp_path, progress=False, metric_options=FAST_METRICS)
    # EWC trains step 1 exactly like naive: that stage (and the base evaluation) came from the prefix store
    assert set(ewc["timings"]["reused"]) == {"0", "1"}
    assert "1" not in ewc["timings"]["train_seconds"] and "2" in ewc["timings"]["train_seconds"]
    assert ewc["score_matrix"][:2] == naive["score_matrix"][:2]
    other_order = run(spec("naive", chain=("gsm8k", "bbq")), tmp_path, progress=False, metric_options=FAST_METRICS)
    assert set(other_order["timings"]["reused"]) == {"0"}  # only the base evaluation is shared


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """A run stopped by a real fault when stage 2 starts (a full disk, planted through the project's own fault
    point), then resumed: same metrics as a run that never stopped."""
    full = run(spec("ewc"), tmp_path / "a", progress=False, metric_options=FAST_METRICS)

    monkeypatch.setenv("CHAINFORGET_ENOSPC_AT", "train/2")
    with pytest.raises(OSError):
        run(spec("ewc"), tmp_path / "b", progress=False, metric_options=FAST_METRICS)
    monkeypatch.delenv("CHAINFORGET_ENOSPC_AT")
    assert not store.is_complete(tmp_path / "b" / full["run_id"])
    resumed = run(spec("ewc"), tmp_path / "b", resume=True, progress=False, metric_options=FAST_METRICS)
    assert resumed["timings"]["reused"]["1"]
    for key in ("score_matrix", "group_score_matrix", "metrics"):
        assert json.dumps(resumed[key], sort_keys=True) == json.dumps(full[key], sort_keys=True)


def test_bad_names_fail_before_work(tmp_path):
    with pytest.raises(ChainforgetError, match="did you mean .replay."):
        run(spec("replya"), tmp_path)
    with pytest.raises(Exception, match="did you mean 'gsm8k'"):
        run(spec(chain=("bbq", "gsm8"), task_options={}, limit_train=None, limit_eval=None), tmp_path)
    assert not list(tmp_path.iterdir())


def test_safety_retune_adds_a_stage_and_joint_trains_once(tmp_path):
    retune = run(spec("safety-retune"), tmp_path, progress=False, metric_options=FAST_METRICS)
    assert retune["stages"] == ["base", "bbq", "gsm8k", "retune"]
    assert len(retune["score_matrix"]) == 4
    # forgetting is measured against the last row: the re-tuned model
    r = retune["score_matrix"]
    assert retune["metrics"]["forgetting"]["bbq"]["value"] == pytest.approx(r[1][0] - r[3][0])
    joint = run(spec("joint"), tmp_path, progress=False, metric_options=FAST_METRICS)
    assert joint["stages"] == ["base", "joint"]
    assert joint["task_info"]["bbq"]["trained_at"] == 1 and joint["task_info"]["gsm8k"]["trained_at"] == 1


def test_sharpness_during_run_equals_sharpness_from_checkpoints(tmp_path):
    """--sharpness stores lambda_max per stage; `chainforget sharpness RUN_DIR` recomputes it from the checkpoints."""
    from chainforget.commands.sharpness import stage_sharpness

    result = run(spec(chain=("bbq",), limit_train={"bbq": 9}, limit_eval={"bbq": 18}, task_options={},
                      sharpness=True), tmp_path, progress=False, metric_options=FAST_METRICS)
    assert result["sharpness"][0] is None  # the base model is not a trained stage
    during = result["sharpness"][1]
    assert during["lambda_max"] > 0 and during["iterations"] >= 1
    later = stage_sharpness(tmp_path / result["run_id"])
    assert [r["stage"] for r in later] == ["bbq"]
    assert later[0]["lambda_max"] == pytest.approx(during["lambda_max"], rel=1e-6)


def test_user_task_file_in_a_chain(tmp_path):
    """A task file path in --chain trains and evaluates like a registered task, under the task's own name."""
    import json as _json

    rows = [{"post_id": f"p{i}", "text": f"Post number {i} about {c}.", "hateful": i % 2, "community": c}
            for i, c in enumerate(["immigrants", "women"] * 6)]
    (tmp_path / "posts.jsonl").write_text("\n".join(_json.dumps(r) for r in rows) + "\n")
    (tmp_path / "my-task.yaml").write_text(
        'name: my-hate\nkind: safety\nformat: multiple_choice\ndescription: test\n'
        'prompt_template: "Post: {text}\\nQuestion: Is this post hateful?\\nAnswer:"\n'
        'options: ["No", "Yes"]\nmetrics: [acc]\nprimary_metric: acc\nsplit: {eval_fraction: 0.5, seed: 0}\n'
        'data: posts.jsonl\ncolumns: {id: post_id, gold: hateful, group: community}\n')
    task_file = str(tmp_path / "my-task.yaml")
    result = run(RunSpec(chain=(task_file, "bbq"), model="tiny", limit_train={"bbq": 9}, limit_eval={"bbq": 18},
                         train=SMALL["train"], eval_batch_size=8), tmp_path / "runs", progress=False,
                 metric_options={"n_boot": 20, "min_group_size": 2})
    assert result["tasks"] == ["my-hate", "bbq"] and result["stages"] == ["base", "my-hate", "bbq"]
    assert set(result["group_score_matrix"]["my-hate"]) == {"immigrants", "women"}
    assert result["metrics"]["forgetting"]["my-hate"]["value"] is not None
