"""``safety-retune``: the paper's mitigation, a third fine-tuning stage after the chain.

Ung et al. (2024) recover forgotten safety by re-tuning, after the chain, on the last capability task's data with a
small amount (~5%) of safety data mixed in. Here the chain itself trains exactly like ``naive`` (its checkpoints are
shared with naive runs) and one extra stage, ``retune``, adds a score-matrix row so the repair is visible.

The mix, precisely: all training examples of the LAST capability task of the chain (``n_cap`` of them) plus
``ceil(safety_fraction * n_cap)`` safety examples (capped at what the chain's safety tasks have), split evenly
across the chain's safety tasks and chosen group-balanced within each, so every demographic group is rehearsed.
With the default 0.05, one safety example accompanies every 20 capability examples. The stage's examples are
shuffled with a seeded RNG (the template's loader may shuffle again).
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping

from chainforget.errors import ConfigError
from chainforget.strategies.base import Param, StageSpec, StrategyContext, StrategySpec
from chainforget.strategies.selection import SELECTIONS, select

PARAMS = (
    Param("safety_fraction", "float", 0.05, "safety examples added to the re-tuning stage, as a fraction of the "
          "last capability task's training examples (0.05 = 1 safety per 20 capability examples)", low=0.0, high=10.0),
    Param("selection", "str", "group_balanced", "how safety examples are chosen: group_balanced keeps every "
          "demographic group, random is a seeded uniform sample", choices=SELECTIONS),
    Param("seed", "int", -1, "seed of the safety-example choice and of the mix order; -1 uses the run's --seed",
          low=-1),
)


def _kind(ctx: StrategyContext, name: str) -> str:
    return getattr(getattr(ctx.tasks[name], "spec", None), "kind", "")


def retune_examples(params: Mapping[str, Any], ctx: StrategyContext) -> list[Any]:
    """The re-tuning stage's examples: last capability task + a group-balanced safety fraction (module docstring)."""
    capability = [t for t in ctx.chain if _kind(ctx, t) == "capability"]
    safety = list(dict.fromkeys(t for t in ctx.chain if _kind(ctx, t) == "safety"))
    if not capability:
        raise ConfigError(f"safety-retune needs a capability task in the chain ({','.join(ctx.chain)}); "
                          f"add one, e.g. --chain bbq,gsm8k")
    if not safety:
        raise ConfigError(f"safety-retune needs a safety task in the chain ({','.join(ctx.chain)}); "
                          f"add one, e.g. --chain bbq,gsm8k")
    seed = ctx.seed if params["seed"] < 0 else params["seed"]
    cap = list(ctx.train_examples[capability[-1]])
    available = sum(len(ctx.train_examples[t]) for t in safety)
    n_safety = min(available, math.ceil(params["safety_fraction"] * len(cap) - 1e-9))
    # Split n_safety evenly over the safety tasks; a task short of examples hands its share to the next ones.
    mixed: list[Any] = list(cap)
    left = n_safety
    for k, task in enumerate(safety):
        pool = list(ctx.train_examples[task])
        share = min(len(pool), -(-left // (len(safety) - k)))
        mixed += select(pool, share, params["selection"], f"safety-retune:{seed}:{task}")
        left -= share
    random.Random(f"safety-retune-order:{seed}").shuffle(mixed)
    return mixed


def extra_stages(params: Mapping[str, Any], ctx: StrategyContext) -> list[StageSpec]:
    return [StageSpec(label="retune", examples=retune_examples(params, ctx))]


SPEC = StrategySpec(
    name="safety-retune",
    description="the paper's mitigation: after the chain, re-tune on the last capability task mixed with a "
                "small group-balanced fraction of safety data (an extra score-matrix row)",
    params=PARAMS,
    make_plugins=lambda params, ctx: [],
    extra_stages=extra_stages,
    train_signature=lambda params, index: {"strategy": "naive"},
)
