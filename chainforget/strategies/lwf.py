"""``lwf``: learning without forgetting, distillation from the model as it was before the current experience.

At the start of every chain task after the first, a frozen copy of the model (the *teacher*) is taken. While the
stage trains, each micro-batch's loss becomes (Li & Hoiem 2017, ``L_new + lambda_o * L_old``)::

    loss = CE + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

with CE the template's target-token cross-entropy and KL averaged over the same target tokens (prompt and padding
positions excluded), normalised like the CE (``/ target tokens in the optimizer batch``), so the two terms are on the
same per-token scale and the ``T^2`` factor keeps gradient magnitudes comparable across temperatures (Hinton et al.
2015). CE keeps its full weight, so ``alpha=0`` is exactly naive. On the first chain task there is no earlier model
and the plugin does nothing (signature = naive). The teacher needs no checkpoint state: a resumed run rebuilds it
from the weights at the start of the stage, which are the checkpoint's.
"""

from __future__ import annotations

from typing import Any, Mapping

from chainforget.engine.training import target_logits
from chainforget.strategies.base import (
    Param,
    StageWork,
    StrategyContext,
    StrategyPlugin,
    StrategySpec,
    chain_index,
    naive_at_first_task,
)

PARAMS = (
    Param("alpha", "float", 1.0, "weight of the distillation term added to the cross-entropy (0 = naive)",
          low=0.0, high=1000.0),
    Param("temperature", "float", 2.0, "softmax temperature of teacher and student in the KL term (Li & Hoiem: 2)",
          low=0.05, high=100.0),
)


def distillation_kl(student_logits, teacher_logits, temperature: float):
    """Sum over target tokens of KL(teacher_T || student_T) and the number of target tokens.

    Both are target-position logits ``[N, V]`` (the template's ``mb_output`` and the teacher's logits at the same
    ``mb_target_mask`` positions), so prompt and padding positions never enter.
    """
    import torch.nn.functional as F

    s = student_logits.float() / temperature
    t = teacher_logits.float() / temperature
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True, reduction="sum")
    return kl, int(student_logits.shape[0])


class LwFPlugin(StrategyPlugin):
    """Adds ``alpha * T^2 * KL`` to each micro-batch's loss against a frozen pre-experience teacher."""

    supports_distributed = True  # a per-micro-batch term weighted by mb_weight, like the loss

    def __init__(self, alpha: float, temperature: float, context: StrategyContext):
        self.alpha, self.temperature, self.context = alpha, temperature, context
        self.teacher = None
        self.last_kl: float | None = None  # the latest micro-batch's per-token KL (for tests and logs)

    def before_training_exp(self, strategy, **kwargs):
        self.teacher = None
        if chain_index(strategy, self.context) == 0 or self.alpha == 0:
            return
        import copy

        self.teacher = copy.deepcopy(strategy.model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def before_backward(self, strategy, **kwargs):
        if self.teacher is None:
            return
        import torch

        with torch.no_grad():  # the teacher's head runs at the student's target positions only
            teacher_logits = target_logits(self.teacher, strategy.mbatch, strategy.mb_target_mask)
        kl, n = distillation_kl(strategy.mb_output, teacher_logits, self.temperature)
        if n == 0:
            return
        self.last_kl = float(kl.detach()) / n
        strategy.loss = strategy.loss + self.alpha * self.temperature ** 2 * (kl / n) * strategy.mb_weight

    def after_training_exp(self, strategy, **kwargs):
        self.teacher = None  # free the copy between experiences


def make_plugins(params: Mapping[str, Any], ctx: StrategyContext) -> list:
    return [LwFPlugin(params["alpha"], params["temperature"], ctx)]


TEACHER_COST = 1.35  # training time with the teacher's forward, as a multiple of plain training (smollm2-135m)


def stage_work(plugins: list, stage: int, task: str) -> StageWork:
    """A teacher forward on every micro-batch after the first chain task (when alpha > 0)."""
    (plugin,) = plugins
    return StageWork(cost_factor=TEACHER_COST if stage > 0 and plugin.alpha else 1.0)


SPEC = StrategySpec(
    name="lwf",
    description="learning without forgetting: distil the pre-experience model on target tokens (alpha, T)",
    params=PARAMS,
    make_plugins=make_plugins,
    train_signature=naive_at_first_task("lwf"),
    stage_work=stage_work,
)
