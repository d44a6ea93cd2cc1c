"""Derived task files: a task made from another one without Python (docs/tasks.md, "Derived tasks").

``base: NAME`` starts from a registered task (its prompts, options, metrics, split and meta, e.g. BBQ's bias
fields); ``include: FILE`` starts from another task file whose keys this file overrides (lm-evaluation-harness's
``include``). ``filter:`` keeps the examples whose fields match every predicate and ``group_from:`` regroups them
by a field; both read nested paths (``meta.category``, ``additional_metadata.stereotyped_groups``). A derived task
keeps its parent's train/eval split, filtered, so no example crosses from the parent's train side to the derived
eval side: chaining a task and a task derived from it never evaluates on trained examples.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Callable, Mapping

from chainforget.config.files import LineDict
from chainforget.errors import ConfigError, DataError, brief, did_you_mean
from chainforget.plugins import registries
from chainforget.tasks.base import Example, SplitRule
from chainforget.tasks.task import Task

DERIVED_KEYS = ("base", "include", "filter", "group_from")
# what a file with ``base:`` may set: the parent's prompts, options, metrics and split stay as they are
BASE_KEYS = ("name", "kind", "description", "source", "license", "notes", "base", "filter", "group_from")
EXAMPLE_FIELDS = tuple(f.name for f in dataclasses.fields(Example))
TEXT_FIELDS = tuple(f.name for f in dataclasses.fields(Example) if f.type in (str, "str"))
OPERATORS = ("eq", "ne", "in", "not_in", "contains", "gt", "ge", "lt", "le")
_ALIASES = {"equals": "eq", "equal": "eq", "==": "eq", "!=": "ne", "not": "ne", "one_of": "in", "has": "contains",
            ">": "gt", ">=": "ge", "gte": "ge", "<": "lt", "<=": "le", "lte": "le"}
_MISSING = object()


def shipped_data(package: str, *parts: str) -> Path:
    """A file or folder shipped inside an installed package, e.g. ``shipped_data("my_plugin", "data", "x.jsonl")``.

    For plugins whose Python code needs a data path (a task file finds its own data: relative paths resolve against
    the task file). ``shipped_data("chainforget", "data", "bbq", "Age.jsonl.gz")`` is one of chainforget's own
    files. The package must be installed as files (pip's default), not imported from a zip archive.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed (or is a module, not a package); pip install it or "
                        f"fix the name")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root.joinpath(*parts)
    if not path.exists():
        raise DataError(f"{path} is not shipped with {package!r}; list it under [tool.setuptools.package-data] in the "
                        f"package's pyproject.toml and reinstall it")
    return path


def lookup(example: Example, path: str) -> Any:
    """The value at a dotted ``path`` of an example: an Example field (``group``, ``meta.category``) or a meta key
    (``category``), then mapping keys or list indexes (``options.0``); ``_MISSING`` when absent."""
    head, *rest = path.split(".")
    if head in EXAMPLE_FIELDS:
        value = getattr(example, head)
    elif head in example.meta:
        value = example.meta[head]
    else:
        return _MISSING
    for part in rest:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _contains(arg: Any, where: str) -> Callable[[Any], bool]:
    """``contains``: a list holding ``arg``, or text holding the text ``arg``; text and a number is a one-line error
    (``'5' in 'a5'`` is a question about text, ``5 in 'a5'`` is a type error, not an answer)."""
    def check(value: Any) -> bool:
        if isinstance(value, str):
            if not isinstance(arg, str):
                raise ConfigError(f"{where}: the field holds text ({brief(value, 40)}), so contains needs text; "
                                  f"write {{contains: '{arg}'}}")
            return arg in value
        return isinstance(value, (list, tuple)) and arg in value
    return check


