"""Turn (prompt, target) examples into padded micro-batches grouped into optimizer batches, deterministically.

Tokenisation follows lm-evaluation-harness: the target's tokens are ``tok(prompt + target)[len(tok(prompt)):]``
(trailing prompt whitespace moved into the target), so training sees the same token boundary the scorer uses.
An EOS token ends every target. Labels are the input ids on target tokens and -100 on prompt and padding.
The batch plan depends only on the lengths, ``batch_size`` and the seed, never on ``micro_batch_size``, so runs with
different accumulation see the same optimizer batches.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

IGNORE = -100
BUCKET_BATCHES = 16  # optimizer batches per length-sorting bucket: enough to group lengths, still well shuffled


@dataclass(frozen=True)
class Encoded:
    """One tokenised training pair: ``input_ids[:n_prompt]`` is prompt (masked), the rest target + EOS."""

    input_ids: tuple[int, ...]
    n_prompt: int
    id: str
    group: str
    task: str
    truncated: bool = False

    @property
    def n_target(self) -> int:
        return len(self.input_ids) - self.n_prompt


def split_prompt(prompt: str, target: str) -> tuple[str, str]:
    """Move the prompt's trailing whitespace to the target (lm-eval's rule for a clean token boundary)."""
    stripped = prompt.rstrip()
    return stripped, prompt[len(stripped):] + target


def encode_examples(tokenizer, examples: Sequence[Any], max_length: int,
                    task_of: Callable[[Any], str] = lambda ex: "") -> list[Encoded]:
    """Tokenise every example (batched) as the scorer does (``engine.loglik``); truncate the prompt from the left,
    the target (from the right) only if it alone overflows ``max_length``. An empty prompt becomes the prefix token
    (BOS, else EOS), as in lm-eval."""
    pairs = [split_prompt(ex.prompt, ex.target) for ex in examples]
    whole = tokenizer([p + t for p, t in pairs])["input_ids"]
    ctx = tokenizer([p for p, _ in pairs])["input_ids"]
    eos = tokenizer.eos_token_id
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    out = []
    for ex, w, c, (prompt, target_text) in zip(examples, whole, ctx, pairs):
        if prompt and c:
            prompt_ids, target = list(c), list(w[len(c):])
        else:
            prompt_ids, target = [prefix], list(tokenizer(target_text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            target.append(eos)
        truncated = len(prompt_ids) + len(target) > max_length
        if truncated:
            keep = max(1, max_length - len(target))  # one prompt token always stays: it predicts the first target
            prompt_ids = prompt_ids[-keep:]
            target = target[:max_length - len(prompt_ids)]
        if not target:
            continue
        out.append(Encoded(tuple(prompt_ids + target), len(prompt_ids), str(ex.id), str(ex.group), task_of(ex),
                           truncated))
    return out


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors plus the lists ``ids``, ``groups``, ``tasks`` and token counts of one micro-batch."""
    import torch

    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it.input_ids)
        seq = torch.tensor(it.input_ids, dtype=torch.long)
        ids[row, :n] = seq
        mask[row, :n] = 1
        labels[row, it.n_prompt:n] = seq[it.n_prompt:]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "ids": [it.id for it in items], "groups": [it.group for it in items], "tasks": [it.task for it in items],
            # tokens carrying a loss: every target token (the first is predicted by the last prompt token)
            "n_target": sum(it.n_target for it in items), "n_tokens": sum(len(it.input_ids) for it in items)}


def masked_out(mb: dict[str, Any]) -> dict[str, Any]:
    """The same tensors with every label masked: a forward/backward that adds exactly zero to the gradient."""
    labels = mb["labels"].clone()
    labels.fill_(IGNORE)
    return {**mb, "labels": labels, "n_target": 0, "n_tokens": 0}


def shuffled_batches(lengths: Sequence[int], batch_size: int, micro_batch_size: int, seed: int,
               sort_by_length: bool = True) -> list[list[list[int]]]:
    """Optimizer batches, each a list of micro-batches of example indices.

    Seeded shuffle; with ``sort_by_length`` the shuffled order is cut into buckets of ``BUCKET_BATCHES`` batches,
    each bucket sorted by length and cut into batches, and the batch order shuffled again.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if sort_by_length:
        bucket = batch_size * BUCKET_BATCHES
        batches = []
        for start in range(0, len(order), bucket):
            chunk = sorted(order[start:start + bucket], key=lambda i: lengths[i])  # stable: ties stay shuffled
            batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
    else:
        batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    micro = max(1, min(micro_batch_size, batch_size))
    return [[b[k:k + micro] for k in range(0, len(b), micro)] for b in batches]


@dataclass
class OptimizerBatch:
    """One optimizer step's micro-batches (this process's share) and the target tokens of the whole batch."""

    micro_batches: list[dict[str, Any]]
    n_target: int  # over every process's share: the loss normaliser
    n_examples: int


def data_seed(seed: int, encoded: Sequence[Encoded]) -> int:
    """The data-order seed of an experience: the run seed and the examples' ids, not the experience's position,
    so a resumed or prefix-reusing run shuffles exactly as an uninterrupted one."""
    h = hashlib.sha256(str(seed).encode())
    for e in encoded:
        h.update(b"\0" + e.id.encode())
    return int.from_bytes(h.digest()[:8], "big")


class TrainBatches:
    """Iterable over ``OptimizerBatch``es; each pass is a new seeded epoch.

    The seed is combined with the epoch number, so epoch e of a resumed run equals epoch e of an uninterrupted one.
    Under several processes each takes every ``num_processes``-th example of each optimizer batch.
    """

    def __init__(self, encoded: Sequence[Encoded], *, batch_size: int, micro_batch_size: int, seed: int,
                 sort_by_length: bool, pad_id: int, process_index: int = 0, num_processes: int = 1):
        self.encoded = list(encoded)
        self.batch_size, self.micro_batch_size = batch_size, micro_batch_size
        self.seed, self.sort_by_length, self.pad_id = seed, sort_by_length, pad_id
        self.process_index, self.num_processes = process_index, num_processes
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.encoded) / self.batch_size)

    @property
    def micro(self) -> int:
        """Examples per forward pass: consecutive slices of this size cut each batch into micro-batches."""
        return max(1, min(self.micro_batch_size, self.batch_size))

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Example indices of every optimizer batch of ``epoch`` (micro-batch size 1 flattens the plan)."""
        lengths = [len(e.input_ids) for e in self.encoded]
        plan = shuffled_batches(lengths, self.batch_size, self.batch_size, self.seed * 1_000_003 + epoch,
                          self.sort_by_length)
        return [batch[0] for batch in plan]

    def __iter__(self) -> Iterator[OptimizerBatch]:
        plan = self.epoch_batches(self.epoch)
        self.epoch += 1
        micro = self.micro
        for batch in plan:
            mine = batch[self.process_index::self.num_processes]
            micros = [collate([self.encoded[i] for i in mine[k:k + micro]], self.pad_id)
                      for k in range(0, len(mine), micro)]
            if not micros:  # a last batch smaller than the process count: DDP still needs this process's backward
                micros = [masked_out(collate([self.encoded[batch[0]]], self.pad_id))]
            yield OptimizerBatch(micros, sum(self.encoded[i].n_target for i in batch), len(batch))
