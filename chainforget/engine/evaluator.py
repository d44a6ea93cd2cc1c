"""The Avalanche evaluator of the template and the metric values ``--log`` loggers receive.

Without loggers the template's evaluator does nothing at all (no InteractiveLogger spam, no per-hook work).
With loggers, ``ChainMetric`` emits the training loss, tokens/s and learning rate per optimizer step, the epoch loss,
and each eval task's primary score (also under Avalanche's ``Top1_Acc_Exp`` name so the CSVLogger's fixed columns
carry it: there ``eval_accuracy`` is the task's primary metric). Imports avalanche: only the engine loads it.
"""

from __future__ import annotations

from avalanche.evaluation.metric_results import MetricValue
from avalanche.training.plugins import EvaluationPlugin


class QuietEvaluator(EvaluationPlugin):
    """An EvaluationPlugin that skips all work when it has no loggers."""

    supports_distributed = True  # loggers exist on the main process only

    def _update_metrics_and_loggers(self, strategy, callback):
        if not self.loggers:
            return []
        return super()._update_metrics_and_loggers(strategy, callback)


class ChainMetric:
    """Duck-typed Avalanche plugin metric: the EvaluationPlugin calls whichever callbacks it defines."""

    def __init__(self):
        self._epoch_losses: list[float] = []

    def before_training_epoch(self, strategy):
        self._epoch_losses = []

    def after_training_iteration(self, strategy):
        x = strategy.optimizer_steps_total
        self._epoch_losses.append(strategy.last_loss)
        lr = strategy.optimizer.param_groups[0]["lr"]
        return [MetricValue(self, "train/loss", strategy.last_loss, x),
                MetricValue(self, "train/tokens_per_s", strategy.tokens_per_second, x),
                MetricValue(self, "train/lr", lr, x)]

    def after_training_epoch(self, strategy):
        if not self._epoch_losses:
            return None
        mean = sum(self._epoch_losses) / len(self._epoch_losses)
        return [MetricValue(self, "Loss_Epoch/train_phase/train_stream/Task000", mean,
                            strategy.clock.train_iterations)]

    def after_eval_exp(self, strategy):
        records = strategy.eval_records.get(strategy.task_name) or []
        if not records:
            return None
        primary = records[0].get("primary", "acc")
        value = sum(float(r["scores"][primary]) for r in records) / len(records)
        with strategy.experience.no_attribute_masking():
            idx = strategy.experience.current_experience
        return [MetricValue(self, f"eval/{strategy.task_name}/{primary}", value, strategy.eval_stage),
                MetricValue(self, f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{idx:03d}", value,
                            strategy.eval_stage)]
