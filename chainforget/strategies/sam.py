"""``sam``: sharpness-aware minimisation (Foret et al. 2021); the paper links flatter minima to less forgetting.

One SAM optimizer step, correct under gradient accumulation:

1. the template accumulates the whole optimizer batch's gradient ``g`` over its micro-batches (as for naive);
2. ``before_update``: perturb the trainable weights ``w -> w + e``, ``e = rho * g / ||g||_2`` (the norm over all
   trainable parameters), zero the gradients and call ``strategy.recompute_loss_and_backward()``, which runs
   forward + backward over every micro-batch of the same optimizer batch at the perturbed weights;
3. restore ``w`` (copied back bit for bit) and leave the perturbed-point gradient in ``.grad``; the
   template's optimizer then steps from ``w`` with it.

Each optimizer step costs two forward/backward passes. A zero or non-finite ``g`` skips the perturbation (the
template's NaN guard reports non-finite gradients). SAM changes training from the first stage, so it shares no chain prefix.
"""

from __future__ import annotations

from typing import Any, Mapping

from chainforget.strategies.base import Param, StageWork, StrategyContext, StrategyPlugin, StrategySpec

PARAMS = (
    Param("rho", "float", 0.05, "radius of the weight perturbation (Foret et al.: 0.05)", low=0.0, high=10.0),
)


class SAMPlugin(StrategyPlugin):
    """Replaces the batch gradient by the gradient at ``w + rho * g / ||g||`` before each optimizer step."""

    supports_distributed = True  # perturbs along the all-reduced gradient, so every rank moves alike

    def __init__(self, rho: float):
        self.rho = rho
        self.last_perturbation_norm: float | None = None  # ||e|| of the latest step (= rho unless skipped)

    def before_update(self, strategy, **kwargs):
        import torch

        params = [p for p in strategy.model.parameters() if p.requires_grad and p.grad is not None]
        self.last_perturbation_norm = None
        if not params or self.rho == 0:
            return
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
            if not torch.isfinite(norm) or norm == 0:
                return
            scale = self.rho / norm
            eps = [p.grad * scale for p in params]
            saved = [p.detach().clone() for p in params]
            for p, e in zip(params, eps):
                p.add_(e)
                p.grad.zero_()
        try:
            strategy.recompute_loss_and_backward()
        finally:
            with torch.no_grad():
                for p, w in zip(params, saved):
                    p.copy_(w)
        self.last_perturbation_norm = float(torch.linalg.vector_norm(torch.stack([e.norm() for e in eps])))


def make_plugins(params: Mapping[str, Any], ctx: StrategyContext) -> list:
    return [SAMPlugin(params["rho"])]


def stage_work(plugins: list, stage: int, task: str) -> StageWork:
    """A second forward and backward over every optimizer batch, at the perturbed weights (rho > 0)."""
    (plugin,) = plugins
    return StageWork(extra_passes=1 if plugin.rho else 0)


SPEC = StrategySpec(
    name="sam",
    description="sharpness-aware minimisation: step with the gradient at the worst nearby weights (rho)",
    params=PARAMS,
    make_plugins=make_plugins,
    stage_work=stage_work,
)
