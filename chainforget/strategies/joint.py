"""``joint``: multi-task training on the union of the chain's data, the usual upper reference.

The runner sees ``joint=True`` and trains every chain task's training examples as ONE experience (one score-matrix
row after the base model); no plugin is needed.
"""

from __future__ import annotations

from chainforget.strategies.base import StrategySpec

SPEC = StrategySpec(
    name="joint",
    description="multi-task reference: the union of the chain's training data as one experience",
    params=(),
    make_plugins=lambda params, ctx: [],
    joint=True,
    train_signature=lambda params, index: {"strategy": "joint"},
)