def _operator(op: str, arg: Any, where: str, path: str = "") -> Callable[[Any], bool]:
    if op in ("in", "not_in") and not isinstance(arg, list):
        raise ConfigError(f"{where}: {op} needs a list of values, e.g. {{{op}: [a, b]}}, got {brief(arg)}")
    if op in ("gt", "ge", "lt", "le") and not _number(arg):
        raise ConfigError(f"{where}: {op} needs a number, got {brief(arg)}")
    if op == "contains" and not (arg is None or isinstance(arg, (str, int, float))):
        raise ConfigError(f"{where}: contains needs one value (text or a number), got {brief(arg)}; to keep any of "
                          f"several values, write one filter file per value or use in: [...] on a text field")
    if op == "contains" and path in TEXT_FIELDS and not isinstance(arg, str):
        raise ConfigError(f"{where}: {path} is text, so contains needs text; write {{contains: '{arg}'}}")
    return {
        "eq": lambda v: v == arg,
        "ne": lambda v: v != arg,
        "in": lambda v: v in arg,
        "not_in": lambda v: v not in arg,
        "contains": _contains(arg, where),
        "gt": lambda v: _number(v) and v > arg,
        "ge": lambda v: _number(v) and v >= arg,
        "lt": lambda v: _number(v) and v < arg,
        "le": lambda v: _number(v) and v <= arg,
    }[op]


def compile_filter(raw: Any, where: str) -> list[tuple[str, Callable[[Any], bool]]]:
    """``{path: predicate}`` -> checks. A predicate is a value (equal), a list (one of) or ``{operator: arg}``."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: filter must be a mapping of field paths to predicates, e.g. "
                          f"filter: {{meta.category: Age, meta.context_condition: [ambig]}}")
    checks = []
    for path, pred in raw.items():
        line = raw.line(path) if isinstance(raw, LineDict) else ""
        here = f"{where}{line}: filter.{path}"
        if not isinstance(path, str) or not path.strip():
            raise ConfigError(f"{where}{line}: filter keys must be field paths such as meta.category, got "
                              f"{brief(path)}")
        if isinstance(pred, Mapping):
            if not pred:
                raise ConfigError(f"{here}: empty predicate; give a value, a list or {{operator: value}}")
            ops = []
            for op, arg in pred.items():
                if op not in OPERATORS:
                    hint = f"did you mean {_ALIASES[op]!r}? " if op in _ALIASES else did_you_mean(op, OPERATORS)
                    raise ConfigError(f"{here}: unknown operator {op!r}; {hint}operators: "
                                      f"{', '.join(OPERATORS)}")
                ops.append(_operator(op, arg, here, path))
            checks.append((path, lambda v, ops=ops: all(f(v) for f in ops)))
        else:
            checks.append((path, _operator("in" if isinstance(pred, list) else "eq", pred, here, path)))
    return checks


def _passes(check: Callable[[Any], bool], value: Any) -> bool:
    """An example without the path never passes (not even ``ne``): a filter reads present values only."""
    return value is not _MISSING and check(value)


def _group_of(example: Example, path: str, where: str) -> str:
    value = lookup(example, path)
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    if value is _MISSING or value is None or not str(value).strip():
        raise DataError(f"{where}: example {example.id!r} has no value at group_from path {path!r}; "
                        f"{_hint(path, example)}filter such examples out "
                        f"(filter: {{{path}: {{ne: null}}}}) or pick another path: {', '.join(_paths_seen(example))}")
    return str(value).strip()


def _paths_seen(example: Example) -> list[str]:
    """Every readable path of an example (nested mappings flattened), for error messages."""
    out = [f for f in EXAMPLE_FIELDS if f != "meta"]

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, Mapping) and value and depth < 4:
            for key, sub in value.items():
                walk(f"{prefix}.{key}", sub, depth + 1)
        else:
            out.append(prefix)

    for key, value in example.meta.items():
        walk(f"meta.{key}", value, 1)
    return out


def _hint(path: str, example: Example) -> str:
    seen = _paths_seen(example)
    short = {p[5:]: p for p in seen if p.startswith("meta.")}
    return did_you_mean(path, [*seen, *short], cutoff=0.5)


def derive(parent: Task, cfg: Mapping[str, Any], path: Path) -> Task:
    """``parent`` filtered and regrouped as the derived task file at ``path`` says, under the file's ``name``."""
    name = cfg["name"]
    checks = compile_filter(cfg["filter"], str(path)) if cfg.get("filter") is not None else []
    group_from = cfg.get("group_from")
    if group_from is not None and (not isinstance(group_from, str) or not group_from.strip()):
        raise ConfigError(f"{path}: group_from must be a field path such as subgroup or meta.category, got "
                          f"{group_from!r}")
    rule = parent.spec.split
    split = SplitRule(eval_fraction=rule.eval_fraction, seed=rule.seed, eval_only=rule.eval_only,
                      predefined=not rule.eval_only, eval_sample_unit=rule.eval_sample_unit)
    spec = dataclasses.replace(
        parent.spec, name=name, split=split,
        **{k: str(cfg[k]) for k in ("kind", "description", "source", "license", "notes") if cfg.get(k) is not None})
    prefix = f"{parent.name}/"

    def load(_spec) -> list[Example]:
        out, total = [], 0
        for side, examples in (("train", parent.train_examples()), ("eval", parent.eval_examples())):
            total += len(examples)
            for ex in examples:
                if not all(_passes(check, lookup(ex, p)) for p, check in checks):
                    continue
                ident = ex.id[len(prefix):] if ex.id.startswith(prefix) else ex.id
                group = _group_of(ex, group_from, str(path)) if group_from else ex.group
                meta = {**ex.meta} if rule.eval_only else {**ex.meta, "split": side}
                out.append(dataclasses.replace(ex, id=f"{name}/{ident}", task=name, group=group, meta=meta))
        if not out and total:
            sample = parent.eval_examples()[0] if parent.eval_examples() else parent.train_examples()[0]
            missing = [p for p, _ in checks if all(lookup(e, p) is _MISSING for e in parent.examples())]
            if missing:
                raise ConfigError(f"{path}: filter path {missing[0]!r} is in no example of {parent.name!r}; "
                                  f"{_hint(missing[0], sample)}paths: "
                                  f"{', '.join(_paths_seen(sample))}")
            raise DataError(f"{path}: the filter keeps none of the {total} examples of {parent.name!r}; "
                            + "; ".join(f"{p} takes values like {_values(parent, p)}" for p, _ in checks))
        return out

    config = {"task_file": str(path), "derived_from": {"name": parent.name, "spec": dataclasses.asdict(parent.spec),
                                                       "config": parent._config},
              "filter": cfg.get("filter"), "group_from": group_from}
    return Task(spec, load, files=parent._files, config=config, all_metrics=parent._all_metrics)


