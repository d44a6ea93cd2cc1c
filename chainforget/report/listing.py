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


LIST_WIDTH = 100  # `chainforget list` fits a 100-column terminal, --verbose included
_GAP = 2  # tabulate's "simple" format puts two spaces between columns
_HEADER_PAD = 2  # and makes each column at least its header + 2 wide


def render_registry(kind: str, verbose: bool = False, width: int = LIST_WIDTH) -> str:
    """One table per kind that fits ``width`` columns (long cells wrapped at word boundaries); when even wrapping
    cannot fit the columns (``list tasks --verbose``), one block per entry instead."""
    headers, table = registry_rows(kind, verbose)
    title = f"{kind} ({len(table)})"
    cells = [[str(c) for c in row] for row in table]
    widths = fit_widths(headers, cells, width)
    if widths is None:
        return title + "\n" + render_blocks(headers, cells, width)
    return title + "\n" + tabulate([[_wrap(c, w) for c, w in zip(row, widths)] for row in cells],
                                   headers=[_header(h, w) for h, w in zip(headers, widths)], tablefmt="simple")


MIN_DESCRIPTION = 30  # narrower than this, a description reads as a word list: use blocks
_WHOLE = ("name", "provided by")  # never wrapped: an entry's first line says what it is and who provides it


def fit_widths(headers: list[str], rows: list[list[str]], width: int) -> list[int] | None:
    """Column widths whose table fits ``width``: the widest column gives up a character until the sum fits; None
    when that would break a word or squeeze the description under ``MIN_DESCRIPTION`` characters."""
    natural = [max([_longest_line(h) + (_HEADER_PAD if h in _WHOLE else 0)] + [_longest_line(r[i]) for r in rows])
               for i, h in enumerate(headers)]
    words = [max([len(w) for w in h.split()] + [len(w) for r in rows for w in r[i].split()])
             for i, h in enumerate(headers)]
    floor = [n if h in _WHOLE else min(n, max(w, MIN_DESCRIPTION if h == "description" else 0))
             for n, w, h in zip(natural, words, headers)]
    widths = list(natural)
    budget = width - _GAP * (len(headers) - 1)

    def drawn(i: int) -> int:  # tabulate pads a column to its (wrapped) header + 2
        return max(widths[i], _longest_line(_header(headers[i], widths[i])) + _HEADER_PAD)

    while sum(drawn(i) for i in range(len(widths))) > budget:
        i = max(range(len(widths)), key=lambda k: (widths[k] - floor[k] > 0, widths[k]))
        if widths[i] <= floor[i]:
            return None
        widths[i] -= 1
    return widths


def render_blocks(headers: list[str], rows: list[list[str]], width: int) -> str:
    """One block per entry: its name, who provides it and its description, then ``key: value`` details, each
    wrapped to ``width``."""
    import textwrap

    out = []
    for row in rows:
        fields = dict(zip(headers, row))
        name, description, source = fields.pop("name"), fields.pop("description", ""), fields.pop("provided by", "")
        out.extend(textwrap.wrap(f"{name} ({source}): {description}", width, subsequent_indent="    "))
        inline = []
        for key, value in fields.items():
            if "\n" in value:
                out.append(f"    {key}:")
                for line in value.splitlines():
                    out.extend(textwrap.wrap(line, width, initial_indent="      ", subsequent_indent="        "))
            elif value != "":
                inline.append(f"{key}: {value}")
        out.extend(textwrap.wrap(" | ".join(inline), width, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(out)


def _header(text: str, width: int) -> str:
    """A header wrapped two characters narrower than its column (tabulate adds them back), never inside a word."""
    if len(text) + _HEADER_PAD <= width:
        return text
    return _wrap(text, max(width - _HEADER_PAD, *(len(w) for w in text.split())))


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _wrap(text: str, width: int) -> str:
    """Each line of ``text`` wrapped to ``width``; in a cell of several lines (a strategy's hyper-parameters)
    continuation lines are indented two spaces, so each entry stays visibly one."""
    import textwrap

    if _longest_line(text) <= width:
        return text
    lines = text.splitlines() or [""]
    indent = "  " if len(lines) > 1 else ""
    out = []
    for line in lines:
        out.extend(textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [""])
    return "\n".join(out)


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
