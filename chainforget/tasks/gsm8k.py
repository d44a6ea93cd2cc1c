"""GSM8K (Cobbe et al. 2021): train on worked solutions, score by exact match of the final number or, cheaply, by the
mean per-token log-probability of the gold solution.

The target is the worked solution with the calculator annotations ``<<48/2=24>>`` removed (noise for a small model)
and ending in the ``#### <number>`` line, so the model learns where an answer ends. ``gold`` is the final number
without thousands separators ("1,080" -> "1080"). Uses the data set's own train (7,473) / test (1,319) split.
"""

from __future__ import annotations

import re

from chainforget.errors import DataError
from chainforget.tasks.base import Example, SplitRule, TaskSpec
from chainforget.tasks.io import data_path, read_jsonl
from chainforget.tasks.task import STANDARD_METRICS, Task, normalize_number

PROMPT = "Question: {question}\nAnswer:"
SPLITS = (("train", "train.jsonl.gz"), ("eval", "test.jsonl.gz"))


def solution_target(answer: str) -> str:
    """" " + the worked solution: annotations dropped, blank lines squeezed (``\\n\\n`` is a stop sequence)."""
    text = re.sub(r"<<[^>]*>>", "", answer)
    text = re.sub(r"\n\s*\n+", "\n", text).strip()
    return " " + text


def final_number(answer: str) -> str:
    return normalize_number(answer.rsplit("####", 1)[1])


def load(spec: TaskSpec) -> list[Example]:
    out = []
    for split, name in SPLITS:
        path = data_path("gsm8k", name)
        for i, (where, row) in enumerate(read_jsonl(path)):
            if "####" not in row.get("answer", ""):
                raise DataError(f"{path}: {where}: answer lacks the '#### <number>' line; restore the shipped file")
            out.append(Example(id=f"{spec.name}/{split}/{i}", group="all",
                               prompt=PROMPT.format(question=row["question"].strip()),
                               target=solution_target(row["answer"]), gold=final_number(row["answer"]),
                               meta={"split": split}, task=spec.name))
    return out


SPEC = TaskSpec(
    name="gsm8k",
    kind="capability",
    format="generation",
    description="GSM8K grade-school math: worked solutions; exact match of the final number (or gold log-prob)",
    prompt_template=PROMPT,
    metrics=(STANDARD_METRICS["exact_match"], STANDARD_METRICS["gold_logprob"]),
    primary_metric="exact_match",
    split=SplitRule(predefined=True),
    source="Cobbe et al., Training Verifiers to Solve Math Word Problems, 2021 (github.com/openai/grade-school-math)",
    license="MIT",
    notes="configure(primary_metric='gold_logprob') gives the cheap variant (no generation).",
    generation={"max_new_tokens": 256, "stop": ["\n\n", "\nQuestion:"],
                "answer_pattern": r"####\s*(-?\$?\d[\d,]*(?:\.\d+)?)", "fallback": "last_number",
                "normalize": "number"},
)


def task() -> Task:
    return Task(SPEC, load, files=[data_path("gsm8k", name) for _, name in SPLITS])
