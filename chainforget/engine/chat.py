"""Chat-formatted prompts: wrap every task's prompt in the tokenizer's chat template, for training and scoring alike.

With ``--chat-template`` each example's prompt becomes the text the tokenizer's chat template renders for a single
user turn with the assistant's turn opened (``add_generation_prompt``); targets and options are unchanged and follow
it. The rewrite happens where tasks hand out examples (:class:`ChatTask`), so training, scoring, replay buffers, EWC's
Fisher data and sharpness probes all read the same text. A leading BOS that the template writes is dropped when the
tokenizer adds BOS itself, so the prompt does not start with two.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from chainforget.errors import ModelError
from chainforget.tasks.base import Example
from chainforget.tasks.task import Task


def check(tokenizer, model_name: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"model {model_name}'s tokenizer has no chat template; drop --chat-template or use a chat "
                         f"(instruct) model")


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    return bos is not None and bool(ids) and ids[0] == bos


def chat_prompt(tokenizer, prompt: str) -> str:
    """``prompt`` as one user turn in the tokenizer's chat template, the assistant's turn opened."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        text = text[len(bos):]
    return text


def chat_examples(tokenizer, examples: Sequence[Example]) -> list[Example]:
    return [dataclasses.replace(ex, prompt=chat_prompt(tokenizer, ex.prompt)) for ex in examples]


class ChatTask(Task):
    """A task whose examples come chat-formatted; its name, spec, fingerprint and splits are the wrapped task's
    (the chat flag is part of the run id and prefix keys, not of the data's identity)."""

    def __init__(self, task: Task, tokenizer):  # no Task.__init__: every piece of state is the wrapped task's
        self._task, self._tokenizer = task, tokenizer

    def __getattr__(self, name: str):
        return getattr(self._task, name)

    @property
    def spec(self):
        return self._task.spec

    def examples(self) -> list[Example]:
        return chat_examples(self._tokenizer, self._task.examples())

    def train_examples(self, limit: int | None = None) -> list[Example]:
        return chat_examples(self._tokenizer, self._task.train_examples(limit))

    def eval_examples(self, limit: int | None = None) -> list[Example]:
        return chat_examples(self._tokenizer, self._task.eval_examples(limit))

    def groups(self, split: str = "eval") -> dict[str, int]:
        return self._task.groups(split)

    def fingerprint(self) -> str:
        return self._task.fingerprint()

    def parse_answer(self, text: str) -> str | None:
        return self._task.parse_answer(text)

    def list_columns(self, verbose: bool = False) -> dict[str, Any]:
        return self._task.list_columns(verbose)

    def configure(self, **options: Any) -> "ChatTask":
        return ChatTask(self._task.configure(**options), self._tokenizer)


def chat_tasks(tasks: dict[str, Any], tokenizer) -> dict[str, Any]:
    return {name: ChatTask(task, tokenizer) for name, task in tasks.items()}
