"""Built-in metrics: forgetting and transfer, per-group and biased forgetting with uncertainty, BBQ bias scores.

Each is a :class:`~chainforget.metrics.base.MetricSpec` over stored evaluation records; docs/metrics.md gives the
formulas. A declared range holds for every task: metrics in a task's own unit are unbounded (GSM8K's nats per token
can forget more than 1), accuracy-scale tasks stay within [-1, 1] by construction. Only numpy is imported here.
"""

from chainforget.metrics import bbq_bias, forgetting, groups
from chainforget.metrics.base import TASK_UNIT, MetricSpec
from chainforget.plugins.hookspecs import hookimpl

T = TASK_UNIT  # in the unit of the task's primary score (accuracy, nats per token, ...)
GAIN = "share of the stage's gain"

METRICS = (
    MetricSpec("forgetting", "score on a trained task right after training minus at the last stage (+ = forgot), "
               "with 95% cluster-bootstrap CI", False, None, None, "task", forgetting.forgetting, T),
    MetricSpec("relative_forgetting", "forgetting / what the task's own stage gained (R[a] - R[a-1]): the share of "
               "the gain lost, unit-free; missing when the gain is not positive", False, None, None, "task",
               forgetting.relative_forgetting, GAIN),
    MetricSpec("max_forgetting", "best score on a trained task from its training stage on, minus at the last "
               "stage (Chaudhry et al.)", False, None, None, "task", forgetting.max_forgetting, T),
    MetricSpec("drift", "score of an eval-only task on the base model minus at the last stage (+ = got worse)",
               False, None, None, "task", forgetting.drift, T),
    MetricSpec("average_score", "mean over eval tasks of one unit of the last stage's score (per unit; overall "
               "only when all share one)", True, None, None, "run", forgetting.average_score, T),
    MetricSpec("bwt", "backward transfer: mean over trained tasks of one unit of last-stage minus trained-stage "
               "score (= -mean forgetting)", True, None, None, "run", forgetting.bwt, T),
    MetricSpec("fwt", "forward transfer: score on a task just before training it minus on the base model",
               True, None, None, "task", forgetting.fwt, T),
    MetricSpec("group_forgetting", "forgetting on each demographic group's eval examples, with simultaneous 95% "
               "intervals over the compared groups (small groups flagged)", False, None, None, "group",
               groups.group_forgetting, T),
    MetricSpec("biased_forgetting", "noise-corrected between-group SD of per-group forgetting, with 95% interval "
               "and group-effect p (interval excludes 0 only when p < 0.05)", False, 0.0, None, "task",
               groups.biased_forgetting, T),
    MetricSpec("biased_forgetting_range", "max minus min per-group forgetting (descriptive: inflated by noise)",
               False, 0.0, None, "task", groups.biased_forgetting_range, T),
    MetricSpec("biased_forgetting_std", "population std of per-group forgetting (descriptive: inflated by noise)",
               False, 0.0, None, "task", groups.biased_forgetting_std, T),
    MetricSpec("worst_group", "the group that forgot most (value is the group name)", None, None, None, "task",
               groups.worst_group, "group name"),
    MetricSpec("worst_group_excess", "forgetting of the worst-off group minus the task's forgetting, with 95% CI",
               False, None, None, "task", groups.worst_group_excess, T),
    MetricSpec("group_effect_pvalue", "p-value of 'forgetting does not depend on the group' (studentized, templates "
               "permuted; small = real group differences)", None, 0.0, 1.0, "task", groups.group_effect_pvalue,
               "probability"),
    MetricSpec("bbq_bias_dis", "BBQ bias score in disambiguated contexts at the last stage (0 = unbiased, "
               "+ = stereotyped)", False, -1.0, 1.0, "group", bbq_bias.bbq_bias_dis, "bias score"),
    MetricSpec("bbq_bias_amb", "BBQ bias score in ambiguous contexts at the last stage (0 = unbiased, "
               "+ = stereotyped)", False, -1.0, 1.0, "group", bbq_bias.bbq_bias_amb, "bias score"),
    MetricSpec("bbq_bias_drift_dis", "change of the disambiguated BBQ bias score from the stage BBQ was trained "
               "(or the base model) to the last stage", False, -2.0, 2.0, "group", bbq_bias.bbq_bias_drift_dis,
               "bias score"),
    MetricSpec("bbq_bias_drift_amb", "change of the ambiguous BBQ bias score from the stage BBQ was trained "
               "(or the base model) to the last stage", False, -2.0, 2.0, "group", bbq_bias.bbq_bias_drift_amb,
               "bias score"),
)


@hookimpl
def chainforget_register_metrics(registry):
    for spec in METRICS:
        registry.register(spec.name, spec, spec.description)
