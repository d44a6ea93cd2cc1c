"""Greedy generation, batched with left padding, plus GSM8K-style final-number parsing.

A hand-written greedy loop (rather than ``model.generate``) so that stop sequences are checked per row on the decoded
text and rows stop independently: a stopped row leaves the batch at once (its KV-cache rows are dropped) and waiting
prompts take the free slots (continuous batching), so the batch never keeps computing rows that are done while one
long answer runs to ``max_new_tokens``. Left padding with an attention mask and explicit position ids makes a padded
row compute what it would compute alone.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable, Sequence

from chainforget.engine.counts import pad_token_id

DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_STOP = ("\n\nQuestion:", "Question:", "</s>")

SPECULATE_ROWS = 4  # rows at most for prompt-lookup drafting (a step then costs about as much for 1 row as for 4)
DRAFT_TOKENS = 6  # draft tokens per row and step

_NUMBER = re.compile(r"-?\$?\s?\d(?:[\d,]*\d)?(?:\.\d+)?")


@dataclass(frozen=True)
class Generation:
    text: str  # decoded continuation, cut before the first stop sequence
    token_ids: tuple[int, ...]  # tokens produced (at most max_new_tokens; EOS not included)


def normalize_number(text: str) -> str | None:
    """Canonical form of a number string: no ``$``/commas/spaces, no trailing ``.0``; ``None`` if not a number."""
    s = text.replace("$", "").replace(",", "").replace(" ", "").strip().rstrip(".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def parse_final_number(text: str, pattern: str | None = None, fallback: str = "last_number") -> str | None:
    """The answer number: the first number after ``####`` (or the first match of ``pattern``, its group 1 if it
    has one), else with ``fallback="last_number"`` the last number in the text; ``None`` when nothing is found."""
    if pattern is not None:
        m = re.search(pattern, text)
        if m:
            return normalize_number(m.group(1) if m.groups() else m.group(0))
    elif "####" in text:
        found = _NUMBER.findall(text.split("####", 1)[1])
        if found:
            return normalize_number(found[0])
    if fallback != "last_number":
        return None
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def exact_match(parsed: str | None, gold: str) -> float:
    """1.0 when the parsed number equals the gold answer (both normalised), else 0.0."""
    if parsed is None:
        return 0.0
    gold_norm = parse_final_number(str(gold))
    if gold_norm is None:
        return float(parsed == str(gold).strip())
    return float(parsed == gold_norm)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop sequence, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _cache_kwarg(model) -> str:
    """Name of the KV-cache keyword of the model's forward (``cache`` in recent transformers, else the old name)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


@dataclass
class _Row:
    index: int  # the prompt's position in the input
    next_pos: int  # position id of the next token fed
    gen: list[int]


