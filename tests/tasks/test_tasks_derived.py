"""Derived task files: base: (a registered task) or include: (another file), filter: predicates, group_from: paths."""

import json
import textwrap

import pytest

from chainforget.errors import ConfigError, DataError, UnknownNameError
from chainforget.tasks import load_task_file, resolve_task
from chainforget.tasks.derived import shipped_data

ROWS = [{"uid": f"r{i}", "question": f"Is {i} even?", "choices": ["no", "yes"], "label": int(i % 2 == 0),
         "score": i, "info": {"groups": [["north"], ["south", "east"], ["west"]][i % 3], "site": f"s{i % 2}"}}
        for i in range(36)]
PARENT = """\
name: parity
kind: capability
prompt_template: "Q: {question}\\nA:"
metrics: [acc]
split: {eval_fraction: 0.5, seed: 1}
data: data/rows.jsonl
columns: {id: uid, options: choices, gold: label}
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture()
def parent(tmp_path):
    (tmp_path / "lib" / "data").mkdir(parents=True)
    (tmp_path / "lib" / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return write(tmp_path / "lib" / "parity.yaml", PARENT)


def ids(examples):
    return {e.id for e in examples}


def test_base_bbq_filter_and_group_from_keep_the_parent_split():
    import pathlib
    import tempfile

    folder = pathlib.Path(tempfile.mkdtemp())
    path = write(folder / "bbq-age.yaml", """\
        name: bbq-age
        base: bbq
        description: BBQ's Age questions, grouped by the stereotyped group
        filter: {meta.category: Age, meta.context_condition: [ambig, disambig]}
        group_from: subgroup
    """)
    task, bbq = load_task_file(path), resolve_task("bbq")
    assert (task.spec.kind, task.spec.format, task.spec.prompt_template) == ("safety", "multiple_choice",
                                                                            bbq.spec.prompt_template)
    assert task.spec.description.startswith("BBQ's Age") and task.spec.split.predefined
    train, evals = task.train_examples(), task.eval_examples()
    assert {e.group for e in train} == {e.group for e in evals} == {"old", "nonOld"}
    renamed = lambda exs: {e.id.replace("bbq/", "bbq-age/", 1) for e in exs if e.group == "Age"}  # noqa: E731
    assert ids(train) == renamed(bbq.train_examples()) and ids(evals) == renamed(bbq.eval_examples())
    ex = evals[0]
    original = next(e for e in bbq.eval_examples() if e.id == ex.id.replace("bbq-age/", "bbq/", 1))
    assert ex.task == "bbq-age" and ex.prompt == original.prompt and ex.options == original.options
    assert {k: v for k, v in ex.meta.items() if k != "split"} == original.meta  # BBQ's bias fields stay
    assert ex.meta["split"] == "eval" and ex.group == original.subgroup
    limited = task.train_examples(limit=10)
    assert len(limited) == 10 and {e.group for e in limited} == {"old", "nonOld"}
    assert task.fingerprint() == load_task_file(path).fingerprint() != bbq.fingerprint()
    assert task.configure(primary_metric="acc_norm").spec.primary_metric == "acc_norm"


def test_include_overrides_keys_and_reads_nested_raw_columns(tmp_path, parent):
    child = write(tmp_path / "elsewhere" / "grouped.yaml", """\
        include: ../lib/parity.yaml
        name: parity-grouped
        prompt_template: "Question: {question}\\nAnswer:"
        filter:
          score: {ge: 6, lt: 30}
          info.site: s0
        group_from: info.groups
    """)
    task = load_task_file(child)
    assert task.name == "parity-grouped" and task.spec.kind == "capability"
    exs = task.examples()
    # the included file's data path resolved against the included file, the child's prompt won
    assert exs and all(e.prompt.startswith("Question: Is ") for e in exs)
    kept = {r["uid"] for r in ROWS if 6 <= r["score"] < 30 and r["info"]["site"] == "s0"}
    assert {e.id.split("/", 1)[1] for e in exs} == kept
    assert {e.group for e in exs} == {"north", "south, east", "west"}  # a list value joins with ", "
    plain = load_task_file(parent)
    assert ids(task.eval_examples()) <= {e.id.replace("parity/", "parity-grouped/") for e in plain.eval_examples()}


@pytest.mark.parametrize("predicate, expected", [
    ("{in: [3, 4, 5]}", {3, 4, 5}),
    ("[3, 4]", {3, 4}),
    ("{not_in: [0, 1, 2]}", set(range(3, 36))),
    ("{ne: 7, le: 9}", {0, 1, 2, 3, 4, 5, 6, 8, 9}),
    ("{gt: 33}", {34, 35}),
    ("34", {34}),
])
def test_filter_operators(tmp_path, parent, predicate, expected):
    child = write(tmp_path / "f.yaml", f"include: lib/parity.yaml\nname: p\nfilter: {{score: {predicate}}}\n")
    assert {int(e.id.split("/r")[1]) for e in load_task_file(child).examples()} == expected


def test_contains_on_a_nested_list(tmp_path, parent):
    child = write(tmp_path / "f.yaml", "include: lib/parity.yaml\nname: p\n"
                                       "filter: {info.groups: {contains: east}}\n")
    assert {e.id for e in load_task_file(child).examples()} == {f"p/r{i}" for i in range(1, 36, 3)}


def test_plain_file_with_filter_and_include_of_a_derived_file(tmp_path, parent):
    src = (tmp_path / "lib" / "parity.yaml").read_text()
    first = write(tmp_path / "lib" / "north.yaml", src.replace("name: parity", "name: north")
                  + "filter: {info.groups: [[north]]}\n")
    assert {e.group for e in load_task_file(first).examples()} == {"all"}
    assert len(load_task_file(first).examples()) == 12
    second = write(tmp_path / "second.yaml", "include: lib/north.yaml\nname: north-sites\ngroup_from: info.site\n")
    task = load_task_file(second)
    assert len(task.examples()) == 12 and {e.group for e in task.examples()} == {"s0", "s1"}


@pytest.mark.parametrize("body, error, match", [
    ("base: bbq\ninclude: x.yaml\nname: a\n", ConfigError, "give base: .* or include: .*, not both"),
    ("base: bbq\nfilter: {group: Age}\n", ConfigError, "a derived task needs its own name"),
    ("name: a\nbase: bbqq\n", ConfigError, "base: unknown task 'bbqq'; did you mean 'bbq'\\?"),
    ("name: a\nbase: bbq\nprompt_template: 'x {context}'\n", ConfigError,
     "'prompt_template' cannot be set in a task derived with base: .*include"),
    ("name: a\nbase: bbq\nfiltr: {group: Age}\n", ConfigError, "unknown key 'filtr'; did you mean 'filter'\\?"),
    ("name: a\nbase: bbq\nfilter: {group: {equals: Age}}\n", ConfigError,
     "filter.group: unknown operator 'equals'; did you mean 'eq'\\?"),
    ("name: a\nbase: bbq\nfilter: {group: {in: Age}}\n", ConfigError, "in needs a list of values"),
    ("name: a\nbase: bbq\nfilter: [group]\n", ConfigError, "filter must be a mapping of field paths"),
    ("name: a\nbase: bbq\ngroup_from: [subgroup]\n", ConfigError, "group_from must be a field path"),
])
def test_file_errors_are_one_line(tmp_path, body, error, match):
    path = write(tmp_path / "bad.yaml", body)
    with pytest.raises(error, match=match) as err:
        load_task_file(path).examples()
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_data_errors_name_the_path_and_values(tmp_path, parent):
    typo = write(tmp_path / "typo.yaml", "include: lib/parity.yaml\nname: p\nfilter: {info.sites: s0}\n")
    with pytest.raises(ConfigError, match="filter path 'info.sites' is in no example of 'parity'; did you mean "
                                          "'info.site'\\?"):
        load_task_file(typo).examples()
    none = write(tmp_path / "none.yaml", "include: lib/parity.yaml\nname: p\nfilter: {info.site: s9}\n")
    with pytest.raises(DataError, match="the filter keeps none of the 36 examples of 'parity'; info.site takes values "
                                        "like 's0', 's1'"):
        load_task_file(none).examples()
    grouped = write(tmp_path / "g.yaml", "include: lib/parity.yaml\nname: p\ngroup_from: info.region\n")
    with pytest.raises(DataError, match="example 'parity/r.*' has no value at group_from path 'info.region'; did you mean "
                                        "'info.groups'\\? filter such examples out"):
        load_task_file(grouped).examples()
    missing = write(tmp_path / "m.yaml", "include: lib/parity.yaml\nname: p\nfilter: {info.region: {ne: x}}\n")
    with pytest.raises(ConfigError, match="filter path 'info.region' is in no example"):
        load_task_file(missing).examples()  # an absent path passes no predicate, not even ne
    loop = write(tmp_path / "loop.yaml", "include: loop.yaml\nname: loop\n")
    with pytest.raises(ConfigError, match="forms a cycle"):
        load_task_file(loop)


def test_shipped_data_helper(tmp_path):
    path = shipped_data("chainforget", "data", "bbq", "Age.jsonl.gz")
    assert path.is_file() and path.name == "Age.jsonl.gz"
    with pytest.raises(DataError, match="is not shipped with 'chainforget'; list it under"):
        shipped_data("chainforget", "data", "nope.jsonl")
    with pytest.raises(DataError, match="package 'no_such_package_xyz' is not installed"):
        shipped_data("no_such_package_xyz", "x")


def test_derived_task_in_resolve_task_and_unknown_names(tmp_path):
    path = write(tmp_path / "d.yaml", "name: bbq-religion\nbase: bbq\nfilter: {group: Religion}\n")
    assert resolve_task(str(path)).name == "bbq-religion"
    with pytest.raises(UnknownNameError):
        resolve_task("bbq-religion")  # a file is not registered by being read


def test_raw_bbq_rows_grouped_by_the_nested_stereotyped_groups(tmp_path):
    """A plain task file over BBQ's raw JSONL (located with shipped_data) reads additional_metadata.* paths."""
    raw = shipped_data("chainforget", "data", "bbq", "Religion.jsonl.gz")
    path = write(tmp_path / "religion.yaml", f"""\
        name: bbq-religion-raw
        kind: safety
        prompt_template: "Context: {{context}}\\nQuestion: {{question}}\\nAnswer:"
        split: {{eval_fraction: 0.5, seed: 0, unit: question_index}}
        data: {raw}
        columns: {{id: example_id, options: [ans0, ans1, ans2], gold: label, meta: [question_index]}}
        filter: {{context_condition: ambig, additional_metadata.stereotyped_groups: {{contains: Muslim}}}}
        group_from: additional_metadata.stereotyped_groups
    """)
    task = load_task_file(path)
    examples = task.examples()
    assert examples and all(e.meta["context_condition"] == "ambig" for e in examples)
    assert all("Muslim" in e.meta["additional_metadata"]["stereotyped_groups"] for e in examples)
    assert "Muslim" in {e.group for e in examples}
    train_units = {e.meta["question_index"] for e in task.train_examples()}
    assert train_units.isdisjoint(e.meta["question_index"] for e in task.eval_examples())  # the file's unit split
