"""User task files (YAML / TOML) over local JSONL, CSV, Parquet and datasets folders, and every malformed input."""

import gzip
import json
import textwrap

import pytest

from chainforget.errors import ConfigError, DataError
from chainforget.tasks import load_task_file, resolve_task

ROWS = [
    {"uid": f"r{i}", "question": f"Is {i} even?", "choices": ["no", "yes"], "label": int(i % 2 == 0),
     "community": ["north", "south", "east"][i % 3], "region": "r" + str(i % 2)}
    for i in range(30)
]

YAML = """\
name: parity
kind: safety
format: multiple_choice
description: is the number even
prompt_template: "Q: {question}\\nA:"
metrics: [acc, acc_norm]
primary_metric: acc
split: {eval_fraction: 0.4, seed: 3}
license: CC0
data: DATA
columns: {id: uid, options: choices, gold: label, group: community, subgroup: region}
"""


def write_jsonl(path, rows, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def task_file(tmp_path, body=YAML, data="data.jsonl", name="task.yaml"):
    p = tmp_path / name
    p.write_text(body.replace("DATA", data))
    return p


def test_yaml_round_trip_with_relative_data_path(tmp_path):
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "data.jsonl", ROWS)
    task = resolve_task(str(task_file(tmp_path, data="sub/data.jsonl")))
    assert task.name == "parity" and task.spec.kind == "safety" and task.spec.license == "CC0"
    exs = task.examples()
    assert len(exs) == 30
    ex = exs[4]
    assert (ex.id, ex.prompt, ex.options, ex.gold, ex.target, ex.group, ex.subgroup, ex.task) == (
        "parity/r4", "Q: Is 4 even?\nA:", (" no", " yes"), 1, " yes", "south", "r0", "parity")
    train, evaluation = task.train_examples(), task.eval_examples()
    assert len(evaluation) == 12 and len(train) == 18  # 0.4 of each group of 10
    assert not {e.id for e in train} & {e.id for e in evaluation}
    assert {e.group for e in task.eval_examples(3)} == {"north", "south", "east"}
    assert task.list_columns() == {"kind": "safety", "format": "multiple_choice", "train": 18, "eval": 12,
                                   "groups": 3}
    fp = task.fingerprint()
    write_jsonl(tmp_path / "sub" / "data.jsonl", ROWS[:-1])
    assert load_task_file(task_file(tmp_path, data="sub/data.jsonl")).fingerprint() != fp


def test_toml_round_trip_equals_yaml(tmp_path):
    write_jsonl(tmp_path / "data.jsonl.gz", ROWS, gz=True)
    toml = textwrap.dedent("""\
        name = "parity"
        kind = "safety"
        description = "is the number even"
        prompt_template = "Q: {question}\\nA:"
        metrics = ["acc", "acc_norm"]
        license = "CC0"
        data = "data.jsonl.gz"
        [split]
        eval_fraction = 0.4
        seed = 3
        [columns]
        id = "uid"
        options = "choices"
        gold = "label"
        group = "community"
        subgroup = "region"
        """)
    t = load_task_file(task_file(tmp_path, toml, name="task.toml"))
    y = load_task_file(task_file(tmp_path, data="data.jsonl.gz"))
    assert t.spec.primary_metric == "acc"
    assert [(e.id, e.prompt, e.options, e.gold) for e in t.eval_examples()] == \
        [(e.id, e.prompt, e.options, e.gold) for e in y.eval_examples()]


def test_csv_answer_text_fixed_options_and_train_eval_files(tmp_path):
    head = "text,verdict,grp\n"
    (tmp_path / "train.csv").write_text(head + "".join(f"\"s, {i}\",{['bad', 'good'][i % 2]},g{i % 2}\n"
                                                       for i in range(6)))
    (tmp_path / "eval.csv").write_text(head + "x,good,g0\ny,bad,g1\n")
    body = textwrap.dedent("""\
        name: verdicts
        kind: capability
        prompt_template: "{text} ->"
        options: [bad, good]
        data: {train: train.csv, eval: eval.csv}
        columns: {answer: verdict, group: grp}
        """)
    task = load_task_file(task_file(tmp_path, body))
    assert task.spec.split.predefined
    assert [e.gold for e in task.eval_examples()] in ([1, 0], [0, 1])
    assert len(task.train_examples()) == 6 and task.train_examples()[0].options == (" bad", " good")
    assert {e.prompt for e in task.train_examples()} >= {"s, 0 ->"}


