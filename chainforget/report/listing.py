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
