"""The task model: frozen configs, examples with demographic groups, deterministic group-stratified splits.

Contracts other rooms rely on (see docs/architecture.md and docs/contracts.md):
- ``Example.id`` is unique within a task, ``group`` is never empty, ``gold`` is an option index (multiple choice)
  or a string (generation).
- A training pair is ``(example.prompt, example.target)``: the loss is taken on the target tokens only.
- Multiple-choice options are *continuations* of the prompt: the scorer appends ``options[k]`` to ``prompt``
  verbatim, so options carry their own leading space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

KINDS = ("safety", "capability")
TASK_FORMATS = ("multiple_choice", "generation")


@dataclass(frozen=True)
class TaskMetric:
    """A per-example score a task reports; the task's score is the mean over eval examples."""

    name: str
    higher_is_better: bool = True
    low: float = 0.0
    high: float = 1.0
    description: str = ""
    needs_generation: bool = False  # True: the scorer must generate text (costly); False: log-likelihoods suffice


@dataclass(frozen=True)
class SplitRule:
    """How a task's examples divide into train and eval, deterministically.

    ``unit`` names the example attribute(s) that must never straddle train and eval (for BBQ the template,
    ``meta['template']`` = category + question_index); ``None`` splits example by example.
    ``eval_only`` tasks (held-out probes) put every example in eval.
    ``eval_sample_unit`` names the examples that an eval *limit* draws together (for BBQ the two questions asked
    about one context, ``meta['context_id']``), so the scorer encodes the shared context once for both; ``None``
    draws example by example.
    """

    eval_fraction: float = 0.5
    seed: int = 0
    unit: str | None = None
    eval_only: bool = False
    predefined: bool = False  # use the data set's own split: ``meta['split']`` is "train" or "eval"
    eval_sample_unit: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """Declarative description of a task (lm-evaluation-harness style dataclass config)."""

    name: str
    kind: str  # "safety" | "capability"
    format: str  # "multiple_choice" | "generation"
    description: str
    prompt_template: str
    metrics: tuple[TaskMetric, ...]
    primary_metric: str
    group_fields: tuple[str, ...] = ("group",)
    split: SplitRule = SplitRule()
    source: str = ""
    license: str = ""
    notes: str = ""
    # e.g. {"max_new_tokens": 256, "stop": ["\n\n"]}; a plain dict so specs pickle (multiprocessing, ray)
    generation: Mapping[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> TaskMetric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


@dataclass(frozen=True)
class Example:
    id: str
    group: str
    prompt: str
    target: str  # training continuation: the gold option's text (MC) or the worked solution (generation)
    gold: int | str
    options: tuple[str, ...] | None = None
    subgroup: str = ""
    # A plain dict (JSON-able), not a MappingProxyType: examples must pickle and deepcopy (data loaders, buffers).
    meta: Mapping[str, Any] = field(default_factory=dict)
    task: str = ""  # the task that produced the example (replay and joint experiences mix tasks)
