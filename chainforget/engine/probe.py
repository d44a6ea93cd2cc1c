"""Run the model on ``Example``s outside the training loop, exactly as training and evaluation see them.

Why: importance-based strategies (EWC's Fisher, Memory-Aware Synapses, a gradient probe) need forward and backward
passes on a task's examples between chain steps, and metrics need evaluation records. These helpers reuse the
engine's own pieces (``collate.encode_examples`` and ``collate.collate`` for the batches, ``training.target_logits``
and ``training.target_logits_loss`` for the loss, ``scoring.score_examples`` for records), so a plugin computes on
the same tokens, truncation and loss the template trains with.

    for batch in example_batches(strategy.tokenizer, examples, max_length=strategy.train_cfg.max_length):
        loss = example_loss(strategy.model, batch)          # mean target-token cross-entropy, with gradients
        loss.backward()
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from chainforget.engine.collate import collate, encode_examples
from chainforget.engine.counts import pad_token_id
from chainforget.engine.training import target_logits, target_logits_loss, target_mask, target_tokens

REDUCTIONS = ("mean", "sum", "per_example")


def example_batches(tokenizer, examples: Sequence[Any], *, max_length: int, batch_size: int = 1,
                    device=None) -> Iterator[dict[str, Any]]:
    """The examples as training batches of ``batch_size``, in order: ``input_ids``, ``attention_mask``, ``labels``
    (-100 on prompt and padding), lists ``ids``, ``groups``, ``tasks``; tensors on ``device`` (default: left on the
    CPU). Prompt and target are tokenised and truncated as in training; an example with no target token left is
    skipped, as training skips it."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    encoded = encode_examples(tokenizer, list(examples), max_length, task_of=lambda ex: str(getattr(ex, "task", "")))
    pad = pad_token_id(tokenizer)
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start:start + batch_size], pad)
        yield {k: (v.to(device) if device is not None and hasattr(v, "to") else v) for k, v in batch.items()}


def example_logits(model, batch: dict[str, Any]):
    """Logits ``[N, V]`` at the batch's N target-predicting positions (row-major), as the template's
    ``strategy.mb_output``; with gradients unless called under ``torch.no_grad()``."""
    return target_logits(model, batch)


def example_loss(model, batch: dict[str, Any], reduction: str = "mean"):
    """Target-token cross-entropy of ``batch`` at the model's current weights: ``mean`` over its target tokens (the
    training loss of a one-batch step), ``sum``, or ``per_example`` (``[B]``, each example's mean over its own
    target tokens, e.g. a per-sample Fisher)."""
    import torch

    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    keep = target_mask(batch["labels"])
    logits = target_logits(model, batch, keep)
    targets = target_tokens(batch["labels"], keep)
    if reduction != "per_example":
        return target_logits_loss(logits, targets, reduction)
    token_loss = target_logits_loss(logits, targets, "none")
    rows = keep.nonzero()[:, 0]
    sums = torch.zeros(keep.size(0), dtype=token_loss.dtype, device=token_loss.device).index_add(0, rows, token_loss)
    counts = torch.bincount(rows, minlength=keep.size(0)).clamp(min=1)
    return sums / counts


def score(model, tokenizer, task, examples: Sequence[Any], *, batch_size: int = 16, stage: int = 0) -> list[dict]:
    """Evaluation records of ``examples`` (``docs/contracts.md``), scored as a run scores them after a stage:
    ``task`` is a registered ``Task`` or its ``TaskSpec``. The model's train/eval flags are restored afterwards."""
    from chainforget.engine.scoring import score_examples

    spec = getattr(task, "spec", task)
    return score_examples(model, tokenizer, spec, examples, stage=stage, batch_size=batch_size)