def _values(task: Task, path: str, n: int = 6) -> str:
    seen: dict[str, None] = {}
    for ex in task.examples():
        value = lookup(ex, path)
        if value is not _MISSING:
            seen.setdefault(repr(value), None)
        if len(seen) >= n:
            break
    return ", ".join(seen) or "none"


def _absolute_data(data: Any, folder: Path) -> Any:
    """An included file's ``data`` with relative paths made absolute (they resolve against *that* file)."""
    def fix(p: Any) -> Any:
        return str((folder / p).resolve()) if isinstance(p, str) and not Path(p).expanduser().is_absolute() else p

    if isinstance(data, Mapping):
        return {k: fix(v) if k in ("path", "train", "eval") else v for k, v in data.items()}
    return fix(data)


def _merged(cfg: Mapping[str, Any], path: Path, read: Callable[[Path], dict], seen: tuple[Path, ...]) -> dict:
    """``cfg`` over the keys of the file it includes (recursively); the included file's data paths stay its own."""
    if "include" not in cfg:
        return dict(cfg)
    inc = cfg["include"]
    if not isinstance(inc, str) or not inc.strip():
        raise ConfigError(f"{path}: include must be the path of another task file, e.g. include: base-task.yaml")
    parent_path = Path(inc).expanduser()
    parent_path = (parent_path if parent_path.is_absolute() else path.parent / parent_path).resolve()
    if parent_path in seen:
        raise ConfigError(f"{path}: include {inc!r} forms a cycle ({' -> '.join(p.name for p in seen)} -> "
                          f"{parent_path.name}); remove one include")
    raw = read(parent_path)
    if "base" in raw and "include" in raw:
        raise ConfigError(f"{parent_path}: give base: (a registered task) or include: (another task file), not both")
    parent = _merged(raw, parent_path, read, seen + (parent_path,))
    if "data" in parent:
        parent["data"] = _absolute_data(parent["data"], parent_path.parent)
    return {**parent, **{k: v for k, v in cfg.items() if k != "include"}}


