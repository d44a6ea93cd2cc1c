"""`chainforget power` end to end on pilot runs written through the store (three seeds of naive and replay in both
orders, records drawn from planted accuracies): --help, the text and JSON plans, the suite it writes (which the
leaderboard's suite reader expands), the dry-run cost with the tiny model and the GPU cost marked as assumed, and a
one-line error with exit status 2 for each bad input. Also: the quick-seeds preset reuses the quick preset's runs."""

import json

import pytest
import yaml
from report.test_report_factory import make_run
from run_helpers import cli_invoke

from chainforget.config.suite import expand_suite, resolve_suite
from chainforget.metrics.compute import compute_all
from chainforget.store.results import write_records, write_result

TINY_SUITE = {"model": "tiny", "chains": [["bbq", "gsm8k"], ["gsm8k", "bbq"]], "strategies": ["naive", "replay"],
              "seeds": [0], "limit_train": {"bbq": 9, "gsm8k": 4}, "limit_eval": {"bbq": 27, "gsm8k": 4},
              "task_options": {"gsm8k": {"primary_metric": "gold_logprob"}},
              "train": {"batch_size": 4, "micro_batch_size": 4, "max_length": 128}, "eval_batch_size": 8}


def _acc(chain, forget):
    def acc(task, step, group):
        a = chain.index(task) + 1
        if step < a:
            return 0.3
        return 0.8 if step == a else 0.8 - forget[task] - (0.1 if group == "Age" and task == "bbq" else 0.0)
    return acc


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    root = tmp_path_factory.mktemp("power")
    for strategy, forget in (("naive", {"bbq": 0.3, "gsm8k": 0.1}), ("replay", {"bbq": 0.2, "gsm8k": 0.1})):
        for chain in (("bbq", "gsm8k"), ("gsm8k", "bbq")):
            for seed in (0, 1, 2):
                run = make_run(strategy, chain, seed, _acc(chain, forget), n_per_group=30)
                result, rid = run["result"], run["result"]["run_id"]
                for step in range(len(result["stages"])):
                    write_records(root / "runs" / rid, step, [r for r in run["records"] if r["step"] == step])
                result.update(compute_all(run["records"], result["task_info"], result["stages"],
                                          eval_tasks=result["eval_tasks"], n_boot=50, min_group_size=10))
                write_result(root / "runs" / rid, {**result, "records": "records/"})
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_SUITE))
    return root


def cli(*args):
    result = cli_invoke(*args)
    return result.exit_code, result.output


def test_help_names_the_options():
    code, out = cli("power", "--help")
    assert code == 0
    for option in ("--effect", "--power", "--alpha", "--seeds", "--write-suite", "--format", "ASSUMED"):
        assert option in out


def test_text_plan_answers_the_three_questions(pilot):
    code, out = cli("power", pilot / "runs", "--no-cost", "--min-group-size", "10", "--max-seeds", "5",
                    "--effect", "spread=0.1", "mitigation=0.1", "asymmetry=1")  # pairs after the first: effects
    assert code == 0, out
    for title in ("(1) order asymmetry", "(2) group dependence", "(3) mitigation", "recommended study:"):
        assert title in out
    assert "effect 0.1" in out and "effect 1" in out and "power at this design:" in out


def test_json_plan_has_stable_numeric_keys_and_the_suite_runs(pilot):
    suite_file = pilot / "planned.yaml"
    code, out = cli("power", pilot / "runs", "--suite", pilot / "tiny.yaml", "--min-group-size", "10",
                    "--max-seeds", "3", "--effect", "spread=0.5", "--effect", "mitigation=0.5", "--effect",
                    "asymmetry=5", "--write-suite", suite_file, "--format", "json")  # large effects: a small study
    assert code == 0, out
    plan = json.loads(out)
    assert plan["schema"] == "chainforget.power/1" and plan["target"]["power"] == 0.8
    assert set(plan["questions"]) == {"asymmetry", "spread", "mitigation"}
    mitigation = plan["questions"]["mitigation"]
    assert [row["seeds"] for row in mitigation["needed"]] == [2, 3]
    assert isinstance(mitigation["components"]["residual"], float) and mitigation["components"]["pilot_seeds"] == 3
    rec = plan["recommendation"]
    assert isinstance(rec["seeds"], int) and all(isinstance(n, int) for n in rec["examples_per_group"].values())
    assert all(0.0 <= p <= 1.0 for p in rec["power"].values())
    cost = plan["cost"]  # the dry run of the planned study with the tiny model
    assert cost["cpu_seconds"] > 0 and cost["train_tokens"] > 0 and cost["score_tokens"] > 0
    assert cost["gpu"]["assumed"] is True and cost["gpu"]["seconds"] > 0
    written = yaml.safe_load(suite_file.read_text())
    assert written["seeds"] == list(range(rec["seeds"])) and written["model"] == "tiny"
    specs = expand_suite(resolve_suite(str(suite_file)))
    assert len(specs) == 4 * rec["seeds"]
    bbq = rec["examples_per_group"]["bbq"]
    assert all(s.limit_eval_for("bbq") == 3 * bbq for s in specs)  # three groups in the pilot


@pytest.mark.parametrize("args, message", [
    (["--effect", "spread=abc"], "is not a number"),
    (["--effect", "colour=0.1"], "give QUESTION=SIZE"),
    (["--effect", "spread=-0.1"], "positive number"),
    (["--seeds", "1"], "--seeds must be between 2 and 100"),
    (["--power", "1.5"], "--power must be between"),
    (["--preset", "nope"], "nope"),
    (["--write-suite", "/nonexistent-folder/planned.yaml"], "its folder does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(pilot, args, message):
    code, out = cli("power", pilot / "runs", "--no-cost", *args)
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out


def test_missing_pilot_folder_is_one_line(tmp_path):
    code, out = cli("power", tmp_path / "nothing", "--no-cost")
    assert code == 2 and out.startswith("error: ") and len(out.strip().splitlines()) == 1, out


def test_quick_seeds_reuses_the_quick_presets_runs():
    quick = {s.run_id() for s in expand_suite(resolve_suite("quick"))}
    seeds = expand_suite(resolve_suite("quick-seeds"))
    first = {s.run_id() for s in seeds if s.seed == 0}
    assert sorted({s.seed for s in seeds}) == [0, 1, 2] and len(seeds) == 3 * len(first)
    assert first <= quick and len(first) >= 4  # naive and replay in both orders at least
