"""The example plugin end to end, found through a real entry point: its derived task (bbq-age) and its weight-editing
strategy (wise-ft) in a mixed suite with suite-level task_options; wise-ft gives bit-identical records and metrics
whether its stages were trained fresh, reused from another run's prefix or restored by --resume."""

import json
import sys
from pathlib import Path

import pytest

from chainforget.benchmark.runner import run
from chainforget.benchmark.suite_runner import collect_results, run_suite
from chainforget.config.suite import expand_suite
from chainforget.plugins import manager
from chainforget.store import results as store

SRC = Path(__file__).resolve().parents[2] / "examples" / "chainforget-plugin-example" / "src"
METRICS = {"n_boot": 20, "min_group_size": 2}
SUITE = {
    "model": "tiny",
    # bbq-age (derived) is in two chains of three: its suite task_options apply where it is. gsm8k is evaluated
    # everywhere, so the two-task chain's stages have the three-task chain's evaluation set (part of a prefix key)
    "chains": [["bbq-age", "unit-convert"], ["bbq-age", "unit-convert", "gsm8k"], ["unit-convert", "gsm8k"]],
    "eval_tasks": ["gsm8k"],
    "strategies": ["naive", {"wise-ft": {"alpha": 0.5}}],
    "task_options": {"bbq-age": {"primary_metric": "acc_norm"}, "gsm8k": {"primary_metric": "gold_logprob"}},
    "limit_train": {"bbq-age": 8, "unit-convert": 8, "gsm8k": 4},
    "limit_eval": {"default": 8, "gsm8k": 4},
    "train": {"batch_size": 4, "micro_batch_size": 4, "max_length": 192, "learning_rate": 1e-3},
    "eval_batch_size": 8,
    "metric_options": METRICS,
}
LONG = ("bbq-age", "unit-convert", "gsm8k")


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory):
    """The example's entry point in a dist-info on sys.path (what pip install writes), its source importable."""
    site = tmp_path_factory.mktemp("site")
    info = site / "chainforget_plugin_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chainforget-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[chainforget]\nplugin-example = chainforget_plugin_example.plugin\n")
    sys.path[:0] = [str(site), str(SRC)]
    manager.reset()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        sys.path.remove(str(SRC))
        manager.reset()
        for name in [m for m in sys.modules if m.startswith("chainforget_plugin_example")]:
            del sys.modules[name]


def long_wise_ft():
    return next(s for s in expand_suite(SUITE) if s.chain == LONG and s.strategy == "wise-ft")


def same(a, b):
    for key in ("score_matrix", "group_score_matrix", "metrics", "stages", "task_info"):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key


def same_records(dir_a, dir_b):
    ra, rb = store.load_records(dir_a), store.load_records(dir_b)
    assert ra and json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)


def test_mixed_suite_and_wise_ft_fresh_equals_reused_equals_resumed(example_installed, tmp_path, monkeypatch):
    entry = manager.registries("strategies").entry("wise-ft")
    assert entry.source == "chainforget-plugin-example 0.1.0"
    assert manager.registries("tasks").entry("bbq-age").source == "chainforget-plugin-example 0.1.0"

    suite_dir = tmp_path / "suite"
    run_suite(SUITE, suite_dir, progress=False)
    found, missing, *_ = collect_results(SUITE, suite_dir)
    assert missing == [] and len(found) == 6
    by = {(tuple(r["tasks"]), r["spec"]["strategy"]): r for r in found}
    # suite task_options reached the chains holding the task, and only those
    assert by[("bbq-age", "unit-convert"), "naive"]["task_info"]["bbq-age"]["primary_metric"] == "acc_norm"
    assert by[("unit-convert", "gsm8k"), "wise-ft"]["spec"]["task_options"] == {
        "gsm8k": {"primary_metric": "gold_logprob"}}
    assert "bbq-age" not in by[("unit-convert", "gsm8k"), "naive"]["spec"]["limit_train"]
    assert set(by[("bbq-age", "unit-convert"), "naive"]["group_score_matrix"]["bbq-age"]) == {"old", "nonOld"}
    reused = by[LONG, "wise-ft"]
    # step 1 (naive-like) and step 2 (interpolated) came from the two-task wise-ft run's prefix; step 3 trained
    assert set(reused["timings"]["reused"]) == {"0", "1", "2"} and set(reused["timings"]["train_seconds"]) == {"3"}
    assert reused["score_matrix"][:3] == by[("bbq-age", "unit-convert"), "wise-ft"]["score_matrix"]
    assert reused["score_matrix"] != by[LONG, "naive"]["score_matrix"]  # the interpolation changed something
    assert "safety_retention" in reused["metrics"]

    fresh = run(long_wise_ft(), tmp_path / "fresh", progress=False, metric_options=METRICS)
    assert set(fresh["timings"]["train_seconds"]) == {"1", "2", "3"}

    monkeypatch.setenv("CHAINFORGET_ENOSPC_AT", "train/3")  # a full disk when step 3 starts: steps 1-2 are saved
    with pytest.raises(OSError):
        run(long_wise_ft(), tmp_path / "resumed", progress=False, metric_options=METRICS)
    monkeypatch.delenv("CHAINFORGET_ENOSPC_AT")
    resumed = run(long_wise_ft(), tmp_path / "resumed", resume=True, progress=False, metric_options=METRICS)
    assert set(resumed["timings"]["reused"]) >= {"1", "2"} and set(resumed["timings"]["train_seconds"]) == {"3"}

    run_id = fresh["run_id"]
    assert reused["run_id"] == resumed["run_id"] == run_id
    same(fresh, reused)
    same(fresh, resumed)
    same_records(tmp_path / "fresh" / run_id, suite_dir / run_id)
    same_records(tmp_path / "fresh" / run_id, tmp_path / "resumed" / run_id)
