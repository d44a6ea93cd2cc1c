"""``wise-ft``: after each chain step from ``from_step`` on, pull the trained weights back toward an anchor::

    w  <-  anchor + alpha * (w_trained - anchor)

the weight-space ensemble of WiSE-FT (Wortsman et al., CVPR 2022), applied to the trainable parameters: every
weight under full fine-tuning, the LoRA adapter matrices under ``--finetune lora``. ``anchor``:

- ``first``: the weights when step ``from_step`` started. With ``from_step: 0`` that is the pre-trained model
  (WiSE-FT's zero-shot end point); with the default 1 it is the model right after the first (safety) step, so every
  later step keeps a share ``1 - alpha`` of it.
- ``step``: the weights the current step started from: each step's update is shrunk by ``alpha``.

Under LoRA one adapter persists across the chain and only it is trained and checkpointed, so the plugin edits only
the adapters: an edit of the frozen base weights would be lost on ``--resume``. Interpolating A and B separately is
not interpolating the product B·A: the adapter's update is ``B_a A_a`` with ``X_a = X_0 + alpha (X_1 - X_0)``, which
differs from ``B_0 A_0 + alpha (B_1 A_1 - B_0 A_0)`` by ``alpha (alpha - 1) (B_1 - B_0)(A_1 - A_0)``.

How it fits the lifecycle (chainforget docs/plugins.md, "The lifecycle"):

- the anchor is copied in ``before_training_exp``: at a reused stage the engine shows that hook the weights the
  stage starts from, exactly as in training;
- the interpolation runs in ``after_training_exp``, so the checkpoint (taken after that hook) and the evaluation
  hold the interpolated weights; it is skipped when ``strategy.stage_restored`` is set (a reused stage: the stored
  weights already hold the edit);
- the ``first`` anchor lives across steps, so it is plugin state (``state_dict``) and ``--resume`` restores it;
- no attribute is named ``before*``/``after*``: Avalanche would take it for a callback.

Torch is imported inside the hooks only, so ``chainforget list`` stays fast with this plugin installed.
"""

from __future__ import annotations

from typing import Any, Mapping

from chainforget.errors import TrainingError
from chainforget.strategies.base import Param, StrategyContext, StrategyPlugin, StrategySpec, chain_index

PARAMS = (
    Param("alpha", "float", 0.5, "share of the step's trained weights kept (1 = naive)", low=0.0, high=1.0,
          low_exclusive=True),
    Param("anchor", "str", "first", "first: the weights when step from_step started; step: each step's start",
          choices=("first", "step")),
    Param("from_step", "int", 1, "first chain step (0-based) that is interpolated; earlier steps train as naive",
          low=0),
)


def trainable(model) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


class WiseFTPlugin(StrategyPlugin):
    """Copies the anchor when a step starts and interpolates toward it when the step ends."""

    supports_distributed = True  # every process holds the same weights after each all-reduced step

    def __init__(self, alpha: float, anchor: str, from_step: int, context: StrategyContext):
        self.alpha, self.anchor_kind, self.from_step, self.context = alpha, anchor, from_step, context
        self.anchor: dict[str, Any] = {}
        self.interpolated: list[int] = []  # chain steps this process interpolated (not state: for tests and logs)

    def before_training_exp(self, strategy, **kwargs):
        step = chain_index(strategy, self.context)
        if step < self.from_step:
            return
        if self.anchor_kind == "step" or step == self.from_step:
            self.anchor = {n: p.detach().clone() for n, p in trainable(strategy.model)}
        elif not self.anchor:
            raise TrainingError(f"wise-ft: no anchor at chain step {step}: it is taken when step {self.from_step} "
                                f"starts and checkpointed with the run; retrain from the start (drop --resume)")
        else:
            device = next(strategy.model.parameters()).device
            self.anchor = {n: t.to(device) for n, t in self.anchor.items()}

    def after_training_exp(self, strategy, **kwargs):
        import torch

        step = chain_index(strategy, self.context)
        if step < self.from_step or self.alpha == 1.0 or getattr(strategy, "stage_restored", False):
            return
        with torch.no_grad():
            for name, p in trainable(strategy.model):
                p.copy_(torch.lerp(self.anchor[name].to(p.dtype), p, self.alpha))
        self.interpolated.append(step)
        if self.anchor_kind == "step":
            self.anchor = {}  # the next step copies its own

    def state_dict(self) -> dict[str, Any]:
        if self.anchor_kind == "step":
            return {}
        return {"anchor": {n: t.cpu() for n, t in self.anchor.items()}}  # tensors go to safetensors

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.anchor = dict(state.get("anchor", {}))


def make_plugins(params: Mapping[str, Any], ctx: StrategyContext) -> list:
    return [WiseFTPlugin(params["alpha"], params["anchor"], params["from_step"], ctx)]


def signature(params: Mapping[str, Any], step: int) -> Mapping[str, Any]:
    """Steps before ``from_step`` (and every step at alpha 1) train exactly like naive: they share its checkpoints."""
    if step < params["from_step"] or params["alpha"] == 1.0:
        return {"strategy": "naive"}
    return {"strategy": "wise-ft", "params": dict(params)}


SPEC = StrategySpec(
    name="wise-ft",
    description="WiSE-FT weight interpolation toward the weights after the first (safety) step (plugin example)",
    params=PARAMS,
    make_plugins=make_plugins,
    train_signature=signature,
)
