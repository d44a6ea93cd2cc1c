"""``naive``: plain chained fine-tuning, the paper's baseline (no plugin changes how the template trains)."""

from __future__ import annotations

from chainforget.strategies.base import StrategySpec

SPEC = StrategySpec(
    name="naive",
    description="plain chained fine-tuning: each task in turn, nothing remembered (the paper's baseline)",
    params=(),
    make_plugins=lambda params, ctx: [],
    train_signature=lambda params, index: {"strategy": "naive"},
)
