"""Avalanche loggers for ``--log text,csv,tensorboard,wandb`` and the metric values they receive.

Without loggers the template's evaluator does nothing at all (no InteractiveLogger spam, no per-hook work).
With loggers, ``ChainMetric`` emits the training loss, tokens/s and learning rate per optimizer step, the epoch loss,
and each eval task's primary score (also under Avalanche's ``Top1_Acc_Exp`` name so the CSVLogger's fixed columns
carry it: there ``eval_accuracy`` is the task's primary metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from avalanche.evaluation.metric_results import MetricValue
from avalanche.training.plugins import EvaluationPlugin

from chainforget.errors import ConfigError, did_you_mean

LOGGERS = ("text", "csv", "tensorboard", "wandb")


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
        return [MetricValue(self, f"eval/{strategy.task_name}/{primary}", value, strategy.eval_step),
                MetricValue(self, f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{idx:03d}", value,
                            strategy.eval_step)]


def parse_logger_names(names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else list(names)
    out = []
    for name in (n.strip().lower() for n in items):
        if not name or name == "none":
            continue
        if name not in LOGGERS:
            hint = did_you_mean(name, LOGGERS)
            raise ConfigError(f"unknown logger {name!r}; {hint}pass --log with any of {','.join(LOGGERS)}")
        out.append(name)
    return out


def check_wandb() -> None:
    """``--log wandb`` needs wandb, in a release that still has what Avalanche's WandBLogger calls
    (``wandb.util.generate_id``, removed in recent wandb releases); checked before any work."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("--log wandb needs the wandb package; pip install wandb") from None
    if not callable(getattr(getattr(wandb, "util", None), "generate_id", None)):
        from importlib.metadata import version

        raise ConfigError(f"--log wandb: the installed wandb {getattr(wandb, '__version__', '?')} lacks "
                          f"wandb.util.generate_id, which avalanche-lib {version('avalanche-lib')}'s WandBLogger "
                          f"calls; install a wandb release that still provides it, or log with --log "
                          f"text,csv,tensorboard")


def make_loggers(names: str | Sequence[str] | None, log_dir: str | Path) -> list:
    """Avalanche loggers writing under ``log_dir``: text -> log.txt, csv -> csv/, tensorboard -> tb/, wandb."""
    wanted = parse_logger_names(names)
    log_dir = Path(log_dir)
    if wanted:
        log_dir.mkdir(parents=True, exist_ok=True)
    loggers = []
    for name in wanted:
        if name == "text":
            from avalanche.logging import TextLogger

            loggers.append(TextLogger(open(log_dir / "log.txt", "a", encoding="utf-8", buffering=1)))
        elif name == "csv":
            from avalanche.logging import CSVLogger

            loggers.append(CSVLogger(log_folder=str(log_dir / "csv")))
        elif name == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError("--log tensorboard needs the tensorboard package; pip install tensorboard") from None
            from avalanche.logging import TensorboardLogger

            loggers.append(TensorboardLogger(tb_log_dir=str(log_dir / "tb")))
        else:
            check_wandb()
            from avalanche.logging import WandBLogger

            loggers.append(WandBLogger(project_name="chainforget", run_name=log_dir.name, dir=str(log_dir)))
    return loggers
