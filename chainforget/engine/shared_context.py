"""Pack scoring requests that share leading context tokens into one row laid out as a token tree (a trie).

A request is a context with its continuations (``engine.loglik.Request``). Every sequence ``ctx + cont[:-1]`` of a group
of requests goes into one token trie (the last continuation token is only predicted, never read), laid out depth first:
the descendants of token ``i`` then fill the span ``[i, end[i])``, so "token ``q`` may attend to token ``k``" is exactly
``k <= q < end[k]`` (``k`` is ``q`` or one of its ancestors), and a token's position id is its depth. Each token
therefore computes what it computes in its own unshared sequence, while every shared context token runs once: the
context before the options of one example, and the context that several examples share (BBQ asks two questions about
each context and extends the ambiguous context into the disambiguated one; BoolQ asks several questions about one
passage).

Requests are grouped by sorting contexts lexicographically (sequences with common leading tokens are then adjacent) and
cutting where neighbours share fewer than ``MIN_SHARED`` tokens or a row would grow too long. Groups depend only on the
requests, never on the batch size, so a request's arithmetic does not change with the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

MIN_SHARED = 16  # tokens two neighbouring contexts must share to be packed into one row
MAX_GROUP = 8  # requests per row at most
MAX_ROW_TOKENS = 1024  # tokens per packed row at most (unless one request alone is longer)


class _Node:
    __slots__ = ("token", "depth", "children", "index")

    def __init__(self, token: int | None, depth: int):
        self.token, self.depth, self.children, self.index = token, depth, {}, -1

    def child(self, token: int) -> "_Node":
        node = self.children.get(token)
        if node is None:
            node = self.children[token] = _Node(token, self.depth + 1)
        return node


@dataclass
class PackedRow:
    """One packed row: tokens, position ids, subtree ends, and what each predicting position predicts."""

    ids: list[int]
    pos: list[int]
    end: list[int]
    # (row index of the predicting token, target token, request number in the group, continuation number)
    preds: list[tuple[int, int, int, int]] = field(default_factory=list)
    n_requests: int = 0
    n_conts: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def kept(self) -> int:
        """Distinct positions whose logits are needed."""
        return len({p for p, _, _, _ in self.preds})


def pack(requests: Sequence) -> PackedRow:
    """Lay the requests' sequences out as one token tree (see the module docstring)."""
    root = _Node(None, -1)
    targets = []  # (predicting node, target token, request, continuation)
    for r, req in enumerate(requests):
        node = root
        for tok in req.ctx:
            node = node.child(tok)
        for k, cont in enumerate(req.conts):
            at = node
            for j, tok in enumerate(cont):
                targets.append((at, tok, r, k))
                if j < len(cont) - 1:
                    at = at.child(tok)
    ids, pos, parent = [], [], []
    stack = [(child, -1) for child in reversed(list(root.children.values()))]
    while stack:  # pre-order, iteratively (contexts can be thousands of tokens deep)
        node, up = stack.pop()
        node.index = len(ids)
        ids.append(node.token)
        pos.append(node.depth)
        parent.append(up)
        stack.extend((child, node.index) for child in reversed(list(node.children.values())))
    size = [1] * len(ids)
    for i in range(len(ids) - 1, -1, -1):
        if parent[i] >= 0:
            size[parent[i]] += size[i]
    end = [i + s for i, s in enumerate(size)]
    preds = [(node.index, tok, r, k) for node, tok, r, k in targets]
    return PackedRow(ids, pos, end, preds, len(requests), [len(req.conts) for req in requests])


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def group_requests(requests: Sequence, min_shared: int = MIN_SHARED, max_group: int = MAX_GROUP,
                   max_tokens: int = MAX_ROW_TOKENS) -> list[list[int]]:
    """Indices of requests to pack together: neighbours in context order sharing >= ``min_shared`` tokens."""
    order = sorted(range(len(requests)), key=lambda i: (requests[i].ctx, i))
    groups: list[list[int]] = []
    cur: list[int] = []
    tokens = 0
    for i in order:
        req = requests[i]
        shared = common_length(requests[cur[-1]].ctx, req.ctx) if cur else 0
        add = req.length - shared
        if cur and (shared < min_shared or len(cur) >= max_group or tokens + add > max_tokens):
            groups.append(cur)
            cur, tokens, add = [], 0, req.length
        cur.append(i)
        tokens += add
    if cur:
        groups.append(cur)
    return groups


def attention_allowed(end, length: int):
    """``[length, length]`` bool: ``q`` may attend ``k`` iff ``k <= q < end[k]``; padding attends to itself."""
    import torch

    n = len(end)
    idx = torch.arange(length)
    ends = torch.cat([torch.tensor(end, dtype=torch.long), idx[n:] + 1])  # a pad token is its own subtree
    q, k = idx[:, None], idx[None, :]
    return (k <= q) & (q < ends[None, :])
