"""``ewc``: elastic weight consolidation (Kirkpatrick et al. 2017) with a diagonal Fisher over trainable weights.

Importance: the empirical diagonal Fisher of the experience just trained, ``F = mean_i (d loss_i / d w)^2``, where
``loss_i`` is example i's mean target-token cross-entropy (one backward per example, so ``F`` is a true per-sample
estimate, not the square of a batch mean), over ``fisher_samples`` seeded examples of that experience's training
data. Only parameters with ``requires_grad`` count, so with LoRA the importances are over adapter weights only.

Penalty, added to every micro-batch's loss in ``before_backward``::

    lambda / 2 * sum_k sum_j F_k[j] * (w[j] - w*_k[j])^2 * strategy.mb_weight

(``mb_weight`` makes the per-optimizer-step total independent of the micro-batch size). ``online`` (default,
Schwarz et al. 2018) keeps ONE Fisher ``F = decay * F + F_t`` and ONE anchor (the latest weights), so memory stays
two copies of the trainable weights however long the chain; ``separate`` keeps one (F_k, w*_k) per earlier task.

Scale of lambda: the Fisher is in per-token loss units (the training loss is a per-token mean too), so
``lambda / 2 * F * dw^2`` compares directly with the per-token cross-entropy. Its entries are tiny for a language
model (SmolLM2-135M after 48 BBQ examples: mean 4.6e-6, median 1.5e-7), hence the large default. Measured on
SmolLM2-135M, bbq (48) -> gsm8k (24), lr 1e-4, batch 8: naive's drift during gsm8k gives ``sum F dw^2 = 1.4e-5``, so
``lambda = 1e5`` prices that drift at 0.7, half the cross-entropy (1.4); longer chains drift further and are held
back harder. Raise it for stronger retention, lower it if the new task stops learning.

When the Fisher is computed: at the end of every chain task but the last (no later stage needs it), like
Avalanche's EWC. When a stage's weights come from the prefix store instead of training, the template's
``skip_training`` still fires ``after_training_exp`` on the loaded weights, so the Fisher is the same as after real
training; a resumed run restores it from the checkpoint (``state_dict``).
"""

from __future__ import annotations

import random
from typing import Any, Mapping

from chainforget.errors import TrainingError
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
    Param("lambda", "float", 1e5, "strength of the quadratic pull toward earlier tasks' weights", low=0.0, high=1e12),
    Param("mode", "str", "online", "online: one decayed Fisher + one anchor; separate: one pair per earlier task",
          choices=("online", "separate")),
    Param("decay", "float", 1.0, "online mode: the running Fisher is multiplied by this before adding a new one",
          low=0.0, high=1.0),
    Param("fisher_samples", "int", 64, "examples of each finished task used for its Fisher (0 = all)", low=0),
)


def trainable(model) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def diagonal_fisher(model, batches, loss_fn) -> dict[str, Any]:
    """Mean over ``batches`` of squared gradients of ``loss_fn(model, batch)``, for trainable parameters only.

    ``.grad`` is left untouched (``torch.autograd.grad``), and the model is put in eval mode (no dropout) meanwhile.
    """
    import torch

    named = trainable(model)
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in named}
    count = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            loss = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            for (n, _), g in zip(named, grads):
                if g is not None:
                    fisher[n] += g.detach().float() ** 2
            count += 1
    finally:
        model.train(was_training)
    if count:
        for n in fisher:
            fisher[n] /= count
    return fisher


def ewc_penalty(model, fishers: list[dict[str, Any]], anchors: list[dict[str, Any]]):
    """``sum_k sum_j F_k[j] (w[j] - w*_k[j])^2`` over trainable parameters (without lambda / 2)."""
    total = None
    params = dict(trainable(model))
    for fisher, anchor in zip(fishers, anchors):
        for n, f in fisher.items():
            p = params.get(n)
            if p is None:
                continue
            term = (f * (p.float() - anchor[n]) ** 2).sum()
            total = term if total is None else total + term
    return total


