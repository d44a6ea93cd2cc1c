"""JSON Schemas of the machine-readable outputs (``--format json``), one versioned id per output.

A script checks the ``schema`` field, then reads numbers: every measure is an object with ``value``, ``ci_low``,
``ci_high``, ``p``, ``n``, ``unit``, ``seeds`` and ``missing`` (the reason a value is absent, else null). The ids
change their version whenever a key changes meaning or disappears; docs/outputs.md describes each field.
"""

from __future__ import annotations

from chainforget.report.listing import LIST_SCHEMA
from chainforget.report.tables import LEADERBOARD_SCHEMA

COMPARE_SCHEMA = "chainforget.compare/2"

_NUM = {"type": ["number", "null"]}
_INT = {"type": ["integer", "null"]}
_STR = {"type": ["string", "null"]}
MEASURE = {
    "type": "object", "additionalProperties": False,
    "required": ["value", "ci_low", "ci_high", "p", "n", "unit", "seeds", "missing"],
    "properties": {"value": _NUM, "ci_low": _NUM, "ci_high": _NUM, "p": _NUM, "n": _INT, "unit": _STR,
                   "seeds": _INT, "missing": _STR},
}
_COLUMN = {"type": "object", "required": ["key", "title", "kind"],
           "properties": {"key": {"type": "string", "pattern": "^[a-z0-9_]+$"}, "title": {"type": "string"},
                          "kind": {"enum": ["label", "count", "measure", "flag"]}}}
_CELL = {"anyOf": [{"type": ["string", "integer", "boolean", "null"]}, MEASURE]}


def table_schema(schema_id: str, **extra: dict) -> dict:
    """A table: its columns (stable keys and kinds) and one object per row keyed by column key."""
    return {"type": "object", "required": ["schema", "columns", "rows", *extra],
            "properties": {"schema": {"const": schema_id}, "columns": {"type": "array", "items": _COLUMN},
                           "rows": {"type": "array", "items": {"type": "object",
                                                              "additionalProperties": _CELL}}, **extra}}


LEADERBOARD = table_schema(LEADERBOARD_SCHEMA)
COMPARE = table_schema(COMPARE_SCHEMA, baseline={"type": "string"}, missing_metrics={
    "type": "array", "items": {"type": "object", "required": ["metric", "missing"]}})
_ENTRY = {"type": "object", "required": ["name", "description", "provided_by"]}
LIST = {"type": "object", "required": ["schema"], "properties": {"schema": {"const": LIST_SCHEMA}},
        "additionalProperties": {"type": "array", "items": _ENTRY}}


def check_table(doc: dict) -> None:
    """Every row's cell matches its column's kind (measure objects under measure columns, and so on)."""
    kinds = {c["key"]: c["kind"] for c in doc["columns"]}
    expected = {"label": (str,), "count": (int, type(None)), "flag": (bool, type(None)), "measure": (dict,)}
    for row in doc["rows"]:
        if set(row) != set(kinds):
            raise ValueError(f"row keys {sorted(row)} differ from the column keys {sorted(kinds)}")
        for key, cell in row.items():
            if not isinstance(cell, expected[kinds[key]]) or (kinds[key] == "count" and isinstance(cell, bool)):
                raise ValueError(f"column {key!r} is a {kinds[key]} but holds {cell!r}")
