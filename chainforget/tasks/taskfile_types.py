"""The type of every field of a task file, checked in one place before anything is built, naming file and line.

Why one place: a task file's values flow into string formatting, regexes, dataclasses and comparisons far from where
they were read; a wrong type there surfaced as a ``TypeError`` traceback, or worse was silently misread
(``options: NoYes`` as five one-letter options). Every field is checked here against what it must be, so the builder
can trust the shapes it receives.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any, Callable, Mapping

from chainforget.config.files import LineDict
from chainforget.errors import ConfigError, brief

GENERATION_KEYS = ("max_new_tokens", "stop", "answer_pattern", "fallback", "normalize")
UNITS_HINT = "an example attribute such as group or meta.template"


def _line(mapping: Any, key: str) -> str:
    return mapping.line(key) if isinstance(mapping, LineDict) else ""


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _text_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


# key -> (check, what it must be); values absent or null are not checked here (the builder has defaults)
TOP: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (_text, "text"), "kind": (_text, "text (safety or capability)"),
    "format": (_text, "text (multiple_choice or generation)"), "description": (_text, "text"),
    "prompt_template": (_text, "text with {column} fields"),
    "metrics": (lambda v: _text(v) or _text_list(v), "a metric name or a list of them, e.g. [acc, acc_norm]"),
    "primary_metric": (_text, "a metric name"), "group_fields": (_text_list, "a list of field names"),
    "split": (lambda v: isinstance(v, dict), "a mapping, e.g. {eval_fraction: 0.3, seed: 0}"),
    "source": (_text, "text"), "license": (_text, "text"), "notes": (_text, "text"),
    "generation": (lambda v: isinstance(v, dict), "a mapping, e.g. {max_new_tokens: 64, stop: ['\\n']}"),
    "columns": (lambda v: isinstance(v, dict), "a mapping, e.g. {prompt: question, gold: label}"),
    "options": (lambda v: _text_list(v) and len(v) >= 2, "a list of at least two option texts, e.g. [' No', ' Yes']"),
    "option_prefix": (_text, "text, e.g. ' ' (put before options that lack a leading space)"),
    "groups": (lambda v: _text_list(v) and len(v) >= 1, "a list of group names to keep"),
}
COLUMNS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (_text, "a column name") for k in ("id", "prompt", "gold", "answer", "target", "group", "subgroup")},
    "options": (lambda v: _text(v) or (_text_list(v) and len(v) >= 2),
                "a column holding a list of options, or a list of at least two option columns"),
    "meta": (lambda v: _text_list(v), "a list of column names, e.g. [category, source]"),
}
SPLIT: dict[str, tuple[Callable[[Any], bool], str]] = {
    "eval_fraction": (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1 (exclusive), e.g. 0.3"),
    "seed": (lambda v: _int(v) and 0 <= v < 2**32, "an integer in [0, 4294967295]"),
    "unit": (_text, f"text naming {UNITS_HINT}"),
    "eval_only": (_bool, "true or false"), "predefined": (_bool, "true or false"),
    "eval_sample_unit": (_text, f"text naming {UNITS_HINT}"),
}
GENERATION: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_new_tokens": (lambda v: _int(v) and 1 <= v <= 8192, "an integer in [1, 8192]"),
    "stop": (lambda v: _text_list(v), "a list of stop strings, e.g. ['\\n\\n']"),
    "answer_pattern": (_text, "a regular expression whose group 1 is the answer"),
    "fallback": (lambda v: v == "last_number", "last_number"),
    "normalize": (lambda v: v == "number", "number"),
}


def _check_section(section: Mapping[str, Any], rules: Mapping[str, tuple[Callable[[Any], bool], str]], path: Path,
                   prefix: str) -> None:
    for key, value in section.items():
        if key in rules and value is not None:
            check, what = rules[key]
            if not check(value):
                booleans = isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool)
                                                                                       for v in value))
                hint = " (YAML reads unquoted yes/no/true/false as booleans: quote them)" if booleans else ""
                raise ConfigError(f"{path}{_line(section, key)}: {prefix}{key} must be {what}, got "
                                  f"{brief(value)}{hint}")


def check_template(template: str, path: Path, line: str = "") -> None:
    """A prompt template may use ``{column}`` fields only (no positions, attributes, indexes or format specs)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{path}{line}: prompt_template is not a valid template ({exc}); write {{column}} for a "
                          f"column and {{{{ or }}}} for a literal brace") from None
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][\w -]*", field) or spec or conversion:
            raise ConfigError(f"{path}{line}: prompt_template field {{{brief(field, 40)[1:-1]}"
                              f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} is not a "
                              f"column name; use {{column}} only, and {{{{ or }}}} for a literal brace")


def check_task_types(cfg: Mapping[str, Any], path: Path) -> None:
    """Every field of a plain task file has the right type (one-line ConfigError naming the file and line)."""
    _check_section(cfg, TOP, path, "")
    for key, rules in (("columns", COLUMNS), ("split", SPLIT), ("generation", GENERATION)):
        section = cfg.get(key)
        if isinstance(section, dict):
            if key == "generation":
                for k in section:
                    if k not in GENERATION_KEYS:
                        raise ConfigError(f"{path}{_line(section, k)}: unknown key generation.{brief(k, 40)}; known "
                                          f"keys: {', '.join(GENERATION_KEYS)}")
            _check_section(section, rules, path, f"{key}.")
    template = cfg.get("prompt_template")
    if isinstance(template, str):
        check_template(template, path, _line(cfg, "prompt_template"))
    pattern = (cfg.get("generation") or {}).get("answer_pattern")
    if isinstance(pattern, str):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{path}: generation.answer_pattern is not a valid regular expression ({exc})") from None
        if compiled.groups < 1:
            raise ConfigError(f"{path}: generation.answer_pattern needs a group (...) around the answer")
