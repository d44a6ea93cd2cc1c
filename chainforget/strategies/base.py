"""What a strategy is: declared hyper-parameters plus a factory of Avalanche plugins (strategy = template + plugins).

A strategy never writes its own training loop. It returns Avalanche ``SupervisedPlugin`` objects that hook into
``chainforget.engine.template.CausalLMTemplate`` (see ``docs/contracts.md`` for what the template exposes), and may
declare: extra stages after the chain (safety re-tuning), joint training (all chain tasks in one experience), a
per-stage *training signature* that lets runs of different strategies share identical chain prefixes, and the
*planning facts* of each stage (``StageWork``: added examples, extra passes, a cost factor) that ``--dry-run`` prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from chainforget.errors import ConfigError, closest, did_you_mean

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_ARTICLE = {"int": "an", "float": "a", "str": "a", "bool": "a"}


@dataclass(frozen=True)
class Param:
    """One declared hyper-parameter: type, default, range and help shown by ``list strategies --verbose``.

    ``low`` / ``high`` are inclusive bounds unless ``low_exclusive`` / ``high_exclusive`` is set: ``low=0.0,
    low_exclusive=True, high=1.0`` declares ``(0, 1]``. A declaration whose default its own checks reject is a
    ``ValueError`` when the plugin module is imported (a bug of the plugin, not of a user's config).
    """

    name: str
    type: str  # "int" | "float" | "str" | "bool"
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    low_exclusive: bool = False
    high_exclusive: bool = False

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"Param {self.name!r}: type must be one of {', '.join(_TYPES)}, got {self.type!r}")
        for side, bound in (("low", self.low), ("high", self.high)):
            if getattr(self, f"{side}_exclusive") and bound is None:
                raise ValueError(f"Param {self.name!r}: {side}_exclusive=True needs a {side} bound")
        try:
            self.parse(self.default)
        except ConfigError as exc:
            raise ValueError(f"Param {self.name!r}: its default is invalid: {exc}") from None

    def parse(self, value: Any, owner: str = "") -> Any:
        """Validate (and coerce strings from ``--set``) or raise a one-line ConfigError."""
        where = f"{owner}.{self.name}" if owner else self.name
        py = _TYPES[self.type]
        if isinstance(value, str) and py is not str:
            text = value.strip().lower()
            try:
                if py is bool:
                    if text not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = text in ("true", "1", "yes")
                elif py is int:
                    value = int(text)
                else:
                    value = float(text)
            except ValueError:
                raise ConfigError(f"{where} must be {_ARTICLE[self.type]} {self.type}, got {value!r}") from None
        if py is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if py is bool and not isinstance(value, bool) or py is not bool and (
                isinstance(value, bool) or not isinstance(value, py)):
            raise ConfigError(f"{where} must be {_ARTICLE[self.type]} {self.type}, got {value!r}")
        if py in (int, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{where} must be a finite number, got {value!r}")
            below = self.low is not None and (value <= self.low if self.low_exclusive else value < self.low)
            above = self.high is not None and (value >= self.high if self.high_exclusive else value > self.high)
            if below or above:
                raise ConfigError(f"{where} must be in{self._range()}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(self.choices)}, got {value!r}")
        return value

    def _range(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f" {'(' if self.low_exclusive else '['}{low}, {high}{')' if self.high_exclusive else ']'}"

    def describe(self) -> str:
        rng = ""
        if self.choices:
            rng = " {" + "|".join(self.choices) + "}"
        elif self.low is not None or self.high is not None:
            rng = self._range()
        return f"{self.name}={self.default!r} ({self.type}{rng}): {self.help}"


@dataclass(frozen=True)
class StageSpec:
    """An extra training stage after the chain (one more score-matrix row), e.g. safety re-tuning."""

    label: str
    examples: Sequence[Any]  # chainforget.tasks.base.Example


@dataclass(frozen=True)
class StageWork:
    """What a strategy adds to one stage's work beyond training its data once per epoch: the planning facts the dry
    run prices (docs/plugins.md, "Planning facts"). The run counts the first two in its recorded training tokens."""

    added: Sequence[Any] = ()  # examples that join the stage's training data (replay's buffer)
    extra_passes: int = 0  # forward+backward passes over every training batch beyond the first, run through the
    # template's recompute_loss_and_backward (SAM: 1)
    cost_factor: float = 1.0  # wall-time multiple of the stage's training for work that is not a training pass, as
    # measured (LwF's teacher forward: 1.35)
    after: Sequence[Any] = ()  # examples run forward and backward, one at a time, after the stage (EWC's Fisher)

    def __post_init__(self) -> None:
        if not isinstance(self.extra_passes, int) or isinstance(self.extra_passes, bool) or self.extra_passes < 0:
            raise ValueError(f"StageWork.extra_passes must be a whole number >= 0, got {self.extra_passes!r}")
        if not self.cost_factor >= 1.0:
            raise ValueError(f"StageWork.cost_factor must be a number >= 1, got {self.cost_factor!r}")


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may know when it builds its plugins or stages."""

    chain: tuple[str, ...]  # task names in training order
    tasks: Mapping[str, Any]  # name -> chainforget.tasks Task
    seed: int
    limit_train: int | None
    train_examples: Mapping[str, Sequence[Any]]  # name -> the training examples the run actually uses


@dataclass(frozen=True)
class StrategySpec:
    name: str
    description: str
    params: tuple[Param, ...] = ()
    # params (validated, with defaults) + context -> list of Avalanche SupervisedPlugin
    make_plugins: Callable[[Mapping[str, Any], StrategyContext], list] = field(default=lambda p, c: [])
    # params + context -> extra stages trained after the chain (each adds a score-matrix row)
    extra_stages: Callable[[Mapping[str, Any], StrategyContext], list[StageSpec]] | None = None
    # train the union of the chain's data as ONE experience (the multi-task reference)
    joint: bool = False
    # params + 0-based chain index -> what determines the weights trained at that stage. Runs whose signatures agree
    # on indices 0..k (and share model, data, seed and training settings) share the weights after stage k + 1.
    # None means "this strategy's name and params" at every stage (no sharing).
    train_signature: Callable[[Mapping[str, Any], int], Mapping[str, Any]] | None = None
    # the plugins (as make_plugins built them) + 0-based stage index + the task it trains -> that stage's planning
    # facts (StageWork); None: plain training, nothing added
    stage_work: Callable[[Sequence[Any], int, str], StageWork] | None = None

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``overrides``; unknown keys and bad values are one-line ConfigErrors."""
        overrides = dict(overrides or {})
        known = {p.name: p for p in self.params}
        for key in overrides:
            if key not in known:
                close = closest(key, known)
                hint = f"did you mean {self.name}.{close}? " if close else ""
                names = ", ".join(sorted(known)) or "none"
                raise ConfigError(f"strategy {self.name!r} has no hyper-parameter {key!r}; {hint}"
                                  f"its hyper-parameters: {names}")
        return {p.name: p.parse(overrides.get(p.name, p.default), self.name) for p in self.params}

    def signature(self, params: Mapping[str, Any], index: int) -> Mapping[str, Any]:
        if self.train_signature is None:
            return {"strategy": self.name, "params": dict(params)}
        return self.train_signature(params, index)

    def work(self, plugins: Sequence[Any], stage: int, task: str) -> StageWork:
        """The planning facts of 0-based stage ``stage`` (training ``task``) for these plugins."""
        return StageWork() if self.stage_work is None else self.stage_work(plugins, stage, task)

    def list_columns(self, verbose: bool = False) -> dict[str, str]:
        if not verbose:
            return {"hyper-parameters": ", ".join(p.name for p in self.params)}
        return {"hyper-parameters": "\n".join(p.describe() for p in self.params)}


def naive_at_first_task(name: str) -> Callable[[Mapping[str, Any], int], Mapping[str, Any]]:
    """Signature of a strategy that trains exactly like ``naive`` on the chain's first task (nothing to remember yet).

    Its first stage then shares the naive run's weights; later stages are keyed by the strategy and its params.
    """

    def signature(params: Mapping[str, Any], index: int) -> Mapping[str, Any]:
        if index == 0:
            return {"strategy": "naive"}
        return {"strategy": name, "params": dict(params)}

    return signature


class StrategyPlugin:
    """Optional base for strategy plugins: what Avalanche's ``SupervisedPlugin`` offers, without importing torch.

    Avalanche calls a plugin's callbacks by name (``before_backward(strategy)``, ...) when they exist, so a plugin
    defines only the callbacks it needs (names must be ``SupervisedPlugin`` callback names). Subclassing
    ``avalanche.core.SupervisedPlugin`` works too; this base keeps strategy modules importable by ``chainforget
    list``. ``state_dict`` / ``load_state_dict`` carry plugin state through checkpoints (tensors or JSON values).
    """

    supports_distributed = False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


# Avalanche's SupervisedPlugin callbacks (tests/strategies/test_strategies_params.py checks the list against Avalanche's own).
CALLBACKS = (
    "after_backward", "after_eval", "after_eval_dataset_adaptation", "after_eval_exp", "after_eval_forward",
    "after_eval_iteration", "after_forward", "after_train_dataset_adaptation", "after_training",
    "after_training_epoch", "after_training_exp", "after_training_iteration", "after_update", "before_backward",
    "before_eval", "before_eval_dataset_adaptation", "before_eval_exp", "before_eval_forward", "before_eval_iteration",
    "before_forward", "before_train_dataset_adaptation", "before_training", "before_training_epoch",
    "before_training_exp", "before_training_iteration", "before_update")


def check_callbacks(plugins: Sequence[Any], strategy: str) -> None:
    """Refuse a plugin attribute named ``before*``/``after*`` that is not a callback method.

    Avalanche calls ``getattr(plugin, event)(strategy)`` for every callback name a plugin has and takes any other
    ``before*``/``after*`` name for an incompatible callback: a misspelled callback would silently never run, and
    a tensor stored as ``self.before_training_exp`` would be called. One line names the attribute and the fix.
    """
    for plugin in plugins:
        for attr in dir(plugin):
            if not attr.startswith(("before", "after")):
                continue
            where = f"strategy {strategy!r}: plugin {type(plugin).__name__} has {attr!r}"
            if attr not in CALLBACKS:
                raise ConfigError(f"{where}, which Avalanche takes for a callback (every before*/after* name is one) "
                                  f"but is none; {did_you_mean(attr, CALLBACKS)}rename it (e.g. '_{attr}') or use a "
                                  f"callback name of avalanche.core.SupervisedPlugin")
            if not callable(getattr(plugin, attr)):
                raise ConfigError(f"{where}, a callback name, but it is not a method: Avalanche would call it; rename "
                                  f"the attribute (e.g. '_{attr}')")


def chain_index(strategy: Any, context: StrategyContext) -> int:
    """0-based index in the chain of the experience being trained (``experience.current_experience``, else the
    position of its task in the chain)."""
    exp = getattr(strategy, "experience", None)
    index = getattr(exp, "current_experience", None)
    if isinstance(index, int):
        return index
    name = getattr(strategy, "task_name", None)
    return context.chain.index(name) if name in context.chain else len(context.chain)
