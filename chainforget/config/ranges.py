"""The range of every numeric setting, defined once and checked before any work.

Why one table: the same value can come from a flag, a run config, a suite or a metric option; it must meet the same
bound with the same message wherever it came from, and an unbounded number (a seed of 2**64, a LoRA rank of 10**9,
a bootstrap of 10**12 resamples) must be refused before it reaches numpy, torch or an allocator. Lower bounds and
types of training settings live with ``TrainConfig``; this table adds their upper bounds.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from chainforget.errors import ConfigError, brief

SEED_MAX = 2**32 - 1  # numpy's seed range

# name -> (kind, low, high, low inclusive); kind int means a whole number (not a bool)
RANGES: dict[str, tuple[type, float, float, bool]] = {
    "seed": (int, 0, SEED_MAX, True),
    "n_boot": (int, 1, 1_000_000, True),
    "min_group_size": (int, 1, 1_000_000_000, True),
    "limit_train": (int, 1, 1_000_000_000, True),
    "limit_eval": (int, 1, 1_000_000_000, True),
    "eval_batch_size": (int, 1, 65_536, True),
    "probe_size": (int, 1, 65_536, True),
    "max_iter": (int, 1, 100_000, True),
    "tol": (float, 0.0, 1.0, False),
    "max_runs": (int, 1, 10_000_000, True),  # --max-runs: what a suite may expand to
}
# upper bounds of training settings (TrainConfig checks their types and lower bounds)
TRAIN_MAX: dict[str, float] = {
    "epochs": 10_000, "batch_size": 65_536, "micro_batch_size": 65_536, "max_length": 1_048_576,
    "max_steps": 1_000_000_000, "lora_r": 4_096,
}


def rule(name: str) -> str:
    kind, low, high, low_inc = RANGES[name]
    if kind is int:
        return f"an integer in [{int(low)}, {int(high)}]"
    return f"a number in {'[' if low_inc else '('}{low:g}, {high:g}]"


def check_number(name: str, value: Any, where: str = "") -> Any:
    """``value`` when it lies in ``name``'s range, else a one-line ConfigError (the same for flags and files)."""
    kind, low, high, low_inc = RANGES[name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if ok:
        ok = math.isfinite(value) and (value >= low if low_inc else value > low) and value <= high
    if not ok:
        raise ConfigError(f"{where}{name} must be {rule(name)}, got {brief(value)}")
    return value


def check_train_bounds(train: Mapping[str, Any]) -> None:
    """Upper bounds of the training settings given (numbers, or the strings --set passes), before any work."""
    for key, high in TRAIN_MAX.items():
        value = train.get(key)
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                continue  # not a number: TrainConfig says so, with its own message
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > high:
            raise ConfigError(f"{key} must be <= {int(high)}, got {brief(train.get(key))}; a larger value cannot "
                              f"fit in memory (pass a smaller --{key.replace('_', '-')})")
