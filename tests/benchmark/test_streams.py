"""Chains as Avalanche benchmarks: stream shapes, Example items, group ids for class-balanced replay buffers."""

import collections

import pytest

from chainforget.benchmark.streams import (
    build_benchmark,
    examples_dataset,
    experience_dataset,
    experience_from_examples,
    group_id,
)
from chainforget.errors import ConfigError
from chainforget.tasks import Example, resolve_task


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(["bbq", "gsm8k"], ["bbq", "gsm8k", "openbookqa"], limit_train=36, limit_eval=20)


def test_stream_shapes_names_and_items(bench):
    assert len(bench.train_stream) == 2 and len(bench.test_stream) == 3
    assert bench.train_task_names == ["bbq", "gsm8k"]
    assert bench.eval_task_names == ["bbq", "gsm8k", "openbookqa"]
    assert bench.task_ids == {"bbq": 0, "gsm8k": 1, "openbookqa": 2}
    assert [len(e.dataset) for e in bench.train_stream] == [36, 36]
    assert [len(e.dataset) for e in bench.test_stream] == [20, 20, 20]
    assert [e.task_name for e in bench.train_stream] == ["bbq", "gsm8k"]
    assert [e.task_name for e in bench.test_stream] == ["bbq", "gsm8k", "openbookqa"]
    assert [e.current_experience for e in bench.test_stream] == [0, 1, 2]
    for exp, name in zip(bench.train_stream, bench.train_task_names):
        items = list(exp.dataset)
        assert all(isinstance(x, Example) and x.task == name for x in items)
        assert [x.id for x in items] == [x.id for x in resolve_task(name).train_examples(36)]
    for exp, name in zip(bench.test_stream, bench.eval_task_names):
        assert [x.id for x in exp.dataset] == [x.id for x in resolve_task(name).eval_examples(20)]


def test_targets_are_group_ids_and_task_labels_are_task_ids(bench):
    ds = bench.train_stream[0].dataset
    items = list(ds)
    assert [int(t) for t in ds.targets] == [group_id("bbq", x.group) for x in items]
    assert set(ds.targets_task_labels) == {0}
    assert {bench.group_names[int(t)] for t in ds.targets} == {("bbq", g) for g in {x.group for x in items}}
    assert len({group_id("bbq", g) for g in {x.group for x in items}}) == 9  # distinct ids per group
    assert group_id("bbq", "Age") == group_id("bbq", "Age") != group_id("toxigen", "Age")
    assert set(bench.test_stream[2].dataset.targets_task_labels) == {2}


def test_class_balanced_buffer_balances_by_demographic_group(bench):
    from avalanche.training.storage_policy import ClassBalancedBuffer

    buf = ClassBalancedBuffer(max_size=18, adaptive_size=True)
    buf.update_from_dataset(bench.train_stream[0].dataset)
    groups = collections.Counter(x.group for x in buf.buffer)
    assert all(isinstance(x, Example) for x in buf.buffer)
    assert groups == {g: 2 for g in groups} and len(groups) == 9
    buf.update_from_dataset(bench.train_stream[1].dataset)  # gsm8k adds one more "class": 18 slots over 10
    classes = collections.Counter((x.task, x.group) for x in buf.buffer)
    assert len(buf.buffer) == 18 and len(classes) == 10 and set(classes.values()) == {1, 2}


def test_data_loader_keeps_examples(bench):
    from torch.utils.data import DataLoader

    ds = bench.train_stream[1].dataset
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=ds.collate_fn)))
    assert isinstance(batch, list) and len(batch) == 4 and all(isinstance(x, Example) for x in batch)


def test_explicit_example_lists_make_experiences_that_concat(bench):
    mixed = resolve_task("bbq").train_examples(10) + resolve_task("gsm8k").train_examples(5)
    ds = bench.experience_dataset(mixed)
    assert [x.id for x in ds] == [x.id for x in mixed]
    assert list(ds.targets_task_labels) == [0] * 10 + [1] * 5
    joined = bench.train_stream[0].dataset.concat(examples_dataset(mixed, ["bbq", "gsm8k"]))
    assert len(joined) == 36 + 15 and isinstance(joined[-1], Example)
    assert [int(t) for t in joined.targets][-5:] == [group_id("gsm8k", "all")] * 5
    exp = experience_from_examples(mixed, 2, "joint", ["bbq", "gsm8k"])
    assert exp.current_experience == 2 and exp.task_name == "joint" and len(exp.dataset) == 15
    alone = experience_dataset(resolve_task("toxigen").train_examples(4))
    assert set(alone.targets_task_labels) == {0}


def test_chain_orders_repeats_default_eval_tasks_and_task_objects():
    rev = build_benchmark(["gsm8k", resolve_task("bbq")], limit_train=9, limit_eval=9)
    assert rev.train_task_names == ["gsm8k", "bbq"] and rev.eval_task_names == ["gsm8k", "bbq"]
    assert rev.task_ids == {"gsm8k": 0, "bbq": 1}
    rep = build_benchmark(["bbq", "gsm8k", "bbq"], ["bbq"], limit_train=9, limit_eval=9)
    assert len(rep.train_stream) == 3 and len(rep.test_stream) == 1
    assert [e.task_name for e in rep.train_stream] == ["bbq", "gsm8k", "bbq"]


def test_eval_only_task_cannot_be_trained_in_a_chain():
    with pytest.raises(ConfigError, match="evaluation-only .* --eval-tasks"):
        build_benchmark(["openbookqa"], limit_train=5)
    with pytest.raises(ConfigError, match="chain is empty"):
        build_benchmark([], ["bbq"])
