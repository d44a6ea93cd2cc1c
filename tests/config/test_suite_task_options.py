"""Mixed suites: suite-level task_options (and per-task limits) apply to the chains that hold the task; errors name
the chain. No training here: expansion and resolution only."""

import subprocess
import sys

import pytest
import yaml

from chainforget.benchmark.plan import resolve_run
from chainforget.benchmark.suite_runner import suite_specs
from chainforget.config.spec import RunSpec
from chainforget.config.suite import expand_suite
from chainforget.errors import ConfigError

MIXED = {"model": "tiny", "chains": [["bbq", "gsm8k"], ["bbq", "toxigen"]], "strategies": ["naive", "ewc"],
         "task_options": {"gsm8k": {"primary_metric": "gold_logprob"}},
         "limit_train": {"bbq": 9, "gsm8k": 4, "toxigen": 6, "default": 3}, "limit_eval": 8}


def by_chain(specs):
    return {spec.chain: spec for spec in specs}


def test_options_and_limits_go_to_the_chains_holding_the_task():
    specs = expand_suite(MIXED)
    assert len(specs) == 4
    chains = by_chain(specs)
    assert chains[("bbq", "gsm8k")].task_options == {"gsm8k": {"primary_metric": "gold_logprob"}}
    assert chains[("bbq", "toxigen")].task_options == {}
    assert chains[("bbq", "gsm8k")].limit_train == {"bbq": 9, "default": 3, "gsm8k": 4}
    assert chains[("bbq", "toxigen")].limit_train == {"bbq": 9, "default": 3, "toxigen": 6}
    resolved = [resolve_run(s) for s in specs]  # every run resolves: nothing aborts the suite
    gsm8k = next(r for r in resolved if "gsm8k" in r.tasks).tasks["gsm8k"]
    assert gsm8k.spec.primary_metric == "gold_logprob"
    # the run ids are those of the same runs given alone
    alone = RunSpec(chain=("bbq", "toxigen"), strategy="naive", model="tiny", limit_train={"bbq": 9, "toxigen": 6,
                    "default": 3}, limit_eval=8)
    assert alone.run_id() in {s.run_id() for s in specs}


def test_eval_tasks_count_as_held_by_every_chain():
    suite = {**MIXED, "eval_tasks": ["boolq"], "task_options": {"boolq": {"primary_metric": "acc_norm"}}}
    assert all(s.task_options == {"boolq": {"primary_metric": "acc_norm"}} for s in expand_suite(suite))


def test_a_name_no_chain_holds_is_one_line_error_listing_the_chains():
    suite = {**MIXED, "task_options": {"gsm8": {"primary_metric": "gold_logprob"}}}
    with pytest.raises(ConfigError) as err:
        expand_suite(suite)
    assert str(err.value) == ("suite task_options names 'gsm8', which no chain contains and eval_tasks lacks; did you "
                              "mean 'gsm8k'? chains: bbq,gsm8k | bbq,toxigen")
    with pytest.raises(ConfigError, match="suite limit_train names 'boolq', which no chain contains"):
        expand_suite({**MIXED, "limit_train": {"boolq": 3}})


def test_a_bad_option_names_the_chain():
    suite = {**MIXED, "task_options": {"toxigen": {"primary_metric": "exact_match"}}}
    specs = expand_suite(suite)
    with pytest.raises(ConfigError) as err:
        for spec in specs:
            resolve_run(spec)
    assert str(err.value).startswith("task_options.toxigen (chain bbq,toxigen): task 'toxigen' has no metric "
                                     "'exact_match'")


def test_single_run_error_names_the_chain():
    spec = RunSpec(chain=("bbq", "toxigen"), model="tiny", task_options={"gsm8k": {"primary_metric": "acc"}})
    with pytest.raises(ConfigError, match="^task_options names 'gsm8k', which is neither in the chain bbq,toxigen "
                                          "nor in eval_tasks; use one of the run's task names$"):
        resolve_run(spec)


def test_task_file_entries_take_options_by_file_or_task_name(tmp_path):
    derived = tmp_path / "bbq-age.yaml"
    derived.write_text("name: bbq-age\nbase: bbq\nfilter: {group: Age}\ngroup_from: subgroup\n")
    for key in ("bbq-age", str(derived)):
        suite = {"model": "tiny", "chains": [[str(derived), "gsm8k"], ["gsm8k", "toxigen"]], "strategies": ["naive"],
                 "task_options": {key: {"primary_metric": "acc_norm"}}}
        specs = by_chain(suite_specs(suite))  # the benchmark names task files by their task
        assert specs[("gsm8k", "toxigen")].task_options == {}
        run = resolve_run(specs[(str(derived), "gsm8k")])
        assert run.spec.chain == ("bbq-age", "gsm8k") and run.tasks["bbq-age"].spec.primary_metric == "acc_norm"


def test_cli_mixed_suite_error_is_one_line(tmp_path):
    suite = tmp_path / "mixed.yaml"
    suite.write_text(yaml.safe_dump({**MIXED, "task_options": {"gsm8k": {"primary_metric": "gold_logprb"}}}))
    out = subprocess.run([sys.executable, "-m", "chainforget", "leaderboard", "--suite", str(suite), "--out",
                          str(tmp_path / "runs")], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: task_options.gsm8k (chain bbq,gsm8k): ") and "did you mean 'gold_logprob'?" in line


def test_docs_suites_md_examples_and_messages_are_real(tmp_path, monkeypatch):
    """Every YAML block of docs/suites.md expands and resolves; the error lines it shows are the real ones."""
    import re
    from pathlib import Path

    from chainforget.plugins import manager

    root = Path(__file__).resolve().parents[2]
    info = tmp_path / "chainforget_plugin_example-0.1.0.dist-info"  # the example plugin, as pip would install it
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chainforget-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[chainforget]\nplugin-example = chainforget_plugin_example.plugin\n")
    monkeypatch.syspath_prepend(str(root / "examples" / "chainforget-plugin-example" / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))
    manager.reset()
    try:
        text = (root / "docs" / "suites.md").read_text()
        blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
        assert len(blocks) == 3
        for block in blocks:
            specs = suite_specs(block)
            for spec in specs[:: max(1, len(specs) // 4)]:
                resolve_run(spec)
        shown = re.findall(r"^error: (.*)$", text, re.M)
        got = []
        for options in ({"gsm8": {}}, {"gsm8k": {"primary_metric": "gold_logprb"}}):
            with pytest.raises(ConfigError) as err:
                for spec in suite_specs({**blocks[1], "task_options": options}):
                    resolve_run(spec)
            got.append(str(err.value))
        assert shown == got
    finally:
        manager.reset()
        for name in [m for m in sys.modules if m.startswith("chainforget_plugin_example")]:
            del sys.modules[name]
