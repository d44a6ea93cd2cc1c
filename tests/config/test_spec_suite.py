"""Run specs, run ids, --set parsing, suites and shards: everything before any model is loaded."""

import pytest

from chainforget.config.spec import RunSpec, parse_set_options
from chainforget.config.suite import expand_suite, load_suite_file, parse_shard, shard_specs
from chainforget.errors import ConfigError


def test_run_id_is_stable_and_config_sensitive():
    a = RunSpec(chain=("bbq", "gsm8k"), strategy="replay", strategy_params={"fraction": 0.05})
    b = RunSpec(chain=["bbq", "gsm8k"], strategy="replay", strategy_params={"fraction": 0.05})
    assert a.run_id() == b.run_id()
    assert a.run_id().startswith("bbq-gsm8k_replay_s0_")
    assert RunSpec(chain=("gsm8k", "bbq"), strategy="replay").run_id() != a.run_id()
    assert RunSpec(chain=("bbq", "gsm8k"), strategy="replay", seed=1,
                   strategy_params={"fraction": 0.05}).run_id() != a.run_id()


@pytest.mark.parametrize("kwargs, message", [
    ({"chain": ()}, "at least one task"),
    ({"chain": ("bbq", "bbq")}, "appears twice"),
    ({"chain": ("bbq",), "limit_train": 0}, "positive integer"),
    ({"chain": ("bbq",), "limit_eval": {"gsm8k": 3}}, "not in this run"),
    ({"chain": ("bbq",), "seed": -1}, r"seed must be an integer in \[0, 4294967295\], got -1"),
])
def test_bad_specs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RunSpec(**kwargs)


def test_per_task_limits():
    spec = RunSpec(chain=("bbq", "gsm8k"), limit_eval={"bbq": 180, "default": 24})
    assert spec.limit_eval_for("bbq") == 180 and spec.limit_eval_for("gsm8k") == 24


def test_set_options():
    strategy, train = parse_set_options(["replay.fraction=0.05", "train.weight_decay=0.01"])
    assert strategy == {"replay": {"fraction": "0.05"}} and train == {"weight_decay": "0.01"}
    for bad in ["fraction=0.05", "replay.fraction", "replay.fraction="]:
        with pytest.raises(ConfigError, match="--set expects"):
            parse_set_options([bad])


def test_unknown_spec_key_did_you_mean():
    with pytest.raises(ConfigError, match="unknown run spec key 'stratgy'; did you mean 'strategy'"):
        RunSpec.from_dict({"chain": "bbq", "stratgy": "naive"})


