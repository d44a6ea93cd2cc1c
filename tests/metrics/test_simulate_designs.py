"""The calibration designs in chainforget.metrics.simulate are the shipped data's: the BBQ eval split's templates and
the paper and quick presets' samples of BBQ and ToxiGen, read here through the task loader."""

from collections import Counter, defaultdict

from chainforget.config.presets import PAPER, QUICK
from chainforget.metrics import simulate as sim
from chainforget.tasks.resolve import resolve_task


def _template_sizes(examples):
    per_group = defaultdict(Counter)
    for example in examples:
        per_group[example.group][example.meta["template"]] += 1
    return tuple(tuple(sorted(per_group[g].values())) for g in sorted(per_group))


def test_bbq_designs_are_the_shipped_split_and_the_presets_samples():
    bbq = resolve_task("bbq")
    assert _template_sizes(bbq.eval_examples()) == sim.BBQ_EVAL_TEMPLATE_SIZES
    assert sim.BBQ_EVAL_SIZES == (1776, 892, 2920, 1640, 1000, 3400, 640, 3216, 416)
    assert _template_sizes(bbq.eval_examples(PAPER["limit_eval"])) == sim.BBQ_PAPER_TEMPLATE_SIZES
    assert _template_sizes(bbq.eval_examples(QUICK["limit_eval"]["bbq"])) == sim.BBQ_QUICK_TEMPLATE_SIZES


def test_toxigen_designs_are_the_shipped_split_and_the_paper_presets_sample():
    toxigen = resolve_task("toxigen")
    sizes = lambda examples: tuple(n for _, n in sorted(Counter(e.group for e in examples).items()))  # noqa: E731
    assert sizes(toxigen.eval_examples()) == sim.TOXIGEN_EVAL_SIZES
    assert sizes(toxigen.eval_examples(PAPER["limit_eval"])) == sim.TOXIGEN_PAPER_SIZES


def test_seed_design_lays_out_templates_and_contexts():
    design = sim.seed_design("d", [(2, 4), (3,)], 0.5)
    assert design.group.tolist() == [0] * 6 + [1] * 3
    assert design.cluster.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert design.unit.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4]  # contexts of 2 inside each template
