"""Capability tasks without demographic groups (group "all"): BoolQ, and the held-out probes CommonsenseQA and
OpenBookQA. Options are answer texts as continuations, like BBQ, so small models are scored on meaning."""

from __future__ import annotations

import re

from chainforget.errors import DataError
from chainforget.tasks.base import Example, SplitRule, TaskSpec
from chainforget.tasks.io import data_path, read_jsonl
from chainforget.tasks.task import STANDARD_METRICS, Task

MC_METRICS = (STANDARD_METRICS["acc"], STANDARD_METRICS["acc_norm"])
BOOLQ_PROMPT = "{passage}\nQuestion: {question}?\nAnswer:"
QA_PROMPT = "Question: {question}\nAnswer:"
YES_NO = (" No", " Yes")
BOOLQ_SPLITS = (("train", "train.jsonl.gz"), ("eval", "validation.jsonl.gz"))

_OPTION = re.compile(r"^\s*([A-Z])\.\s+(.*?)\s*$")


def load_boolq(spec: TaskSpec) -> list[Example]:
    out = []
    for split, name in BOOLQ_SPLITS:
        path = data_path("boolq", name)
        for i, (where, row) in enumerate(read_jsonl(path)):
            if not isinstance(row.get("answer"), bool):
                raise DataError(f"{path}: {where}: answer must be true or false; restore the shipped file")
            gold = int(row["answer"])
            out.append(Example(id=f"{spec.name}/{split}/{i}", group="all",
                               prompt=BOOLQ_PROMPT.format(passage=row["passage"].strip(),
                                                          question=row["question"].strip()),
                               target=YES_NO[gold], gold=gold, options=YES_NO, meta={"split": split},
                               task=spec.name))
    return out


def parse_lettered(question: str, options: str, answer: str) -> tuple[str, list[str], int]:
    """(question, option texts, gold index) from the redistributed "A. ...\\nB. ..." format.

    Repairs the redistribution's artifacts: options that leaked into the question, a stray line before "A.", and a
    "?" appended after the last option. Returns gold = -1 when no option equals ``answer``.
    """
    lines = (question + "\n" + options).split("\n")
    first = next((k for k, line in enumerate(lines) if _OPTION.match(line) and _OPTION.match(line).group(1) == "A"),
                 None)
    if first is None:
        return question.strip(), [], -1
    stem = " ".join(x.strip() for x in lines[:first] if x.strip() not in ("", ".", "?"))
    texts, letters = [], []
    for line in lines[first:]:
        m = _OPTION.match(line)
        if m:
            letters.append(m.group(1))
            texts.append(m.group(2))
    if texts and texts[-1].endswith("?") and f"{letters[-1]}. {texts[-1]}" != answer.strip():
        texts[-1] = texts[-1][:-1].rstrip()  # a "?" the redistribution appended after the options
    gold_line = answer.strip()
    labelled = [f"{letter}. {text}" for letter, text in zip(letters, texts)]
    gold = labelled.index(gold_line) if gold_line in labelled else -1
    return stem, texts, gold


def _lettered_loader(folder: str, filename: str):
    def load(spec: TaskSpec) -> list[Example]:
        path = data_path(folder, filename)
        out = []
        for i, (where, row) in enumerate(read_jsonl(path)):
            stem, texts, gold = parse_lettered(row["question"], row["options"], row["answer"])
            if gold < 0:
                raise DataError(f"{path}: {where}: answer {row['answer']!r} matches none of the options; fix the row")
            options = tuple(" " + t for t in texts)
            out.append(Example(id=f"{spec.name}/{i}", group="all", prompt=QA_PROMPT.format(question=stem),
                               target=options[gold], gold=gold, options=options, task=spec.name))
        return out

    load.__qualname__ = f"load_{folder}"
    return load


BOOLQ = TaskSpec(
    name="boolq", kind="capability", format="multiple_choice",
    description="BoolQ: yes/no questions about a Wikipedia passage",
    prompt_template=BOOLQ_PROMPT, metrics=MC_METRICS, primary_metric="acc", split=SplitRule(predefined=True),
    source="Clark et al., BoolQ: Exploring the Surprising Difficulty of Natural Yes/No Questions, NAACL 2019",
    license="CC-BY-SA-3.0",
)
COMMONSENSEQA = TaskSpec(
    name="commonsenseqa", kind="capability", format="multiple_choice",
    description="CommonsenseQA: 5-way commonsense multiple choice (held-out probe, eval only)",
    prompt_template=QA_PROMPT, metrics=MC_METRICS, primary_metric="acc", split=SplitRule(eval_only=True),
    source="Talmor et al., CommonsenseQA, NAACL 2019 (validation split)", license="MIT",
)
OPENBOOKQA = TaskSpec(
    name="openbookqa", kind="capability", format="multiple_choice",
    description="OpenBookQA: 4-way elementary science multiple choice (held-out probe, eval only)",
    prompt_template=QA_PROMPT, metrics=MC_METRICS, primary_metric="acc", split=SplitRule(eval_only=True),
    source="Mihaylov et al., Can a Suit of Armor Conduct Electricity?, EMNLP 2018 (test split)", license="Apache-2.0",
)


def boolq_task() -> Task:
    return Task(BOOLQ, load_boolq, files=[data_path("boolq", name) for _, name in BOOLQ_SPLITS])


def commonsenseqa_task() -> Task:
    return Task(COMMONSENSEQA, _lettered_loader("commonsenseqa", "validation.jsonl.gz"),
                files=[data_path("commonsenseqa", "validation.jsonl.gz")])


def openbookqa_task() -> Task:
    return Task(OPENBOOKQA, _lettered_loader("openbookqa", "test.jsonl.gz"),
                files=[data_path("openbookqa", "test.jsonl.gz")])
