"""Built-in metrics: forgetting and transfer, per-group and biased forgetting with uncertainty, BBQ bias scores.

Each is a :class:`~chainforget.metrics.base.MetricSpec` over stored evaluation records; docs/metrics.md gives the
formulas. Ranges assume primary scores in [0, 1] (accuracies). Only numpy is imported here.
"""

from chainforget.metrics import bbq_bias, forgetting, groups
from chainforget.metrics.base import MetricSpec
from chainforget.plugins.hookspecs import hookimpl

METRICS = (
    MetricSpec("forgetting", "score on a trained task right after training minus at the last stage (+ = forgot), "
               "with 95% bootstrap CI", False, -1.0, 1.0, "task", forgetting.forgetting),
    MetricSpec("max_forgetting", "best score on a trained task from its training stage on, minus at the last "
               "stage (Chaudhry et al.)", False, -1.0, 1.0, "task", forgetting.max_forgetting),
    MetricSpec("drift", "score of an eval-only task on the base model minus at the last stage (+ = got worse)",
               False, -1.0, 1.0, "task", forgetting.drift),
    MetricSpec("average_score", "mean over eval tasks of the last stage's score", True, 0.0, 1.0, "run",
               forgetting.average_score),
    MetricSpec("bwt", "backward transfer: mean over trained tasks of last-stage minus trained-stage score "
               "(= -mean forgetting)", True, -1.0, 1.0, "run", forgetting.bwt),
    MetricSpec("fwt", "forward transfer: score on a task just before training it minus on the base model",
               True, -1.0, 1.0, "task", forgetting.fwt),
    MetricSpec("group_forgetting", "forgetting on each demographic group's eval examples, with 95% CI "
               "(small groups flagged)", False, -1.0, 1.0, "group", groups.group_forgetting),
    MetricSpec("biased_forgetting", "max minus min per-group forgetting over groups with enough examples, "
               "with 95% CI", False, 0.0, 2.0, "task", groups.biased_forgetting),
    MetricSpec("biased_forgetting_std", "population std of per-group forgetting over groups with enough examples",
               False, 0.0, 1.0, "task", groups.biased_forgetting_std),
    MetricSpec("worst_group", "the group that forgot most (value is the group name)", None, None, None, "task",
               groups.worst_group),
    MetricSpec("worst_group_excess", "forgetting of the worst-off group minus the task's forgetting, with 95% CI",
               False, -2.0, 2.0, "task", groups.worst_group_excess),
    MetricSpec("group_effect_pvalue", "permutation p-value of 'forgetting does not depend on the group' "
               "(small = real group differences)", None, 0.0, 1.0, "task", groups.group_effect_pvalue),
    MetricSpec("bbq_bias_dis", "BBQ bias score in disambiguated contexts at the last stage (0 = unbiased, "
               "+ = stereotyped)", False, -1.0, 1.0, "group", bbq_bias.bbq_bias_dis),
    MetricSpec("bbq_bias_amb", "BBQ bias score in ambiguous contexts at the last stage (0 = unbiased, "
               "+ = stereotyped)", False, -1.0, 1.0, "group", bbq_bias.bbq_bias_amb),
    MetricSpec("bbq_bias_drift_dis", "change of the disambiguated BBQ bias score from the stage BBQ was trained "
               "(or the base model) to the last stage", False, -2.0, 2.0, "group", bbq_bias.bbq_bias_drift_dis),
    MetricSpec("bbq_bias_drift_amb", "change of the ambiguous BBQ bias score from the stage BBQ was trained "
               "(or the base model) to the last stage", False, -2.0, 2.0, "group", bbq_bias.bbq_bias_drift_amb),
)


@hookimpl
def chainforget_register_metrics(registry):
    for spec in METRICS:
        registry.register(spec.name, spec, spec.description)
