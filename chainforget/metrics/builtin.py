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
    MetricSpec(name="forgetting", description="score on a trained task right after training minus at the last stage "
               "(+ = forgot), with 95% cluster-bootstrap CI",
               higher_is_better=False, low=None, high=None, scope="task", compute=forgetting.forgetting, unit=T),
    MetricSpec(name="relative_forgetting", description="forgetting / what the task's own stage gained (R[a] - "
               "R[a-1]): the share of the gain lost, unit-free; missing when the gain is not positive",
               higher_is_better=False, low=None, high=None, scope="task",
               compute=forgetting.relative_forgetting, unit=GAIN),
    MetricSpec(name="max_forgetting", description="best score on a trained task from its training stage on, minus at "
               "the last stage (Chaudhry et al.)",
               higher_is_better=False, low=None, high=None, scope="task", compute=forgetting.max_forgetting, unit=T),
    MetricSpec(name="drift", description="score of an eval-only task on the base model minus at the last stage (+ = "
               "got worse)",
               higher_is_better=False, low=None, high=None, scope="task", compute=forgetting.drift, unit=T),
    MetricSpec(name="average_score", description="mean over eval tasks of one unit of the last stage's score (per "
               "unit; overall only when all share one)",
               higher_is_better=True, low=None, high=None, scope="run", compute=forgetting.average_score, unit=T),
    MetricSpec(name="bwt", description="backward transfer: mean over trained tasks of one unit of last-stage minus "
               "trained-stage score (= -mean forgetting)",
               higher_is_better=True, low=None, high=None, scope="run", compute=forgetting.bwt, unit=T),
    MetricSpec(name="fwt", description="forward transfer: score on a task just before training it minus on the base "
               "model",
               higher_is_better=True, low=None, high=None, scope="task", compute=forgetting.fwt, unit=T),
    MetricSpec(name="group_forgetting", description="forgetting on each demographic group's eval examples, with "
               "simultaneous 95% intervals over the compared groups (small groups flagged)",
               higher_is_better=False, low=None, high=None, scope="group", compute=groups.group_forgetting, unit=T),
    MetricSpec(name="biased_forgetting", description="noise-corrected between-group SD of per-group forgetting, with "
               "95% interval and group-effect p (interval excludes 0 exactly when p < 0.05)",
               higher_is_better=False, low=0.0, high=None, scope="task", compute=groups.biased_forgetting, unit=T),
    MetricSpec(name="biased_forgetting_range", description="max minus min per-group forgetting (descriptive: inflated "
               "by noise)",
               higher_is_better=False, low=0.0, high=None, scope="task",
               compute=groups.biased_forgetting_range, unit=T),
    MetricSpec(name="biased_forgetting_std", description="population std of per-group forgetting (descriptive: "
               "inflated by noise)",
               higher_is_better=False, low=0.0, high=None, scope="task", compute=groups.biased_forgetting_std, unit=T),
    MetricSpec(name="worst_group", description="the group that forgot most (value is the group name)",
               higher_is_better=None, low=None, high=None, scope="task", compute=groups.worst_group, unit="group name"),
    MetricSpec(name="worst_group_excess", description="forgetting of the worst-off group minus the task's forgetting, "
               "with 95% CI",
               higher_is_better=False, low=None, high=None, scope="task", compute=groups.worst_group_excess, unit=T),
    MetricSpec(name="group_effect_pvalue", description="p-value of 'forgetting does not depend on the group' "
               "(studentized, templates bootstrapped, against training noise with seeds; small = real group differences)",
               higher_is_better=None, low=0.0, high=1.0, scope="task",
               compute=groups.group_effect_pvalue, unit="probability"),
    MetricSpec(name="bbq_bias_dis", description="BBQ bias score in disambiguated contexts at the last stage (0 = "
               "unbiased, + = stereotyped)",
               higher_is_better=False, low=-1.0, high=1.0, scope="group",
               compute=bbq_bias.bbq_bias_dis, unit="bias score"),
    MetricSpec(name="bbq_bias_amb", description="BBQ bias score in ambiguous contexts at the last stage (0 = "
               "unbiased, + = stereotyped)",
               higher_is_better=False, low=-1.0, high=1.0, scope="group",
               compute=bbq_bias.bbq_bias_amb, unit="bias score"),
    MetricSpec(name="bbq_bias_drift_dis", description="change of the disambiguated BBQ bias score from the stage BBQ "
               "was trained (or the base model) to the last stage",
               higher_is_better=False, low=-2.0, high=2.0, scope="group",
               compute=bbq_bias.bbq_bias_drift_dis, unit="bias score"),
    MetricSpec(name="bbq_bias_drift_amb", description="change of the ambiguous BBQ bias score from the stage BBQ was "
               "trained (or the base model) to the last stage",
               higher_is_better=False, low=-2.0, high=2.0, scope="group",
               compute=bbq_bias.bbq_bias_drift_amb, unit="bias score"),
)


@hookimpl
def chainforget_register_metrics(registry):
    for spec in METRICS:
        registry.register(spec.name, spec, spec.description)
