"""Deterministic example selection shared by replay and safety re-tuning.

Every choice is a pure function of the examples (their ids and groups, in the order given) and a string seed key, so
two runs with the same data and seed pick the same examples on any machine (``random.Random(str)`` seeds through
sha512, not through Python's salted ``hash``).
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

SELECTIONS = ("group_balanced", "random")


def quota(n_available: int, fraction: float, size: int = 0) -> int:
    """How many examples to keep: ``size`` if positive, else ``ceil(fraction * n)`` (at least 1 when fraction > 0).

    Capped at ``n_available``. ``ceil`` so a small task still keeps something (5% of 10 examples is 1, not 0).
    """
    want = size if size > 0 else (math.ceil(fraction * n_available - 1e-9) if fraction > 0 else 0)
    return max(0, min(int(want), n_available))


def select(examples: Sequence[Any], n: int, method: str, seed_key: str) -> list[Any]:
    """Pick ``n`` of ``examples`` with ``method`` (``group_balanced`` or ``random``), seeded by ``seed_key``.

    ``group_balanced`` gives every group ``floor(n / groups)`` examples (the remainder to the groups first in a seeded
    order); a group with too few examples gives its spare quota to the others, so exactly ``min(n, len)`` examples
    come back and every group is represented whenever ``n >= number of groups``. Within a group the choice is a
    seeded shuffle. The result keeps the input order (selection, not reordering).
    """
    if method not in SELECTIONS:
        raise ValueError(f"unknown selection {method!r}")
    n = max(0, min(n, len(examples)))
    rng = random.Random(seed_key)
    if method == "random":
        chosen = set(rng.sample(range(len(examples)), n))
        return [ex for i, ex in enumerate(examples) if i in chosen]
    by_group: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_group.setdefault(str(ex.group), []).append(i)
    groups = sorted(by_group)
    rng.shuffle(groups)  # who gets the remainder
    for g in sorted(by_group):
        rng.shuffle(by_group[g])
    take = {g: 0 for g in groups}
    left = n
    open_groups = list(groups)
    while left > 0 and open_groups:
        share, extra = divmod(left, len(open_groups))
        for k, g in enumerate(open_groups):
            add = min(share + (1 if k < extra else 0), len(by_group[g]) - take[g])
            take[g] += add
            left -= add
        open_groups = [g for g in open_groups if take[g] < len(by_group[g])]
    chosen = {i for g in groups for i in by_group[g][: take[g]]}
    return [ex for i, ex in enumerate(examples) if i in chosen]


def group_counts(examples: Sequence[Any]) -> dict[str, int]:
    """Examples per group (for tests, logs and docs)."""
    counts: dict[str, int] = {}
    for ex in examples:
        counts[str(ex.group)] = counts.get(str(ex.group), 0) + 1
    return counts