def test_parquet_and_datasets_folder_and_generation_format(tmp_path):
    import datasets

    rows = [{"q": f"{i}+{i}=", "a": str(2 * i)} for i in range(8)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "dsdir"))
    body = textwrap.dedent("""\
        name: sums
        kind: capability
        format: generation
        prompt_template: "{q}"
        primary_metric: gold_logprob
        generation: {max_new_tokens: 4, stop: ["\\n"]}
        data: DATA
        columns: {answer: a}
        split: {eval_fraction: 0.25}
        """)
    for data in ("d.parquet", "dsdir"):
        task = load_task_file(task_file(tmp_path, body, data=data))
        ex = {e.id: e for e in task.examples()}["sums/3"]
        assert (ex.prompt, ex.target, ex.gold, ex.group) == ("3+3=", " 6", "6", "all")
        assert [m.name for m in task.spec.metrics] == ["exact_match", "gold_logprob"]
        assert task.spec.generation["max_new_tokens"] == 4
        assert len(task.eval_examples()) == 2


# --- malformed data: DataError naming the file, the line/row or column, and the fix ---------------------------------

def _load(tmp_path, rows=None, raw=None, body=YAML, data="data.jsonl"):
    if raw is not None:
        (tmp_path / data).write_text(raw)
    else:
        write_jsonl(tmp_path / data, rows)
    task = load_task_file(task_file(tmp_path, body, data=data))
    task.train_examples()
    return task


def test_missing_column_names_file_line_and_column(tmp_path):
    rows = [dict(r) for r in ROWS]
    del rows[6]["label"]
    with pytest.raises(DataError) as err:
        _load(tmp_path, rows)
    msg = str(err.value)
    assert "data.jsonl: line 7" in msg and "'label'" in msg and "columns.gold" in msg and "\n" not in msg


