"""User tasks without Python: a YAML or TOML task file pointing at local data (see docs/tasks.md for the format).

Problems in the task file are ``ConfigError``s naming the file and key; problems in the data are ``DataError``s
naming the data file, the line (or row) or column, and the fix.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from chainforget.config.files import parse_toml, parse_yaml, read_text_file
from chainforget.errors import ConfigError, DataError, brief, did_you_mean
from chainforget.tasks.base import Example, SplitRule, TaskSpec
from chainforget.tasks.derived import DERIVED_KEYS, derive_task_file
from chainforget.tasks.io import read_rows
from chainforget.tasks.task import Task, metrics_named, validate_spec
from chainforget.tasks.taskfile_types import check_task_types

TOP_KEYS = ("name", "kind", "format", "description", "prompt_template", "metrics", "primary_metric",
            "group_fields", "split", "source", "license", "notes", "generation", "data", "columns", "options",
            "option_prefix", "groups")
COLUMN_KEYS = ("id", "prompt", "options", "gold", "answer", "target", "group", "subgroup", "meta")
SPLIT_KEYS = tuple(f.name for f in dataclasses.fields(SplitRule))
DEFAULT_METRICS = {"multiple_choice": ["acc", "acc_norm"], "generation": ["exact_match", "gold_logprob"]}


def _unknown(where: str, key: str, known: tuple[str, ...]) -> ConfigError:
    hint = did_you_mean(key, known, cutoff=0.5)
    return ConfigError(f"{where}: unknown key {key!r}; {hint}known keys: {', '.join(known)}")


def _section(value: Any, where: str, known: tuple[str, ...], example: str) -> dict:
    """A sub-mapping of a task file (columns, split): a mapping whose keys are all known, else a one-line error."""
    value = value or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, e.g. {example}")
    for key in value:
        if key not in known:
            raise _unknown(where, key, known)
    return value


def read_task_file(path: Path) -> dict[str, Any]:
    """Parse YAML (bounded safe loader) or TOML into a mapping; errors name the file and line."""
    if not path.is_file():
        raise ConfigError(f"task file {path} not found; check the path")
    text = read_text_file(path, "task file")
    data = parse_toml(text, path) if path.suffix.lower() == ".toml" else parse_yaml(text, path, task_file=True)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a task file must be a mapping of keys (name, kind, data, columns, ...)")
    return data


def _data_files(cfg: dict, path: Path) -> dict[str, tuple[Path, str | None]]:
    """``data`` -> {"all" | "train" | "eval": (resolved path, datasets split name)}."""
    raw = cfg.get("data")
    if raw is None:
        raise ConfigError(f"{path}: missing 'data': give a JSONL/CSV/Parquet file or datasets folder, e.g. "
                          f"data: my_data.jsonl")

    def resolve(p: Any, key: str) -> Path:
        if not isinstance(p, str) or not p:
            raise ConfigError(f"{path}: {key} must be a file path string, got {brief(p)}")
        q = Path(p).expanduser()
        return q if q.is_absolute() else (path.parent / q).resolve()

    if isinstance(raw, str):
        return {"all": (resolve(raw, "data"), None)}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: data must be a path or a mapping (path/split, or train/eval)")
    for key in raw:
        if key not in ("path", "split", "train", "eval"):
            raise _unknown(f"{path}: data", key, ("path", "split", "train", "eval"))
    if "path" in raw:
        if "train" in raw or "eval" in raw:
            raise ConfigError(f"{path}: data takes either path (+ split) or train/eval files, not both")
        return {"all": (resolve(raw["path"], "data.path"), raw.get("split"))}
    if "eval" not in raw:
        raise ConfigError(f"{path}: data needs an eval file (data: {{train: a.jsonl, eval: b.jsonl}}) or a path")
    out = {"eval": (resolve(raw["eval"], "data.eval"), None)}
    if "train" in raw:
        out["train"] = (resolve(raw["train"], "data.train"), None)
    return out


class _RowReader:
    """Turns one data row into an Example according to the task file's column mapping."""

    def __init__(self, cfg: dict, spec_name: str, fmt: str, task_file: Path):
        self.name, self.format, self.task_file = spec_name, fmt, task_file
        self.cols = cols = _section(cfg.get("columns"), f"{task_file}: columns", COLUMN_KEYS,
                                    "columns: {prompt: question}")
        self.template = cfg.get("prompt_template")
        self.fixed_options = cfg.get("options")
        self.prefix = cfg.get("option_prefix", " ")
        if "prompt" not in cols and not self.template:
            raise ConfigError(f"{task_file}: give columns.prompt (a column holding the prompt) or a prompt_template "
                              f"with {{column}} fields")
        if fmt == "multiple_choice":
            if "options" not in cols and not self.fixed_options:
                raise ConfigError(f"{task_file}: a multiple_choice task needs columns.options or a fixed options "
                                  f"list, e.g. options: [' No', ' Yes']")
            if "gold" not in cols and "answer" not in cols:
                raise ConfigError(f"{task_file}: a multiple_choice task needs columns.gold (option index) or "
                                  f"columns.answer (text of the right option)")
        elif "answer" not in cols:
            raise ConfigError(f"{task_file}: a generation task needs columns.answer (the gold answer string)")

    def _col(self, row: dict, key: str, where: str, file: Path) -> Any:
        col = self.cols[key]
        if col not in row:
            avail = ", ".join(sorted(map(str, row))) or "none"
            raise DataError(f"{file}: {where}: column {col!r} (columns.{key}) is missing; available columns: "
                            f"{avail}; fix columns.{key} in {self.task_file.name}")
        return row[col]

    def _text(self, value: Any, key: str, where: str, file: Path) -> str:
        if not isinstance(value, str):
            raise DataError(f"{file}: {where}: column {self.cols.get(key, key)!r} (columns.{key}) must be text, got "
                            f"{type(value).__name__} {brief(value, 60)}; quote it in the data")
        return value

    def _scalar(self, row: dict, key: str, where: str, file: Path) -> str:
        """A group, subgroup or id: text or a number (a mapping or list there is a mistake, not a name)."""
        value = self._col(row, key, where, file)
        if isinstance(value, (dict, list)):
            raise DataError(f"{file}: {where}: column {self.cols[key]!r} (columns.{key}) must be text or a number, "
                            f"got a {'mapping' if isinstance(value, dict) else 'list'} {brief(value, 60)}; fix the "
                            f"data or map columns.{key} to another column")
        return str(value)

    def _option(self, text: str) -> str:
        return text if text[:1].isspace() else self.prefix + text

    def _options(self, row: dict, where: str, file: Path) -> tuple[str, ...]:
        if "options" not in self.cols:
            return tuple(self._option(str(o)) for o in self.fixed_options)
        spec = self.cols["options"]
        if isinstance(spec, list):  # one column per option
            raw = []
            for c in spec:
                if c not in row:
                    raise DataError(f"{file}: {where}: option column {c!r} (columns.options) is missing; fix "
                                    f"columns.options in {self.task_file.name}")
                raw.append(self._text(row[c], "options", where, file))
        else:
            raw = self._col(row, "options", where, file)
            if isinstance(raw, str) and raw.lstrip().startswith("["):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError:
                    pass
            if not isinstance(raw, (list, tuple)) or not all(isinstance(o, str) for o in raw):
                raise DataError(f"{file}: {where}: column {spec!r} (columns.options) must be a list of strings "
                                f"(in CSV a JSON list like [\"a\", \"b\"]), got {type(raw).__name__}")
        if len(raw) < 2:
            raise DataError(f"{file}: {where}: needs at least 2 options, got {len(raw)}; fix the options column")
        return tuple(self._option(o) for o in raw)

    def _gold(self, row: dict, options: tuple[str, ...], where: str, file: Path) -> int:
        if "gold" in self.cols:
            value = self._col(row, "gold", where, file)
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise DataError(f"{file}: {where}: column {self.cols['gold']!r} (columns.gold) must be an integer "
                                f"option index, got {brief(value, 60)}; or map columns.answer to the right option's text")
            if not 0 <= value < len(options):
                raise DataError(f"{file}: {where}: label {value} in column {self.cols['gold']!r} is out of range for "
                                f"{len(options)} options; use 0..{len(options) - 1}")
            return value
        answer = self._text(self._col(row, "answer", where, file), "answer", where, file).strip()
        stripped = [o.strip() for o in options]
        if answer not in stripped:
            raise DataError(f"{file}: {where}: answer {brief(answer, 60)} (columns.answer) matches none of the options "
                            f"{brief(stripped, 120)}; fix the row or the options")
        return stripped.index(answer)

    def example(self, row: dict, where: str, file: Path, split: str, index: int) -> Example:
        if "prompt" in self.cols:
            prompt = self._text(self._col(row, "prompt", where, file), "prompt", where, file)
        else:
            try:
                prompt = self.template.format(**row)
            except KeyError as exc:
                raise DataError(f"{file}: {where}: prompt_template uses column {brief(exc.args[0], 40)}, which the "
                                f"row lacks; available columns: {brief(', '.join(sorted(map(str, row))), 200)}") \
                    from None
        group = self._scalar(row, "group", where, file).strip() if "group" in self.cols else "all"
        if not group or group == "None":
            raise DataError(f"{file}: {where}: empty group in column {self.cols['group']!r}; fill it or drop "
                            f"columns.group")
        subgroup = self._scalar(row, "subgroup", where, file) if "subgroup" in self.cols else ""
        ident = self._scalar(row, "id", where, file) if "id" in self.cols else \
            (f"{split}/{index}" if split != "all" else str(index))
        meta_cols = self.cols.get("meta") or []
        meta = {c: row.get(c) for c in meta_cols}
        if split != "all":
            meta["split"] = split
        if self.format == "multiple_choice":
            options = self._options(row, where, file)
            gold = self._gold(row, options, where, file)
            return Example(id=f"{self.name}/{ident}", group=group, subgroup=subgroup, prompt=prompt,
                           target=options[gold], gold=gold, options=options, meta=meta, task=self.name)
        answer = self._col(row, "answer", where, file)
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        answer = self._text(answer, "answer", where, file).strip()
        target = self._text(self._col(row, "target", where, file), "target", where, file) \
            if "target" in self.cols else self.prefix + answer
        return Example(id=f"{self.name}/{ident}", group=group, subgroup=subgroup, prompt=prompt, target=target,
                       gold=answer, meta=meta, task=self.name)


