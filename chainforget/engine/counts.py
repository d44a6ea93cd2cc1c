"""What a run's forward passes processed, counted where they run: training batches in the template, packed scoring
rows in ``engine.loglik``. result.json keeps the counts per stage, and the dry run plans the same numbers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenCount:
    """``tokens``: the real tokens of the passes; ``padded``: the positions they computed, padding included (a batch
    is as long as its longest row), which is what the wall time follows."""

    tokens: int = 0
    padded: int = 0

    def add(self, tokens: int, padded: int) -> None:
        self.tokens += int(tokens)
        self.padded += int(padded)

    def to_dict(self) -> dict[str, int]:
        return {"tokens": self.tokens, "padded": self.padded}


def pad_token_id(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its EOS (causal LMs often have no pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