class EWCPlugin(StrategyPlugin):
    """Consolidates each finished task's Fisher and anchor, and adds the EWC penalty to every micro-batch."""

    supports_distributed = True  # every rank computes the same importances from the same full experience

    def __init__(self, params: Mapping[str, Any], context: StrategyContext):
        self.lam, self.mode, self.decay = params["lambda"], params["mode"], params["decay"]
        self.samples, self.context = params["fisher_samples"], context
        self.fishers: list[dict[str, Any]] = []
        self.anchors: list[dict[str, Any]] = []
        self.consolidated: list[int] = []  # chain tasks whose Fisher is in self.fishers
        self.last_penalty: float | None = None

    # -- consolidation --------------------------------------------------------------------------------------
    def fisher_examples(self, index: int) -> list[Any]:
        task = self.context.chain[index]
        examples = list(self.context.train_examples[task])
        if self.samples and len(examples) > self.samples:
            chosen = set(random.Random(f"ewc:{self.context.seed}:{task}").sample(range(len(examples)),
                                                                                self.samples))
            examples = [ex for i, ex in enumerate(examples) if i in chosen]
        return examples

    def consolidate(self, strategy, index: int) -> None:
        """Fisher of the chain's task ``index`` at the current weights; the anchor is the current weights."""
        from chainforget.engine.probe import example_batches, example_loss

        # one example per batch (a per-sample Fisher); the LM head at target positions only, as in training
        batches = example_batches(strategy.tokenizer, self.fisher_examples(index),
                                  max_length=strategy.train_cfg.max_length,
                                  device=next(strategy.model.parameters()).device)
        fisher = diagonal_fisher(strategy.model, batches, lambda model, b: example_loss(model, b, "mean"))
        anchor = {n: p.detach().float().clone() for n, p in trainable(strategy.model)}
        if self.mode == "online" and self.fishers:
            fisher = {n: self.decay * self.fishers[0][n] + f for n, f in fisher.items()}
            self.fishers, self.anchors = [fisher], [anchor]
        else:
            self.fishers.append(fisher)
            self.anchors.append(anchor)
        self.consolidated.append(index)

    def before_training_exp(self, strategy, **kwargs):
        self.to(next(strategy.model.parameters()).device)
        index = min(chain_index(strategy, self.context), len(self.context.chain))
        missing = [s for s in range(index) if s not in self.consolidated]
        if missing:
            raise TrainingError(f"ewc has no Fisher for chain tasks {missing} (its checkpoint state was not "
                                f"restored); rerun the chain from the start without reusing those checkpoints")

    def after_training_exp(self, strategy, **kwargs):
        index = chain_index(strategy, self.context)
        if index >= len(self.context.chain) - 1 or index in self.consolidated:
            return  # no later chain task needs it (or it is already in the restored state)
        self.consolidate(strategy, index)

    # -- penalty ----------------------------------------------------------------------------------------------
    def before_backward(self, strategy, **kwargs):
        if not self.fishers or self.lam == 0:
            return
        penalty = ewc_penalty(strategy.model, self.fishers, self.anchors)
        if penalty is None:
            return
        self.last_penalty = float(penalty.detach())
        strategy.loss = strategy.loss + (self.lam / 2) * penalty * strategy.mb_weight

    # -- checkpoint state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"mode": self.mode, "consolidated": list(self.consolidated)}
        for k, (fisher, anchor) in enumerate(zip(self.fishers, self.anchors)):
            for n in fisher:
                state[f"fisher.{k}.{n}"] = fisher[n].detach().cpu().contiguous()
                state[f"anchor.{k}.{n}"] = anchor[n].detach().cpu().contiguous()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("mode", self.mode) != self.mode:
            raise TrainingError(f"ewc checkpoint was written in mode {state['mode']!r}, this run uses "
                                f"{self.mode!r}; resume with the same ewc.mode")
        self.consolidated = [int(s) for s in state.get("consolidated", [])]
        fishers: dict[int, dict[str, Any]] = {}
        anchors: dict[int, dict[str, Any]] = {}
        for key, value in state.items():
            for prefix, target in (("fisher.", fishers), ("anchor.", anchors)):
                if key.startswith(prefix):
                    k, name = key[len(prefix):].split(".", 1)
                    target.setdefault(int(k), {})[name] = value
        self.fishers = [fishers[k] for k in sorted(fishers)]
        self.anchors = [anchors[k] for k in sorted(anchors)]

    def to(self, device) -> None:
        """Move the stored Fisher and anchors next to the model (after loading a CPU checkpoint)."""
        self.fishers = [{n: t.to(device) for n, t in f.items()} for f in self.fishers]
        self.anchors = [{n: t.to(device) for n, t in a.items()} for a in self.anchors]


def make_plugins(params: Mapping[str, Any], ctx: StrategyContext) -> list:
    return [EWCPlugin(params, ctx)]


def stage_work(plugins: list, stage: int, task: str) -> StageWork:
    """A Fisher over ``fisher_examples`` after every chain task but the last (as ``after_training_exp`` runs it)."""
    (plugin,) = plugins
    return StageWork(after=plugin.fisher_examples(stage) if stage < len(plugin.context.chain) - 1 else ())


SPEC = StrategySpec(
    name="ewc",
    description="elastic weight consolidation: diagonal Fisher over trainable weights (LoRA-aware), online",
    params=PARAMS,
    make_plugins=make_plugins,
    train_signature=naive_at_first_task("ewc"),
    stage_work=stage_work,
)