def _spec(cfg: dict, path: Path, files: dict) -> TaskSpec:
    for key in ("name", "kind"):
        if not isinstance(cfg.get(key), str) or not cfg[key].strip():
            raise ConfigError(f"{path}: missing or empty {key!r}; e.g. {key}: "
                              f"{'my-task' if key == 'name' else 'safety'}")
    fmt = cfg.get("format", "multiple_choice")
    metric_names = cfg.get("metrics", DEFAULT_METRICS.get(fmt, ["acc"]))
    if isinstance(metric_names, str):
        metric_names = [metric_names]
    split_cfg = _section(cfg.get("split"), f"{path}: split", SPLIT_KEYS, "split: {eval_fraction: 0.3, seed: 0}")
    if "train" in files:
        split_cfg = {**split_cfg, "predefined": True}
    elif "eval" in files:
        split_cfg = {**split_cfg, "eval_only": True}
    try:
        split = SplitRule(**split_cfg)
        metrics = metrics_named(list(metric_names), cfg["name"])
        template = cfg.get("prompt_template") or "{" + str((cfg.get("columns") or {}).get("prompt", "prompt")) + "}"
        return TaskSpec(
            name=cfg["name"], kind=cfg["kind"], format=fmt,
            description=str(cfg.get("description") or f"user task from {path.name}"),
            prompt_template=template, metrics=metrics,
            primary_metric=cfg.get("primary_metric", metrics[0].name if metrics else ""),
            group_fields=tuple(cfg.get("group_fields", ("group",))), split=split,
            source=str(cfg.get("source", str(path))), license=str(cfg.get("license", "")),
            notes=str(cfg.get("notes", "")), generation=dict(cfg.get("generation") or {}))
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_task_file(path: str | Path, tasks: Any = None) -> Task:
    """A ``Task`` from a YAML or TOML task file; relative data paths resolve against the task file.

    A file with ``base``, ``include``, ``filter`` or ``group_from`` is a derived task (``tasks/derived.py``);
    ``tasks`` is where its ``base`` is looked up: pass the registry a ``chainforget_register_tasks`` hook receives.
    """
    path = Path(path).expanduser().resolve()
    cfg = read_task_file(path)
    if any(key in cfg for key in DERIVED_KEYS):
        return derive_task_file(cfg, path, tasks=tasks, read=read_task_file, build=task_from_config)
    return task_from_config(cfg, path)


