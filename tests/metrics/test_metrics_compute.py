"""compute_all: JSON-clean and deterministic; recompute_run from disk equals the in-run values; plugin metrics."""

import gzip
import json
import random
import sys
import textwrap

import pytest
from metrics_fixtures import info
from test_metrics_groups import random_records

from chainforget.errors import ConfigError, DataError, PluginError
from chainforget.metrics.compute import compute_all, recompute_run
from chainforget.plugins import manager, registries

STAGES = ["base", "A", "B"]
INFO = {**info({"A": 1, "B": 2}), "P": {"kind": "capability", "primary_metric": "acc", "higher_is_better": True,
                                        "trained_at": None}}


def records():
    recs = random_records(40, {"x": 0.4, "y": 0.8, "z": 0.6}, seed=9)
    recs += [{**r, "task": "P", "id": "P" + r["id"][1:]} for r in random_records(10, {"q": 0.5}, seed=4)
             if r["task"] == "A"]
    return recs


def test_output_is_plain_json_and_deterministic():
    recs = records()
    first = compute_all(recs, INFO, STAGES, n_boot=300)
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    second = compute_all(shuffled, INFO, STAGES, n_boot=300)
    text = json.dumps(first, sort_keys=True, allow_nan=False)
    assert text == json.dumps(second, sort_keys=True, allow_nan=False)
    assert json.loads(text) == first  # only plain JSON types: the round trip changes nothing
    assert set(first) == {"score_matrix", "group_score_matrix", "group_sizes", "metrics"}
    assert set(first["metrics"]) == set(registries("metrics").names())
    f = first["metrics"]["forgetting"]["A"]
    assert type(f["value"]) is float and type(f["ci_low"]) is float and type(f["n"]) is int
    # another seed moves the intervals but not the point estimates
    other = compute_all(recs, INFO, STAGES, n_boot=300, seed=1)["metrics"]["forgetting"]["A"]
    assert other["value"] == f["value"] and (other["ci_low"], other["ci_high"]) != (f["ci_low"], f["ci_high"])


def write_run(run_dir, recs, **extra):
    """A complete run as the runner leaves it (records, then result.json and its DONE marker, through the store)."""
    from chainforget.store.results import write_records, write_result

    for step in range(len(STAGES)):
        write_records(run_dir, step, [r for r in recs if r["step"] == step])
    result = {"schema_version": 1, "run_id": run_dir.name, "spec": {"chain": ["A", "B"]}, "tasks": ["A", "B"],
              "stages": STAGES, "eval_tasks": ["A", "B", "P"], "task_info": INFO, "records": "records/",
              "metrics": {}, **compute_all(recs, INFO, STAGES, eval_tasks=["A", "B", "P"], metrics=[]), **extra}
    write_result(run_dir, result)


def test_recompute_run_equals_compute_all_exactly(tmp_path):
    recs = records()
    options = {"min_group_size": 30, "n_boot": 250, "seed": 3}
    in_run = compute_all(recs, INFO, STAGES, eval_tasks=["A", "B", "P"], **options)
    write_run(tmp_path / "run", recs, metric_options=options)
    from_disk = recompute_run(tmp_path / "run")
    assert json.dumps(from_disk, sort_keys=True) == json.dumps(in_run, sort_keys=True)
    # the stored options were used: the default (1000 resamples, seed 0) gives other intervals
    assert from_disk != compute_all(recs, INFO, STAGES, eval_tasks=["A", "B", "P"])


def test_recompute_run_reads_through_the_store_with_its_checks(tmp_path):
    """recompute_run is the store's reader plus compute_all: an incomplete run, a damaged records file and a stored
    n_boot out of range are each one line."""
    with pytest.raises(DataError, match="is not a run directory"):
        recompute_run(tmp_path / "nope")
    (tmp_path / "half" / "records").mkdir(parents=True)
    with pytest.raises(DataError, match="incomplete run: rerun the same command"):
        recompute_run(tmp_path / "half")
    write_run(tmp_path / "run", records())
    path = tmp_path / "run" / "records" / "step-1.jsonl.gz"
    path.write_bytes(gzip.compress(b"not json\n"))
    with pytest.raises(DataError, match="does not match its completion marker"):
        recompute_run(tmp_path / "run")
    write_run(tmp_path / "big", records(), metric_options={"n_boot": 10**12})
    with pytest.raises(ConfigError, match="n_boot must be an integer in"):
        recompute_run(tmp_path / "big")


def test_list_columns_show_direction_and_range():
    spec = registries("metrics").get("forgetting")
    assert spec.list_columns() == {"higher is better": "no", "range": "[-inf, inf]", "unit": "task"}
    assert registries("metrics").get("average_score").list_columns(verbose=True)["scope"] == "run"
    assert registries("metrics").get("worst_group").list_columns()["higher is better"] == "-"


@pytest.fixture()
def metric_plugin(tmp_path, monkeypatch):
    (tmp_path / "cfplug_metric.py").write_text(textwrap.dedent("""
        import numpy as np

        from chainforget.metrics.base import MetricSpec
        from chainforget.plugins import hookimpl

        def final_scores(inputs, options):
            return {t: {"value": np.float64(inputs.score(t, inputs.last)), "n": np.int64(3), "nan": float("nan"),
                        "row": np.array([1.5, np.inf])} for t in inputs.eval_tasks}

        def broken(inputs, options):
            raise ZeroDivisionError("oops")

        @hookimpl
        def chainforget_register_metrics(registry):
            registry.register("final_score", MetricSpec("final_score", "last row", True, 0.0, 1.0, "task",
                                                        final_scores))
            registry.register("broken_metric", MetricSpec("broken_metric", "fails", True, 0.0, 1.0, "run", broken))
    """))
    info_dir = tmp_path / "cf_metric_plugin-0.1.dist-info"
    info_dir.mkdir()
    (info_dir / "METADATA").write_text("Metadata-Version: 2.1\nName: cf-metric-plugin\nVersion: 0.1\n")
    (info_dir / "entry_points.txt").write_text("[chainforget]\ncfplug_metric = cfplug_metric\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager.reset()
    yield
    manager.reset()
    sys.modules.pop("cfplug_metric", None)


def test_third_party_metric_plugins_are_computed(metric_plugin):
    recs = records()
    out = compute_all(recs, INFO, STAGES, n_boot=50, metrics=["final_score", "forgetting"])
    entry = out["metrics"]["final_score"]["A"]
    assert entry == {"value": out["score_matrix"][2][0], "n": 3, "nan": None, "row": [1.5, None]}
    assert type(entry["value"]) is float and type(entry["n"]) is int  # numpy values become plain JSON values
    with pytest.raises(PluginError, match="broken_metric.*cf-metric-plugin 0.1.*ZeroDivisionError"):
        compute_all(recs, INFO, STAGES, n_boot=50)
