"""``chainforget list``: one table per registry kind."""

from __future__ import annotations

from tabulate import tabulate

from chainforget.plugins import registries


def registry_rows(kind: str, verbose: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows for one registry; entries may add columns through ``list_columns(verbose)``."""
    registry = registries(kind)
    rows, extra_headers = [], []
    for entry in registry:
        extra = {}
        columns = getattr(entry.obj, "list_columns", None)
        if callable(columns):
            extra = columns(verbose=verbose)
        for key in extra:
            if key not in extra_headers:
                extra_headers.append(key)
        rows.append((entry, extra))
    headers = ["name", *extra_headers, "description", "provided by"]
    table = [[e.name, *[extra.get(h, "") for h in extra_headers], e.description, e.source] for e, extra in rows]
    return headers, table


def render_registry(kind: str, verbose: bool = False) -> str:
    headers, table = registry_rows(kind, verbose)
    title = f"{kind} ({len(table)})"
    return title + "\n" + tabulate(table, headers=headers, tablefmt="simple", maxcolwidths=[None] * (len(headers) - 2) + [60, None])


LIST_SCHEMA = "chainforget.list/1"


def _key(name: str) -> str:
    from chainforget.report.tables import column_key

    return column_key(name)


def _typed(value):
    """JSON-able value: numbers and booleans as they are, tuples as lists, anything else as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    return str(value)


def registry_records(kind: str) -> list[dict]:
    """One dict per registered entry: name, description, provided_by, then its typed details (a metric's
    direction, range, unit and scope; a strategy's hyper-parameters), else its list columns under snake_case keys."""
    import dataclasses

    out = []
    for entry in registries(kind):
        record = {"name": entry.name, "description": entry.description, "provided_by": entry.source}
        obj = entry.obj
        params = getattr(obj, "params", None)
        if kind == "metrics" and dataclasses.is_dataclass(obj):
            record.update({"higher_is_better": obj.higher_is_better, "low": obj.low, "high": obj.high,
                           "unit": obj.unit, "scope": obj.scope})
        elif kind == "strategies" and isinstance(params, (list, tuple)):
            record["params"] = [{f.name: _typed(getattr(p, f.name)) for f in dataclasses.fields(p)} for p in params]
        else:
            columns = getattr(obj, "list_columns", None)
            extra = columns(verbose=True) if callable(columns) else {}
            record.update({_key(k): _typed(v) for k, v in extra.items()})
        out.append(record)
    return out


def render_registries_json(kinds) -> str:
    """``chainforget list --format json``: ``{"schema": ..., "<kind>": [records]}`` for each kind."""
    import json

    doc = {"schema": LIST_SCHEMA, **{kind: registry_records(kind) for kind in kinds}}
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