def task_from_config(cfg: dict, path: Path) -> Task:
    """A ``Task`` from a plain task file's keys (``path`` names the file and anchors relative data paths)."""
    for key in cfg:
        if key not in TOP_KEYS:
            raise _unknown(str(path), key, TOP_KEYS)
    check_task_types(cfg, path)
    files = _data_files(cfg, path)
    try:
        spec = _spec(cfg, path, files)
        reader = _RowReader(cfg, spec.name, spec.format, path)
        validate_spec(spec)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    wanted = cfg.get("groups")
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(g, str) for g in wanted)):
        raise ConfigError(f"{path}: groups must be a list of group names to keep")

    def load(_spec: TaskSpec) -> list[Example]:
        out: list[Example] = []
        for split, (file, ds_split) in files.items():
            rows = read_rows(file, ds_split)
            exs = [reader.example(row, where, file, split, i) for i, (where, row) in enumerate(rows)]
            if wanted is not None:
                present = {e.group for e in exs}
                for g in wanted:
                    if g not in present:
                        raise DataError(f"{file}: group {g!r} (listed under groups: in {path.name}) has no examples; "
                                        f"groups present: {', '.join(sorted(present)) or 'none'}; fix the list")
                exs = [e for e in exs if e.group in wanted]
            if not exs:
                raise DataError(f"{file}: the {split if split != 'all' else 'data'} split is empty (no rows); "
                                f"add rows or point data at the right file")
            out.extend(exs)
        return out

    config = {"task_file": str(path), "files": {k: [str(f), s] for k, (f, s) in files.items()},
              "columns": cfg.get("columns"), "options": cfg.get("options"), "groups": wanted,
              "option_prefix": cfg.get("option_prefix", " ")}
    return Task(spec, load, files=[f for f, _ in files.values()], config=config)

