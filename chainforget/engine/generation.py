"""Greedy generation, batched with left padding, plus GSM8K-style final-number parsing.

A hand-written greedy loop (rather than ``model.generate``) so that stop sequences are checked per row on the decoded
text, rows stop independently, and the loop ends as soon as every row has stopped. Left padding with an attention
mask and explicit position ids (``cumsum(mask) - 1``) makes a padded row compute what it would compute alone.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable, Sequence

DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_STOP = ("\n\nQuestion:", "Question:", "</s>")

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


def _generate_batch(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, stop: Sequence[str],
                    eos_ids: set[int], pad_id: int, device) -> list[Generation]:
    import torch

    B, P = len(prompt_ids), max(len(p) for p in prompt_ids)
    ids = torch.full((B, P), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P), dtype=torch.long)
    for b, p in enumerate(prompt_ids):
        ids[b, P - len(p):] = torch.tensor(p)
        attn[b, P - len(p):] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    ids, attn, pos = ids.to(device), attn.to(device), pos.to(device)
    cache_kw = _cache_kwarg(model)
    tail = max((len(s) for s in stop), default=0) + 4
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)
    gen: list[list[int]] = [[] for _ in range(B)]
    done = [max_new_tokens <= 0] * B
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1)
        for b, tok in enumerate(nxt.tolist()):
            if done[b]:
                continue
            if tok in eos_ids:
                done[b] = True
                continue
            gen[b].append(tok)
            if stop and cut_at_stop(tokenizer.decode(gen[b][-tail:]), stop)[1]:
                done[b] = True
        if all(done) or step == max_new_tokens - 1:
            break
        attn = torch.cat([attn, attn.new_ones((B, 1))], dim=1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=pos, use_cache=True,
                    logits_to_keep=1, **{cache_kw: _output_cache(out)})
    return [Generation(cut_at_stop(tokenizer.decode(g), stop)[0], tuple(g)) for g in gen]


def greedy_generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                    stop: Sequence[str] = DEFAULT_STOP, batch_size: int = 16, device=None,
                    on_batch: Callable[[int], None] | None = None) -> list[Generation]:
    """Greedy continuations of ``prompts`` (in input order); call under ``torch.no_grad`` in eval mode."""
    if device is None:
        device = next(model.parameters()).device
    encoded = [list(x) or [tokenizer.eos_token_id] for x in tokenizer(list(prompts))["input_ids"]] if prompts else []
    eos_ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos_ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    results: list = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        outs = _generate_batch(model, tokenizer, [encoded[i] for i in idx], max_new_tokens, list(stop),
                               eos_ids, pad_id, device)
        for i, g in zip(idx, outs):
            results[i] = g
        if on_batch is not None:
            on_batch(len(idx))
    return results