def test_suite_expansion_grid_and_shards():
    suite = {"model": "tiny", "chains": [["bbq", "gsm8k"], "gsm8k,bbq"],
             "strategies": ["naive", {"replay": {"fraction": 0.1}}], "seeds": [0, 1],
             "finetune": ["full", "lora"]}
    specs = expand_suite(suite)
    assert len(specs) == 2 * 2 * 2 * 2
    assert {s.chain for s in specs} == {("bbq", "gsm8k"), ("gsm8k", "bbq")}
    assert {s.train["finetune"] for s in specs} == {"full", "lora"}
    assert [s for s in specs if s.strategy == "replay"][0].strategy_params == {"fraction": 0.1}
    halves = shard_specs(specs, parse_shard("1/2")) + shard_specs(specs, parse_shard("2/2"))
    assert sorted(s.run_id() for s in halves) == sorted(s.run_id() for s in specs)
    assert not set(s.run_id() for s in shard_specs(specs, (1, 2))) & set(s.run_id() for s in shard_specs(specs, (2, 2)))
    for bad in ["3/2", "0/2", "x", "1/0"]:
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_suite_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown suite key 'seed'; did you mean 'seeds'"):
        expand_suite({"chains": ["bbq"], "strategies": ["naive"], "seed": 1})
    with pytest.raises(ConfigError, match="needs at least"):
        expand_suite({"chains": ["bbq"]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("chains: [[bbq, gsm8k]\nstrategies: [naive]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml at line \d+, column \d+"):
        load_suite_file(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        load_suite_file(listy)
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize("kwargs, message", [
    ({"train": 5}, "train must be a mapping"),
    ({"strategy_params": 5}, "strategy_params must be a mapping"),
    ({"task_options": {"bbq": 5}}, "task_options.bbq must be a mapping"),
    ({"strategy": ["ewc"]}, "strategy must be a name"),
    ({"model": 5}, "model must be a name"),
    ({"sharpness": "maybe"}, "sharpness must be true or false"),
    ({"eval_batch_size": True}, "eval_batch_size must be a positive integer"),
    ({"train": {"seed": 3}}, "seed belongs at the top level"),
])
def test_wrongly_typed_spec_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RunSpec(chain=("bbq",), **kwargs)


def test_suite_rejects_duplicate_yaml_keys_and_bad_shapes(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("chains: [[bbq]]\nstrategies: [naive]\nseeds: [0]\nseeds: [1]\n")
    with pytest.raises(ConfigError, match=r"dup.yaml at line 4, column 1: duplicate key 'seeds'"):
        load_suite_file(dup)
    with pytest.raises(ConfigError, match="suite key 'train' must be a mapping"):
        expand_suite({"chains": ["bbq"], "strategies": ["naive"], "train": 5})
    code = tmp_path / "code.yaml"
    code.write_text("chains: !!python/object/apply:os.system ['echo hi']\nstrategies: [naive]\n")
    with pytest.raises(ConfigError, match="code.yaml"):
        load_suite_file(code)


def test_run_config_shapes(tmp_path):
    from chainforget.commands.runs import build_run_spec

    cfg = tmp_path / "run.yaml"
    cfg.write_text("chain: bbq\nmetric_options: 5\n")
    with pytest.raises(ConfigError, match="metric_options must be a mapping"):
        build_run_spec(config_path=str(cfg))


def test_every_run_setting_is_declared_once_and_reaches_every_entry_point(tmp_path):
    """RunSpec's fields are the run-config keys and (grid axes aside) the suite keys; a suite passes a setting as
    given to every run, and a run config file accepts it, with no list to keep in step."""
    from chainforget.commands.runs import build_run_spec
    from chainforget.config.spec import RUN_CONFIG_KEYS, run_settings
    from chainforget.config.suite import GRID_AXES, SUITE_KEYS

    assert set(run_settings()) | {"metric_options"} == RUN_CONFIG_KEYS
    assert {GRID_AXES.get(name, name) for name in run_settings()} <= SUITE_KEYS
    (spec,) = expand_suite({"chains": [["bbq"]], "strategies": ["naive"], "chat_template": True, "eval_batch_size": 4,
                            "dtype": "float32", "sharpness": True})
    assert (spec.chat_template, spec.eval_batch_size, spec.dtype, spec.sharpness) == (True, 4, "float32", True)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("chain: bbq\nchat_template: true\neval_batch_size: 4\n")
    built, _ = build_run_spec(config_path=str(cfg), eval_batch_size=2)  # a flag overrides the file
    assert built.chat_template and built.eval_batch_size == 2
    # a later setting stays out of the run id at its old value and changes it when set
    assert RunSpec(chain=("bbq",), chat_template=False).run_id() == RunSpec(chain=("bbq",)).run_id()
    assert RunSpec(chain=("bbq",), chat_template=True).run_id() != RunSpec(chain=("bbq",)).run_id()


def test_training_flags_are_built_from_train_config():
    from chainforget.cli import run_cmd
    from chainforget.engine.training import fields_help

    options = {p.name: p for p in run_cmd.params}
    for setting in fields_help():
        if setting["name"] == "seed":
            continue  # the run's --seed
        option = options[setting["name"]]
        assert setting["flag"] in option.opts and option.default is None  # None: the engine's default applies
        assert setting["help"][1:] in option.help
