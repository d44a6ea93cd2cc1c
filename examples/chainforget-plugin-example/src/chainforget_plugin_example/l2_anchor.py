"""``l2-anchor``: an L2 pull toward the weights the model had after the first (safety) chain step.

While training every later chain step, each micro-batch's loss gets::

    strength / 2 * ||w - w_anchor||^2 * strategy.mb_weight

over the trainable parameters (LoRA: the adapters), where ``w_anchor`` are the weights at the end of chain step
``anchor_step`` (0 = the first step, where the paper's chains put the safety task). It is EWC with a Fisher of all
ones: the simplest regulariser a third party might want to compare with the built-ins.

Torch is imported inside the hooks only, so ``chainforget list`` stays fast with this plugin installed.
"""

from __future__ import annotations

from typing import Any, Mapping

from chainforget.strategies.base import Param, StrategyContext, StrategyPlugin, StrategySpec, chain_index

PARAMS = (
    Param("strength", "float", 1.0, "weight of the L2 pull toward the anchor weights", low=0.0, high=1e9),
    Param("anchor_step", "int", 0, "chain step (0-based) whose final weights are the anchor", low=0),
)


class L2AnchorPlugin(StrategyPlugin):
    """Captures the anchor after chain step ``anchor_step`` and penalises the distance to it afterwards."""

    def __init__(self, strength: float, anchor_step: int, context: StrategyContext):
        self.strength, self.anchor_step, self.context = strength, anchor_step, context
        self.anchor: dict[str, Any] = {}
        self.last_penalty: float | None = None

    def after_training_exp(self, strategy, **kwargs):
        # Also fires when the step's weights were loaded from a shared checkpoint (the template's skip_training).
        if chain_index(strategy, self.context) == self.anchor_step:
            self.anchor = {n: p.detach().clone() for n, p in strategy.model.named_parameters() if p.requires_grad}

    def before_backward(self, strategy, **kwargs):
        if not self.anchor or self.strength == 0:
            return
        penalty = sum(((p - self.anchor[n]) ** 2).sum()
                      for n, p in strategy.model.named_parameters() if n in self.anchor)
        self.last_penalty = float(penalty.detach())
        strategy.loss = strategy.loss + self.strength / 2 * penalty * strategy.mb_weight

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": {n: t.cpu() for n, t in self.anchor.items()}}  # tensors go to safetensors

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.anchor = dict(state.get("anchor", {}))

    def before_training_exp(self, strategy, **kwargs):
        device = next(strategy.model.parameters()).device
        self.anchor = {n: t.to(device) for n, t in self.anchor.items()}


def make_plugins(params: Mapping[str, Any], ctx: StrategyContext) -> list:
    return [L2AnchorPlugin(params["strength"], params["anchor_step"], ctx)]


def signature(params: Mapping[str, Any], step: int) -> Mapping[str, Any]:
    """Steps up to the anchor train exactly like naive, so they share naive's checkpoints."""
    return {"strategy": "naive"} if step <= params["anchor_step"] else {"strategy": "l2-anchor", "params": dict(params)}


SPEC = StrategySpec(
    name="l2-anchor",
    description="L2 pull toward the weights after the first (safety) chain step (plugin example)",
    params=PARAMS,
    make_plugins=make_plugins,
    train_signature=signature,
)
