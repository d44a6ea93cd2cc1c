"""Log-likelihood of continuations given a shared context, with the context encoded once per example.

Tokenisation follows lm-evaluation-harness 0.4 (``HFLM._encode_pair`` for causal models), so the same ``(context,
continuation)`` request gives the same token ids here and in lm-eval: trailing whitespace of the context moves to the
continuation, ``whole = encode(context + continuation)``, ``ctx = encode(context)`` and the continuation tokens are
``whole[len(ctx):]``; the model reads ``ctx + continuation``. ``encode`` is the tokenizer's plain ``__call__`` with its
default special tokens (lm-eval's default ``add_bos_token=None``).

Packed scoring (``engine.shared_context``): the requests that share leading context tokens (the options of one example;
the examples that ask about one context) go into one row laid out as a token tree, with a custom 4-D attention mask
(each token sees its ancestors and itself) and position ids equal to each token's depth. Each option is scored exactly
as if it followed its context alone, but every shared context token runs once. Rows are right-padded; padding is masked
out, so it cannot change a row's result, and which requests share a row never depends on the batch size (only float
rounding differs between batch shapes). Logits are computed only at the positions that predict option tokens
(``logits_to_keep`` as a boolean mask), which keeps memory independent of the vocabulary-times-sequence product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from chainforget.engine.counts import TokenCount
from chainforget.engine.shared_context import PackedRow, attention_allowed, group_requests, pack

# Upper bound on logits (kept positions x vocabulary) materialised per forward pass (~200 MB in float32 at 50M);
# a batch that would exceed it is split.
MAX_LOGIT_ELEMENTS = 50_000_000


@dataclass(frozen=True)
class Request:
    """One context with its continuations, already tokenised (``cont`` may hold a single target)."""

    ctx: list[int]
    conts: list[list[int]]

    @property
    def length(self) -> int:
        return len(self.ctx) + sum(len(c) for c in self.conts)


def _split_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def empty_context_token_id(tokenizer) -> int:
    """The token that stands in for an empty context (lm-eval: BOS if the tokenizer has one, else EOS)."""
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    return tokenizer.eos_token_id


def encode_requests(tokenizer, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                    max_length: int | None = None) -> list[Request]:
    """Tokenise each context once and its continuations lm-eval style; left-truncate contexts to ``max_length``."""
    ctx_texts, whole_texts, owners = [], [], []
    for i, (context, conts) in enumerate(zip(contexts, continuations)):
        stripped = _split_trailing_space(context, "")[0]
        ctx_texts.append(stripped)
        for cont in conts:
            c, k = _split_trailing_space(context, cont)
            whole_texts.append(c + k)
            owners.append(i)
    ctx_ids = tokenizer(ctx_texts)["input_ids"] if ctx_texts else []
    whole_ids = tokenizer(whole_texts)["input_ids"] if whole_texts else []
    conts_ids: list[list[list[int]]] = [[] for _ in ctx_texts]
    for owner, whole in zip(owners, whole_ids):
        conts_ids[owner].append(list(whole[len(ctx_ids[owner]):]) if ctx_texts[owner] else None)
    out = []
    for i, ctx in enumerate(ctx_ids):
        ctx = list(ctx)
        conts = conts_ids[i]
        if not ctx_texts[i] or not ctx:  # empty context: lm-eval conditions on BOS (else EOS)
            conts = [list(tokenizer(k, add_special_tokens=False)["input_ids"]) for k in continuations[i]]
            ctx = [empty_context_token_id(tokenizer)]
        if max_length is not None:
            room = max(max_length - max((len(c) for c in conts), default=0), 1)
            ctx = ctx[-room:]
        out.append(Request(ctx, conts))
    return out


def _forward_batch(model, rows: list[PackedRow], pad_id: int, device) -> list[list[list[tuple[float, int]]]]:
    """One forward pass over packed rows; per row, per request, per continuation ``(sum logprob, n_tokens)``."""
    import torch

    B, L = len(rows), max(r.length for r in rows)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    pos = torch.zeros((B, L), dtype=torch.long)
    keep = torch.zeros((B, L), dtype=torch.bool)
    allowed = torch.zeros((B, L, L), dtype=torch.bool)
    pairs = []  # (row, predicting position, target token, continuation slot)
    slots = []  # (row, request in the row, continuation)
    for b, row in enumerate(rows):
        n = row.length
        ids[b, :n] = torch.tensor(row.ids)
        pos[b, :n] = torch.tensor(row.pos)
        allowed[b] = attention_allowed(row.end, L)
        first = len(slots)
        offsets = []
        for r, k in enumerate(row.n_conts):
            offsets.append(len(slots) - first)
            slots.extend((b, r, c) for c in range(k))
        for p, tok, r, c in row.preds:
            keep[b, p] = True
            pairs.append((b, p, tok, first + offsets[r] + c))
    dtype = next(model.parameters()).dtype
    mask = torch.zeros((B, 1, L, L), dtype=dtype).masked_fill(~allowed[:, None], torch.finfo(dtype).min)

    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                use_cache=False, logits_to_keep=keep.to(device))
    logits = out.logits
    if logits.dim() == 3:  # a model that ignores a boolean logits_to_keep returns every position
        logits = logits[keep.to(logits.device)] if logits.shape[1] == L else logits.reshape(-1, logits.shape[-1])
    flat = (keep.flatten().cumsum(0) - 1).view(B, L)
    sums = torch.zeros(len(slots), dtype=torch.float64)
    counts = [0] * len(slots)
    if pairs:
        b_idx, p_idx, toks, slot_list = (torch.tensor(col) for col in zip(*pairs))
        at = flat[b_idx, p_idx].to(logits.device)
        toks = toks.to(logits.device)
        lse = torch.cat([torch.logsumexp(chunk.float(), dim=-1) for chunk in logits.split(256)])
        lp = (logits[at, toks].float() - lse[at]).double().cpu()
        sums.index_add_(0, slot_list, lp)
        for s in slot_list.tolist():
            counts[s] += 1
    result: list[list[list[tuple[float, int]]]] = [[[] for _ in row.n_conts] for row in rows]
    for slot, (b, r, _c) in enumerate(slots):
        result[b][r].append((float(sums[slot]), counts[slot]))
    return result


def batches(rows: list[PackedRow], batch_size: int, max_rows: int = 1024) -> list[list[int]]:
    """Indices of packed rows grouped longest-first into batches of at most ``batch_size`` requests (a row is never
    split) and ``max_rows`` logit rows."""
    order = sorted(range(len(rows)), key=lambda i: (-rows[i].length, i))
    out, cur, n_req, kept = [], [], 0, 0
    for i in order:
        k, n = rows[i].kept, rows[i].n_requests
        if cur and (n_req + n > batch_size or kept + k > max_rows):
            out.append(cur)
            cur, n_req, kept = [], 0, 0
        cur.append(i)
        n_req += n
        kept += k
    if cur:
        out.append(cur)
    return out


def pack_batches(requests: list[Request], batch_size: int, vocab_size: int
                 ) -> tuple[list[list[int]], list[PackedRow], list[list[int]]]:
    """How the scorer runs ``requests``: the groups that share leading context tokens, their packed rows, and the batches
    of row indices (longest first; at most ``batch_size`` requests and ``MAX_LOGIT_ELEMENTS`` logits each). The
    dry run plans with the same function, so its padded positions are the run's."""
    groups = group_requests(requests)
    rows = [pack([requests[i] for i in g]) for g in groups]
    return groups, rows, batches(rows, batch_size, max_rows=max(1, MAX_LOGIT_ELEMENTS // max(vocab_size, 1)))


def score_requests(model, requests: list[Request], *, batch_size: int, pad_id: int, device,
                   on_batch: Callable[[int], None] | None = None,
                   count: TokenCount | None = None) -> list[list[tuple[float, int]]]:
    """``(sum log p(continuation | context), n_tokens)`` for every continuation of every request, in input order.

    Requests sharing leading context tokens are packed into one row (``engine.shared_context``); ``on_batch`` gets the
    number of requests of each forward pass, ``count`` the packed tokens and padded positions each pass runs."""
    results: list = [None] * len(requests)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 50_000
    groups, rows, planned = pack_batches(requests, batch_size, vocab)
    for idx in planned:
        if count is not None:
            lengths = [rows[j].length for j in idx]
            count.add(sum(lengths), len(lengths) * max(lengths))
        for j, res in zip(idx, _forward_batch(model, [rows[j] for j in idx], pad_id, device)):
            for i, per_request in zip(groups[j], res):
                results[i] = per_request
        if on_batch is not None:
            on_batch(sum(rows[j].n_requests for j in idx))
    return results