def test_wrong_type_names_line_and_column(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[2]["label"] = "yes"
    with pytest.raises(DataError, match=r"data.jsonl: line 3: column 'label' \(columns.gold\) must be an integer"):
        _load(tmp_path, rows)
    rows = [dict(r) for r in ROWS]
    rows[4]["choices"] = "no or yes"
    with pytest.raises(DataError, match=r"line 5: column 'choices' \(columns.options\) must be a list"):
        _load(tmp_path, rows)


def test_label_out_of_range(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[9]["label"] = 2
    with pytest.raises(DataError, match=r"data.jsonl: line 10: label 2 in column 'label' is out of range for 2 "
                                        r"options; use 0..1"):
        _load(tmp_path, rows)


def test_bad_json_line(tmp_path):
    raw = "".join(json.dumps(r) + "\n" for r in ROWS[:4]) + '{"uid": "x", oops}\n'
    with pytest.raises(DataError, match=r"data.jsonl: line 5: not valid JSON"):
        _load(tmp_path, raw=raw)


def test_truncated_gzip(tmp_path):
    write_jsonl(tmp_path / "full.jsonl.gz", ROWS * 20, gz=True)
    blob = (tmp_path / "full.jsonl.gz").read_bytes()
    (tmp_path / "data.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"data.jsonl.gz: line \d+: the compressed file is truncated or corrupt"):
        load_task_file(task_file(tmp_path, data="data.jsonl.gz")).examples()


def test_empty_file_and_empty_split(tmp_path):
    with pytest.raises(DataError, match=r"data.jsonl: the data split is empty"):
        _load(tmp_path, raw="\n")
    body = YAML.replace("split: {eval_fraction: 0.4, seed: 3}", "split: {eval_fraction: 0.4}")
    with pytest.raises(DataError, match=r"the (train|eval) split is empty"):
        _load(tmp_path, ROWS[:1], body=body)  # one example cannot fill both splits


def test_group_with_zero_examples_after_filtering(tmp_path):
    body = YAML + "groups: [north, west]\n"
    with pytest.raises(DataError, match=r"data.jsonl: group 'west' \(listed under groups: in task.yaml\) has no "
                                        r"examples; groups present: east, north, south"):
        _load(tmp_path, ROWS, body=body)
    ok = _load(tmp_path, ROWS, body=YAML + "groups: [north]\n")
    assert {e.group for e in ok.examples()} == {"north"}


def test_csv_missing_column_and_bad_prompt_field(tmp_path):
    body = textwrap.dedent("""\
        name: c
        kind: safety
        prompt_template: "{text} / {missing}"
        options: [" a", " b"]
        data: d.csv
        columns: {gold: label}
        """)
    (tmp_path / "d.csv").write_text("text,label\nhello,0\nbye,1\n")
    with pytest.raises(DataError, match=r"d.csv: line 2: prompt_template uses column 'missing'"):
        load_task_file(task_file(tmp_path, body)).examples()


# --- malformed task files: ConfigError naming the file and key ------------------------------------------------------

def test_task_file_errors(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    with pytest.raises(ConfigError, match=r"task.yaml: unknown key 'promt_template'; did you mean 'prompt_template'"):
        load_task_file(task_file(tmp_path, YAML.replace("prompt_template", "promt_template")))
    with pytest.raises(ConfigError, match=r"task.yaml: invalid YAML at line 2"):
        load_task_file(task_file(tmp_path, "name: x\nkind: a: b\n"))
    with pytest.raises(ConfigError, match=r"kind must be one of safety, capability"):
        load_task_file(task_file(tmp_path, YAML.replace("kind: safety", "kind: fun")))
    with pytest.raises(ConfigError, match=r"unknown metric 'accuracy'; did you mean 'acc'"):
        load_task_file(task_file(tmp_path, YAML.replace("[acc, acc_norm]", "[accuracy]")))
    with pytest.raises(ConfigError, match=r"columns: unknown key 'grup'"):
        load_task_file(task_file(tmp_path, YAML.replace("group: community", "grup: community")))
    with pytest.raises(ConfigError, match=r"invalid TOML"):
        load_task_file(task_file(tmp_path, "name = \n", name="t.toml"))
    with pytest.raises(ConfigError, match=r"not found"):
        resolve_task(str(tmp_path / "nope.yaml"))
    with pytest.raises(DataError, match=r"missing.jsonl: file not found"):
        load_task_file(task_file(tmp_path, data="missing.jsonl")).examples()


def test_yaml_is_loaded_safely(tmp_path):
    body = "!!python/object/apply:os.system ['echo hacked']\n"
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_task_file(task_file(tmp_path, body))


def test_the_example_in_docs_tasks_md_works(tmp_path):
    import pathlib
    import re

    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text()
    blocks = {}
    for kind, text in re.findall(r"```(yaml|jsonl|toml)\n(.*?)```", doc, flags=re.S):
        blocks.setdefault(kind, text)  # the first block of each kind: the plain task file's example
    (tmp_path / "posts.jsonl").write_text(blocks["jsonl"])
    (tmp_path / "my-task.yaml").write_text(blocks["yaml"])
    (tmp_path / "my-task.toml").write_text(blocks["toml"])
    for name in ("my-task.yaml", "my-task.toml"):
        task = resolve_task(str(tmp_path / name))
        assert task.name == "my-hate" and len(task.examples()) == 4
        assert len(task.train_examples()) == 2 and {e.group for e in task.eval_examples()} == {"immigrants", "women"}
        ex = {e.id: e for e in task.examples()}["my-hate/p3"]
        assert (ex.prompt, ex.options, ex.gold) == (
            "Post: People like them should not vote.\nQuestion: Is this post hateful?\nAnswer:", (" No", " Yes"), 1)


def test_the_derived_examples_in_docs_tasks_md_work(tmp_path):
    import pathlib
    import re

    from chainforget.tasks.derived import shipped_data

    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text()
    derived = doc[doc.index("## Derived tasks"):]
    first, raw = re.findall(r"```yaml\n(.*?)```", derived, flags=re.S)
    (tmp_path / "bbq-age.yaml").write_text(first)
    task = load_task_file(tmp_path / "bbq-age.yaml")
    assert (len(task.train_examples()), len(task.eval_examples())) == (1904, 1776)  # the numbers the doc gives
    assert set(task.groups("all")) == {"old", "nonOld"}
    data = shipped_data("chainforget", "data", "bbq", "Religion.jsonl.gz")
    (tmp_path / "raw.yaml").write_text(raw.replace("/path/printed/by/shipped_data/Religion.jsonl.gz", str(data)))
    exs = load_task_file(tmp_path / "raw.yaml").examples()
    assert exs and all(e.meta["context_condition"] == "ambig" for e in exs)