def _refillable(cache) -> bool:
    """A cache whose per-layer key/value tensors can be padded and concatenated (plain dynamic layers)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
                                for layer in layers)


def _merge(cache, attn, new_cache, new_attn):
    """Rows of ``new_cache`` appended to ``cache`` (both left-padded to the longer one; padding is masked)."""
    import torch
    import torch.nn.functional as F

    T = max(attn.shape[1], new_attn.shape[1])

    def left(t, n):
        return F.pad(t, (0, 0, n, 0)) if n else t

    for old, new in zip(cache.layers, new_cache.layers):
        pa, pb = T - old.keys.shape[-2], T - new.keys.shape[-2]
        old.keys = torch.cat([left(old.keys, pa), left(new.keys, pb)], dim=0)
        old.values = torch.cat([left(old.values, pa), left(new.values, pb)], dim=0)
    attn = torch.cat([F.pad(attn, (T - attn.shape[1], 0)), F.pad(new_attn, (T - new_attn.shape[1], 0))], dim=0)
    return cache, attn


def _prefill(model, prompt_ids: list[list[int]], pad_id: int, device):
    """Left-padded prompts through the model: their cache, attention mask and next-token logits."""
    import torch

    B, P = len(prompt_ids), max(len(p) for p in prompt_ids)
    ids = torch.full((B, P), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P), dtype=torch.long)
    for b, p in enumerate(prompt_ids):
        ids[b, P - len(p):] = torch.tensor(p)
        attn[b, P - len(p):] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    attn = attn.to(device)
    out = model(input_ids=ids.to(device), attention_mask=attn, position_ids=pos.to(device), use_cache=True,
                logits_to_keep=1)
    return _output_cache(out), attn, out.logits[:, -1]


def draft(seq: Sequence[int], k: int, min_ngram: int = 2, max_ngram: int = 4) -> list[int]:
    """Prompt-lookup draft: the up to ``k`` tokens that followed the latest earlier occurrence of the longest
    suffix n-gram of ``seq`` (prompt + generation), or none. A guess only: the model verifies every token."""
    n_max = min(max_ngram, len(seq) - 1)
    for n in range(n_max, min_ngram - 1, -1):
        tail = list(seq[-n:])
        for start in range(len(seq) - n - 1, -1, -1):
            if list(seq[start:start + n]) == tail:
                return list(seq[start + n:start + n + k])
    return []


def _generate_all(model, tokenizer, encoded: list[list[int]], order: list[int], max_new_tokens: int,
                  stop: Sequence[str], eos_ids: set[int], pad_id: int, device, batch_size: int,
                  on_batch: Callable[[int], None] | None) -> list[Generation]:
    """Continuous batching: a row leaves the batch as soon as it stops, and waiting prompts take the free slots
    (prefilled together, their cache appended to the running one) once a quarter of the batch is free.

    When no prompt waits and at most ``SPECULATE_ROWS`` rows run (the tail of long answers, where a step costs about
    the same for one row as for several), each row feeds up to ``DRAFT_TOKENS`` prompt-lookup draft tokens after
    its last token; the drafts that equal the model's greedy choice are kept, the rest stay in the cache as masked
    holes. The output is the greedy one: every kept token is the argmax at its position."""
    import torch

    results: list = [None] * len(encoded)
    if max_new_tokens <= 0:
        return [Generation("", ()) for _ in encoded]
    cache_kw = _cache_kwarg(model)
    tail = max((len(s) for s in stop), default=0) + 4
    queue = list(order)
    rows: list[_Row] = []
    pending: list[list[int]] = []  # per row: tokens the last forward chose, not yet checked
    cache = attn = None
    refill_at = max(1, batch_size // 4)
    while queue or rows:
        free = batch_size - len(rows)
        if queue and (not rows or (free >= refill_at and _refillable(cache))):
            take, queue = queue[:free], queue[free:]
            new_cache, new_attn, new_logits = _prefill(model, [encoded[i] for i in take], pad_id, device)
            rows += [_Row(i, len(encoded[i]), []) for i in take]
            pending += [[t] for t in new_logits.argmax(-1).tolist()]
            cache, attn = (new_cache, new_attn) if cache is None else _merge(cache, attn, new_cache, new_attn)
        keep, done = [], 0
        for j, (row, toks) in enumerate(zip(rows, pending)):
            finished = False
            for tok in toks:
                if tok in eos_ids:
                    finished = True
                    break
                row.gen.append(tok)
                if (stop and cut_at_stop(tokenizer.decode(row.gen[-tail:]), stop)[1]) \
                        or len(row.gen) >= max_new_tokens:
                    finished = True
                    break
            if finished:
                results[row.index] = Generation(cut_at_stop(tokenizer.decode(row.gen), stop)[0], tuple(row.gen))
                done += 1
            else:
                keep.append(j)
        if done and on_batch is not None:
            on_batch(done)
        if len(keep) < len(rows):
            rows = [rows[j] for j in keep]
            if not rows:
                cache = attn = None
                pending = []
                continue
            idx = torch.tensor(keep, device=attn.device)
            cache.batch_select_indices(idx)
            attn = attn[idx]
        drafts = [[] for _ in rows]
        if not queue and len(rows) <= SPECULATE_ROWS and _refillable(cache):
            drafts = [draft(encoded[r.index] + r.gen, min(DRAFT_TOKENS, max_new_tokens - len(r.gen) - 1))
                      for r in rows]
        width = 1 + max(len(d) for d in drafts)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(rows), width), dtype=attn.dtype)
        for j, (row, d) in enumerate(zip(rows, drafts)):
            ids[j, :1 + len(d)] = torch.tensor([row.gen[-1], *d])
            new_mask[j, :1 + len(d)] = 1
        pos = torch.tensor([r.next_pos for r in rows])[:, None] + torch.arange(width)[None, :]
        attn = torch.cat([attn, new_mask.to(attn.device)], dim=1)
        out = model(input_ids=ids.to(attn.device), attention_mask=attn, position_ids=pos.to(attn.device),
                    use_cache=True, logits_to_keep=width, **{cache_kw: cache})
        cache = _output_cache(out)
        choice = out.logits[:, -width:].argmax(-1).tolist()
        pending = []
        for j, (row, d) in enumerate(zip(rows, drafts)):
            kept = 0
            while kept < len(d) and choice[j][kept] == d[kept]:
                kept += 1
            pending.append(d[:kept] + [choice[j][kept]])
            if kept < width - 1:  # rejected drafts (and padding) stay in the cache, masked
                attn[j, attn.shape[1] - width + 1 + kept:] = 0
            row.next_pos += 1 + kept
    return results


def greedy_generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                    stop: Sequence[str] = DEFAULT_STOP, batch_size: int = 16, device=None,
                    on_batch: Callable[[int], None] | None = None) -> list[Generation]:
    """Greedy continuations of ``prompts`` (in input order); call under ``torch.no_grad`` in eval mode.
    ``on_batch`` gets the number of prompts finished at each step that finishes some."""
    if device is None:
        device = next(model.parameters()).device
    encoded = [list(x) or [tokenizer.eos_token_id] for x in tokenizer(list(prompts))["input_ids"]] if prompts else []
    eos_ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos_ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
    pad_id = pad_token_id(tokenizer)
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    return _generate_all(model, tokenizer, encoded, order, max_new_tokens, list(stop), eos_ids, pad_id, device,
                         batch_size, on_batch)