def _root_name(cfg: Mapping[str, Any], path: Path, read: Callable[[Path], dict]) -> str:
    """The name of the file at the end of an include chain (the file itself when it includes nothing)."""
    while isinstance(cfg.get("include"), str):
        path = (path.parent / Path(cfg["include"]).expanduser()).resolve()
        cfg = read(path)
    return cfg.get("name") if isinstance(cfg.get("name"), str) and cfg["name"].strip() else ""


def _raw_columns(cfg: dict) -> dict:
    """Keep the raw columns that filter/group_from paths start with in ``meta``, so nested ones can be read."""
    paths = [*(cfg.get("filter") or {}), *([cfg["group_from"]] if isinstance(cfg.get("group_from"), str) else [])]
    heads = []
    for p in paths:
        parts = str(p).split(".")
        head = parts[1] if parts[0] == "meta" and len(parts) > 1 else parts[0]
        if parts[0] == "meta" or head not in EXAMPLE_FIELDS:
            heads.append(head)
    columns = cfg.get("columns")
    if not heads or (columns is not None and not isinstance(columns, Mapping)):
        return cfg
    columns = dict(columns or {})
    meta = columns.get("meta") or []
    meta = list(meta) if isinstance(meta, (list, tuple)) else [meta]
    columns["meta"] = meta + [h for h in dict.fromkeys(heads) if h not in meta]
    return {**cfg, "columns": columns}


def derive_task_file(cfg: Mapping[str, Any], path: Path, *, tasks: Any, read: Callable[[Path], dict],
                     build: Callable[[dict, Path], Task]) -> Task:
    """The task of a task file that uses ``base``, ``include``, ``filter`` or ``group_from``.

    ``read``/``build`` are the plain task-file reader and builder (``userfile``); ``tasks`` is where ``base`` names
    are looked up: a hook's registry inside ``chainforget_register_tasks``, else every registered task.
    """
    if "base" in cfg and "include" in cfg:
        raise ConfigError(f"{path}: give base: (a registered task) or include: (another task file), not both")
    if not isinstance(cfg.get("name"), str) or not cfg["name"].strip():
        raise ConfigError(f"{path}: a derived task needs its own name, e.g. name: bbq-age")
    merged = _merged(cfg, path, read, (path,))
    if "base" not in merged:
        plain = {k: v for k, v in _raw_columns(merged).items() if k not in DERIVED_KEYS}
        # built under the root file's name, so example ids, and with them the split, are the included file's
        plain["name"] = _root_name(cfg, path, read)
        parent = build(plain, path)
        if "filter" not in merged and "group_from" not in merged:
            return parent
        return derive(parent, merged, path)
    for key in merged:
        if key not in BASE_KEYS:
            hint = did_you_mean(key, BASE_KEYS, cutoff=0.7)
            if hint:
                raise ConfigError(f"{path}: unknown key {key!r}; {hint}keys of a base: file: {', '.join(BASE_KEYS)}")
            raise ConfigError(f"{path}: {key!r} cannot be set in a task derived with base: (it keeps "
                              f"{merged['base']!r}'s prompts, options, metrics and split); its keys: "
                              f"{', '.join(BASE_KEYS)}; for other changes write a task file and include: it")
    base = merged["base"]
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base must be the name of a registered task, e.g. base: bbq")
    source = tasks if tasks is not None else registries("tasks")
    if base not in source:
        raise ConfigError(f"{path}: base: {source.unknown_message(base)}; a plugin's own task must be registered "
                          f"before the task derived from it")
    return derive(source.get(base), merged, path)
