"""``Task``: a ``TaskSpec`` plus a loader, with cached examples, deterministic splits and a data fingerprint.

A task never loads data when it is built or registered (``chainforget list`` stays cheap until it asks for sizes);
``examples()`` loads once per process and every configured copy of the task shares that cache.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from chainforget.errors import ChainforgetError, ConfigError, DataError, did_you_mean, unknown_name
from chainforget.tasks.base import KINDS, TASK_FORMATS, Example, TaskMetric, TaskSpec
from chainforget.tasks.io import files_digest
from chainforget.tasks.splits import split_examples, stratified_subsample

# The metrics the engine knows how to compute per example; task files name them, built-ins reuse them.
STANDARD_METRICS: dict[str, TaskMetric] = {
    "acc": TaskMetric("acc", description="1 if the highest-likelihood option is the gold one"),
    "acc_norm": TaskMetric("acc_norm", description="acc with option log-likelihoods divided by option characters"),
    "exact_match": TaskMetric("exact_match", needs_generation=True,
                              description="greedy generation's parsed answer equals the gold answer"),
    "gold_logprob": TaskMetric("gold_logprob", low=-50.0, high=0.0,
                               description="mean per-token log-probability of the gold target given the prompt"),
}

Loader = Callable[[TaskSpec], list[Example]]

_EXAMPLES: dict[tuple, list[Example]] = {}  # per-process cache of parsed data, shared by configured copies
_SPLITS: dict[tuple, tuple[list[Example], list[Example]]] = {}
_DIGESTS: dict[tuple, str] = {}

CONFIG_OPTIONS = ("primary_metric", "max_new_tokens")


def _spec_json(spec: TaskSpec) -> str:
    return json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str)


def validate_spec(spec: TaskSpec) -> None:
    """Reject a spec that no scorer could use; messages say which field to fix."""
    if spec.kind not in KINDS:
        raise ConfigError(f"task {spec.name!r}: kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    if spec.format not in TASK_FORMATS:
        raise ConfigError(f"task {spec.name!r}: format must be one of {', '.join(TASK_FORMATS)}, got {spec.format!r}")
    names = [m.name for m in spec.metrics]
    if not names:
        raise ConfigError(f"task {spec.name!r}: declare at least one metric, e.g. metrics: [acc]")
    if spec.primary_metric not in names:
        raise ConfigError(f"task {spec.name!r}: primary_metric {spec.primary_metric!r} is not among its metrics "
                          f"({', '.join(names)}); pick one of those")
    frac = spec.split.eval_fraction
    if not spec.split.eval_only and not spec.split.predefined and not 0.0 < frac < 1.0:
        raise ConfigError(f"task {spec.name!r}: split.eval_fraction must be between 0 and 1 (exclusive), got {frac}; "
                          f"use split.eval_only: true for an evaluation-only task")


class Task:
    """A registered task: see docs/contracts.md ("Tasks") for the interface other rooms rely on."""

    def __init__(self, spec: TaskSpec, loader: Loader, *, files: Sequence[Path] = (),
                 config: Mapping[str, Any] | None = None, all_metrics: Sequence[TaskMetric] | None = None):
        validate_spec(spec)
        self.spec = spec
        self._loader = loader
        self._files = tuple(Path(f) for f in files)
        self._config = dict(config or {})
        # every metric the task can report; configure() may narrow spec.metrics to the cheap ones
        self._all_metrics = tuple(all_metrics or spec.metrics)

    # -- identity -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    def __repr__(self) -> str:
        return f"Task({self.spec.name!r}, kind={self.spec.kind!r}, format={self.spec.format!r})"

    def _data_key(self) -> tuple:
        loader = f"{getattr(self._loader, '__module__', '')}.{getattr(self._loader, '__qualname__', repr(self._loader))}"
        stats = tuple((str(f), f.stat().st_mtime_ns if f.exists() else 0) for f in self._files)
        return (self.spec.name, loader, json.dumps(self._config, sort_keys=True, default=str), stats)

    def _where(self) -> str:
        return f" (data: {', '.join(str(f) for f in self._files)})" if self._files else ""

    # -- data -----------------------------------------------------------------------------------------------
    def examples(self) -> list[Example]:
        """Every example, loaded once per process (configured copies share the cache)."""
        key = self._data_key()
        if key not in _EXAMPLES:
            examples = self._loader(self.spec)
            self._check(examples)
            _EXAMPLES[key] = examples
        return _EXAMPLES[key]

    def _check(self, examples: list[Example]) -> None:
        name = self.spec.name
        if not examples:
            raise DataError(f"task {name!r}{self._where()}: no examples; check the data file and filters")
        seen: set[str] = set()
        for ex in examples:
            if ex.id in seen:
                raise DataError(f"task {name!r}{self._where()}: duplicate example id {ex.id!r}; ids must be unique "
                                f"(fix the id column or drop it to number rows)")
            seen.add(ex.id)
            if not ex.group:
                raise DataError(f"task {name!r}: example {ex.id!r} has an empty group; fill the group column "
                                f"or omit it (group 'all')")
            if self.spec.format == "multiple_choice":
                if not ex.options or not isinstance(ex.gold, int) or not 0 <= ex.gold < len(ex.options):
                    raise DataError(f"task {name!r}: example {ex.id!r} has gold {ex.gold!r} outside its "
                                    f"{len(ex.options or ())} options; fix its label")
                if ex.target != ex.options[ex.gold]:
                    raise DataError(f"task {name!r}: example {ex.id!r}: target must equal options[gold]")

    def _splits(self) -> tuple[list[Example], list[Example]]:
        key = (self._data_key(), self.spec.split)
        if key not in _SPLITS:
            train, evaluation = split_examples(self.examples(), self.spec.split)
            rule = self.spec.split
            if not evaluation:
                raise DataError(f"task {self.spec.name!r}{self._where()}: the eval split is empty; add data, raise "
                                f"split.eval_fraction or provide an eval file")
            if not train and not rule.eval_only:
                raise DataError(f"task {self.spec.name!r}{self._where()}: the train split is empty "
                                f"({len(evaluation)} eval examples); add data, lower split.eval_fraction, provide a "
                                f"train file, or set split.eval_only: true")
            _SPLITS[key] = (train, evaluation)
        return _SPLITS[key]

    def train_examples(self, limit: int | None = None) -> list[Example]:
        """The train split (empty for eval-only probes), optionally a group-stratified subsample of ``limit``."""
        return stratified_subsample(self._splits()[0], limit, self.spec.split.seed)

    def eval_examples(self, limit: int | None = None) -> list[Example]:
        """The eval split, optionally a group-stratified subsample of ``limit`` (drawn by ``eval_sample_unit``)."""
        rule = self.spec.split
        return stratified_subsample(self._splits()[1], limit, rule.seed, rule.eval_sample_unit)

    def groups(self, split: str = "eval") -> dict[str, int]:
        """Examples per group in ``split`` ("train", "eval" or "all"), sorted by group name."""
        exs = {"train": lambda: self._splits()[0], "eval": lambda: self._splits()[1], "all": self.examples}[split]()
        counts: dict[str, int] = {}
        for ex in exs:
            counts[ex.group] = counts.get(ex.group, 0) + 1
        return dict(sorted(counts.items()))

    def fingerprint(self) -> str:
        """sha256 of the spec (prompt, metrics, split rule), the loader's settings and every data file's bytes."""
        key = (self._data_key(), _spec_json(self.spec))
        if key not in _DIGESTS:
            extra = _spec_json(self.spec) + json.dumps(self._config, sort_keys=True, default=str)
            _DIGESTS[key] = files_digest(self._files, extra)
        return _DIGESTS[key]

    # -- generation tasks -----------------------------------------------------------------------------------
    def parse_answer(self, text: str) -> str | None:
        """The answer in a generated text, normalised like ``Example.gold`` (generation tasks; None if absent).

        ``spec.generation`` may set ``answer_pattern`` (a regex whose group 1 is the answer), ``fallback``
        ("last_number") and ``normalize`` ("number": drop commas, ``$`` and a trailing ``.0``).
        """
        gen = self.spec.generation
        found = None
        pattern = gen.get("answer_pattern")
        if pattern:
            m = re.search(pattern, text)
            found = m.group(1) if m else None
        if found is None and gen.get("fallback") == "last_number":
            numbers = re.findall(r"-?\$?\d[\d,]*(?:\.\d+)?", text)
            found = numbers[-1] if numbers else None
        if found is None and not pattern and not gen.get("fallback"):
            found = text.strip().splitlines()[0] if text.strip() else None
        if found is not None and gen.get("normalize") == "number":
            found = normalize_number(found)
        return found

    # -- listing and configuration --------------------------------------------------------------------------
    def list_columns(self, verbose: bool = False) -> dict[str, Any]:
        """Columns for ``chainforget list tasks``: kind, format, split sizes and number of groups."""
        cols: dict[str, Any] = {"kind": self.spec.kind, "format": self.spec.format}
        try:
            train, evaluation = self._splits()
            cols.update(train=len(train), eval=len(evaluation),
                        groups=len({e.group for e in train} | {e.group for e in evaluation}))
        except ChainforgetError as exc:
            cols.update(train="error", eval="error", groups=str(exc)[:60])
        if verbose:
            cols.update(primary=self.spec.primary_metric, metrics=",".join(m.name for m in self.spec.metrics),
                        license=self.spec.license)
        return cols

    def configure(self, **options: Any) -> "Task":
        """A copy with options changed: ``primary_metric`` (keeps only metrics that need no generation, plus the
        primary) and ``max_new_tokens`` (generation tasks). Unknown options or metrics raise ConfigError."""
        spec = self.spec
        for key, value in options.items():
            if key not in CONFIG_OPTIONS:
                hint = did_you_mean(key, CONFIG_OPTIONS, cutoff=0.5)
                raise ConfigError(f"unknown option {key!r} for task {spec.name!r}; {hint}"
                                  f"options: {', '.join(CONFIG_OPTIONS)}")
            if key == "primary_metric":
                known = [m.name for m in self._all_metrics]
                if value not in known:
                    hint = did_you_mean(value, known, cutoff=0.5)
                    raise ConfigError(f"task {spec.name!r} has no metric {value!r}; {hint}metrics: {', '.join(known)}")
                metrics = tuple(m for m in self._all_metrics if not m.needs_generation or m.name == value)
                spec = dataclasses.replace(spec, primary_metric=value, metrics=metrics)
            elif key == "max_new_tokens":
                if spec.format != "generation":
                    raise ConfigError(f"max_new_tokens applies to generation tasks; {spec.name!r} is {spec.format}")
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"max_new_tokens must be a positive integer, got {value!r}")
                spec = dataclasses.replace(spec, generation={**spec.generation, "max_new_tokens": value})
        return Task(spec, self._loader, files=self._files, config=self._config, all_metrics=self._all_metrics)


def normalize_number(text: str) -> str:
    """"$1,080.00" -> "1080", "-3.50" -> "-3.5": the form gold numbers are stored in."""
    s = text.strip().replace(",", "").replace("$", "").rstrip(".")
    if re.fullmatch(r"-?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    return s


def metrics_named(names: Sequence[str], task: str) -> tuple[TaskMetric, ...]:
    """Standard metrics by name (task files); an unknown name is a ConfigError with did-you-mean."""
    out = []
    for n in names:
        if n not in STANDARD_METRICS:
            raise unknown_name("metric", n, STANDARD_METRICS, "known metrics", where=f"task {task!r}", cutoff=0.5)
        out.append(STANDARD_METRICS[n])
    return tuple(out)
