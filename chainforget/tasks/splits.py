"""Deterministic train/eval splits and group-stratified subsamples.

Both depend only on the data and ``SplitRule.seed``, never on the run seed or on Python's per-process ``hash()``
randomisation: every ordering comes from sha256 of ``"<seed>\\0<key>"``, so two processes (or two machines) agree.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from typing import Sequence

from chainforget.errors import ConfigError
from chainforget.tasks.base import Example, SplitRule


def stable_key(seed: int, key: str) -> bytes:
    """A process-independent sort key (sha256), the only source of "randomness" in splits and subsamples."""
    return hashlib.sha256(f"{seed}\0{key}".encode()).digest()


def unit_of(example: Example, unit: str | None) -> str:
    """The split unit of an example: its id, an attribute (``group``) or a meta key (``template``, ``meta.x``)."""
    if unit is None:
        return example.id
    key = unit[5:] if unit.startswith("meta.") else unit
    if not unit.startswith("meta.") and hasattr(example, key):
        return str(getattr(example, key))
    try:
        return str(example.meta[key])
    except KeyError:
        raise ConfigError(f"split unit {unit!r} is neither an Example attribute nor a meta key of example "
                          f"{example.id!r}; set split.unit to e.g. 'template' or null") from None


def split_examples(examples: Sequence[Example], rule: SplitRule) -> tuple[list[Example], list[Example]]:
    """(train, eval) in data order.

    Units (``rule.unit``; each example by default) are assigned as a whole, stratified by the group of the unit's
    first example: within each group the units are ordered by ``stable_key(seed, unit)`` and the first
    ``round(eval_fraction * n_units)`` go to eval, keeping at least one unit on each side when the group has two.
    """
    if rule.eval_only:
        return [], list(examples)
    if rule.predefined:
        train = [e for e in examples if e.meta.get("split") == "train"]
        evaluation = [e for e in examples if e.meta.get("split") == "eval"]
        return train, evaluation
    unit_group: dict[str, str] = {}
    for ex in examples:
        unit_group.setdefault(unit_of(ex, rule.unit), ex.group)
    units_by_group: dict[str, list[str]] = defaultdict(list)
    for u, g in unit_group.items():
        units_by_group[g].append(u)
    eval_units: set[str] = set()
    for units in units_by_group.values():
        units.sort(key=lambda u: stable_key(rule.seed, u))
        n = len(units)
        k = int(math.floor(rule.eval_fraction * n + 0.5))
        k = min(max(k, 1), n - 1) if n >= 2 else (1 if rule.eval_fraction >= 0.5 else 0)
        eval_units.update(units[:k])
    train, evaluation = [], []
    for ex in examples:
        (evaluation if unit_of(ex, rule.unit) in eval_units else train).append(ex)
    return train, evaluation


def allocate(sizes: dict[str, int], limit: int, seed: int) -> dict[str, int]:
    """Spread ``limit`` over groups as evenly as their sizes allow (water filling); every group gets at least one.

    A limit below the number of groups is raised to one example per group: per-group scores need every group.
    """
    alloc = {g: 0 for g in sizes}
    remaining = max(limit, sum(1 for n in sizes.values() if n > 0))
    active = sorted((g for g, n in sizes.items() if n > 0), key=lambda g: stable_key(seed, "group:" + g))
    while remaining > 0 and active:
        share = remaining // len(active)
        if share == 0:  # fewer left than groups: one more each for the first groups in a fixed order
            for g in active[:remaining]:
                alloc[g] += 1
            break
        for g in active:
            take = min(share, sizes[g] - alloc[g])
            alloc[g] += take
            remaining -= take
        active = [g for g in active if alloc[g] < sizes[g]]
    return alloc


def stratified_subsample(examples: Sequence[Example], limit: int | None, seed: int,
                         unit: str | None = None) -> list[Example]:
    """All examples (``limit=None``) or a group-stratified subsample, in a fixed pseudo-random order.

    Within a group, examples are taken in ``stable_key(seed, id)`` order, so a larger limit keeps every example of a
    smaller one. With ``unit`` (an attribute or meta key, as for splits) whole units are taken in
    ``stable_key(seed, unit)`` order instead, each unit's examples in id order, and the group's last unit is cut to
    its allocation (so group sizes, and the nesting of limits, are the same as example by example). The result is
    ordered by the id key, mixing groups (safe even for a consumer that never shuffles).
    """
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be a positive integer or None, got {limit!r}; e.g. --limit-eval 200")
    order = sorted(examples, key=lambda e: stable_key(seed, e.id))
    if limit is None or limit >= len(order):
        return order
    by_group: dict[str, list[Example]] = defaultdict(list)
    for ex in order:
        by_group[ex.group].append(ex)
    alloc = allocate({g: len(v) for g, v in by_group.items()}, limit, seed)
    keep: set[int] = set()
    for g, members in by_group.items():
        keep.update(id(ex) for ex in _take(members, alloc[g], seed, unit))
    return [ex for ex in order if id(ex) in keep]


def _take(members: list[Example], n: int, seed: int, unit: str | None) -> list[Example]:
    """The first ``n`` examples of one group, example by example or whole ``unit`` by whole unit."""
    if unit is None:
        return members[:n]
    units: dict[str, list[Example]] = defaultdict(list)
    for ex in members:
        units[unit_of(ex, unit)].append(ex)
    chosen: list[Example] = []
    for u in sorted(units, key=lambda u: stable_key(seed, "unit:" + u)):
        if len(chosen) >= n:
            break
        chosen.extend(sorted(units[u], key=lambda e: e.id))
    return chosen[:n]
