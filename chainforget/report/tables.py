"""The leaderboard table: result dicts in, (headers, rows) out, rendered in one of six formats.

One row per strategy and chain order (and per any other setting that varies across the runs: spec fields and the
resolved training settings, e.g. finetune or learning_rate; strategy hyper-parameters that differ are appended to
the strategy name), aggregating seeds. Columns, for every safety task ``S`` and capability task ``C`` found in the runs::

    strategy | chain | <varying fields> | seeds | S forgetting | S biased forgetting | C final | C vs naive

Every number and interval comes from the metrics room's one engine (``metrics.estimates`` /
``metrics.inference``), so compare and findings print the same ones for the same runs. A stored metric over seeds
(``aggregate``): with one seed the stored metric and its stored 95% interval ("0.120 [0.050, 0.190]"), conditional on
one trained model; with n > 1 seeds the mean and an interval holding both the between-seed variance (t(n-1)) and the
runs' evaluation SE, clipped to the metric's declared range. ``C final`` is the last score-matrix row (after every
stage, a retune stage included). ``C vs naive`` is the capability cost: final score minus naive's final score on
the same chain, seed and other fields (negative = capability lost), missing for naive and where no naive run
matches. Given runs with their records (``read_run`` dicts), ``C final`` has its interval from the records and
``C vs naive`` is the paired difference of compare and findings (``estimates.paired_difference``: per example and
seed, with its interval), and the biased forgetting of several
seeds is their recomputed spread with its group p (``estimates.spread_cell``); given bare results, the
difference has an interval only over seeds and several seeds' spreads are combined as stored metrics.

A missing value is never a zero and never a blank: its cell carries the reason (``Cell.missing``), the text formats
print ``n/a (k)`` with the reason as footnote ``(k)`` under the table, JSON and CSV carry it in ``missing``.
JSON and CSV carry numbers, not display strings (schema in docs/outputs.md): each header is a :class:`Column` with a
stable snake_case ``key`` and a ``kind`` (label, count, measure, flag), each measure cell an object with ``value``,
``ci_low``, ``ci_high``, ``p``, ``n``, ``unit``, ``seeds`` and ``missing``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any, Iterable, Sequence

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS as DEFAULTS
from chainforget.config.defaults import TABLE_FORMATS
from chainforget.errors import ConfigError, closest, did_you_mean, unknown_name
from chainforget.metrics import estimates, inference
from chainforget.metrics.base import TASK_UNIT
from chainforget.plugins import registries

_TABULATE_FMT = {"github": "github", "latex": "latex_booktabs", "html": "html", "plain": "simple"}
_UNIT = re.compile(r"\s*\[[^\]]*\]$")
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


class Cell(str):
    """A rendered table cell that keeps its numbers, so sorting and the JSON/CSV outputs never re-parse text.

    ``value``/``low``/``high``: the estimate and its 95% interval; ``p``: its p-value where a test goes with it;
    ``n``: the evaluation examples (or pairs) behind it; ``seeds``: the runs it combines; ``unit``: the metric's unit;
    ``missing``: why there is no value (None when there is one).
    """

    value: float | None
    low: float | None
    high: float | None

    def __new__(cls, text: str, value: float | None = None, low: float | None = None, high: float | None = None, *,
                p: float | None = None, n: int | None = None, seeds: int | None = None, unit: str | None = None,
                missing: str | None = None):
        cell = super().__new__(cls, text)
        cell.value, cell.low, cell.high = value, low, high
        cell.p, cell.n, cell.seeds, cell.unit, cell.missing = p, n, seeds, unit, missing
        return cell


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def aggregate(entries: Iterable[tuple[Any, Any, Any]], bounds: tuple[float | None, float | None] = (None, None)
              ) -> tuple[float, float | None, float | None] | None:
    """(value, ci_low, ci_high) over seeds, from the metrics room's one engine (``metrics.inference.cell``): the
    single entry as stored (conditional on one trained model), or the mean with an interval holding both between-seed
    and evaluation variance; clipped to the metric's declared ``bounds``."""
    return inference.cell(list(entries), bounds).triple()


def estimate_cell(est: inference.Estimate, digits: int = 3) -> "Cell":
    """An engine :class:`~chainforget.metrics.inference.Estimate` as a cell, with its p, n, seeds, unit and missing
    reason; an interval the data cannot bound shows its open side as ``inf``."""
    cell = format_cell(est.triple(), digits, p=est.p, n=est.n, seeds=est.seeds or None, unit=est.unit,
                       missing=est.missing)
    if est.unbounded and est.value is not None:
        low = "-inf" if est.ci_low is None else f"{est.ci_low:.{digits}f}"
        high = "inf" if est.ci_high is None else f"{est.ci_high:.{digits}f}"
        cell = Cell(f"{est.value:.{digits}f} [{low}, {high}]", est.value, est.ci_low, est.ci_high, p=est.p,
                    n=est.n, seeds=est.seeds or None, unit=est.unit)
    return cell


def format_cell(agg: tuple[float, float | None, float | None] | None, digits: int = 3, *, p: float | None = None,
                n: int | None = None, seeds: int | None = None, unit: str | None = None,
                missing: str | None = None) -> Cell:
    """'0.120 [0.050, 0.190]', '0.120' without a CI; '' when missing, with the reason in ``Cell.missing``."""
    if agg is None:
        return Cell("", p=p, n=n, seeds=seeds, unit=unit, missing=missing or "not computed for these runs")
    value, low, high = agg
    text = f"{value:.{digits}f}"
    if low is not None and high is not None:
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return Cell(text, value, low, high, p=p, n=n, seeds=seeds, unit=unit)


KINDS = ("label", "count", "measure", "flag")


class Column(str):
    """A table header that knows its stable snake_case ``key`` (the JSON/CSV name) and its ``kind``: ``label``
    (text that names the row), ``count`` (an integer), ``measure`` (a number with its interval, p, n, unit, seeds
    and missing reason) or ``flag`` (true/false, e.g. an interval that excludes 0)."""

    key: str
    kind: str

    def __new__(cls, title: str, key: str | None = None, kind: str = "measure"):
        if kind not in KINDS:
            raise ValueError(f"column kind must be one of {KINDS}, got {kind!r}")
        column = super().__new__(cls, title)
        column.key, column.kind = key or column_key(title), kind
        return column


class Columns(list):
    """The headers of one table and the id of its JSON schema (``chainforget.<table>/<version>``)."""

    def __init__(self, columns: Iterable[Column], schema: str = "chainforget.table/2"):
        super().__init__(columns)
        self.schema = schema


def column_key(title: str) -> str:
    """A header as a snake_case key: '[unit]' and '(note)' tails dropped, anything not a letter or digit is '_'."""
    bare = re.sub(r"\s*\([^)]*\)$", "", _UNIT.sub("", str(title)))
    return re.sub(r"[^0-9a-z]+", "_", bare.lower()).strip("_") or "column"


def spec_label(value: Any) -> str:
    """A spec field as table text: chains as 'a,b', dicts as 'k=v' pairs."""
    if isinstance(value, (list, tuple)):
        return ",".join(spec_label(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={spec_label(v)}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)


def strategy_name(result: dict) -> str:
    strategy = result.get("spec", {}).get("strategy")
    if isinstance(strategy, dict):
        strategy = strategy.get("name")
    return str(strategy) if strategy else "?"


def chain_label(result: dict) -> str:
    return spec_label(result.get("spec", {}).get("chain") or result.get("tasks") or [])


def task_kinds(results: Sequence[dict]) -> tuple[list[str], list[str]]:
    """Safety and capability eval tasks over all runs, in order of first appearance."""
    safety: list[str] = []
    capability: list[str] = []
    for result in results:
        for task in result.get("eval_tasks", []):
            kind = result.get("task_info", {}).get(task, {}).get("kind")
            bucket = safety if kind == "safety" else capability if kind == "capability" else None
            if bucket is not None and task not in bucket:
                bucket.append(task)
    return safety, capability


def metric_entry(result: dict, metric: str, key: str) -> tuple[Any, Any, Any]:
    entry = result.get("metrics", {}).get(metric, {}).get(key)
    if not isinstance(entry, dict):
        return (None, None, None)
    return entry.get("value"), entry.get("ci_low"), entry.get("ci_high")


def final_score(result: dict, task: str) -> float | None:
    """The task's score in the last score-matrix row, or None."""
    try:
        return _num(result["score_matrix"][-1][result["eval_tasks"].index(task)])
    except (KeyError, IndexError, ValueError, TypeError):
        return None


def _is_strategy_key(key: str) -> bool:
    return key.startswith("strategy") or key == "params"


def strategy_params(result: dict) -> dict:
    """The strategy's hyper-parameters: spec ones (``strategy_params`` or a dict strategy) then resolved ones."""
    spec = result.get("spec", {})
    params: dict = {}
    if isinstance(spec.get("strategy"), dict):
        params.update(spec["strategy"].get("params") or {})
    for key, value in spec.items():
        if key != "strategy" and _is_strategy_key(key) and isinstance(value, dict):
            params.update(value)
    params.update(result.get("resolved_params") or {})
    return params


def grouping_fields(result: dict) -> dict[str, Any]:
    """The run's settings other than strategy (and its parameters), chain and seed: spec fields, with the training
    settings flattened in (the resolved ``train_config`` when stored, else the spec's ``train`` overrides)."""
    spec = result.get("spec", {})
    out = {k: v for k, v in spec.items() if k not in ("chain", "seed", "train") and not _is_strategy_key(k)}
    train = result.get("train_config") if isinstance(result.get("train_config"), dict) else spec.get("train")
    for key, value in (train or {}).items():
        if key != "seed":  # the training seed follows the run seed, which is aggregated over
            out[f"train.{key}" if key in out else key] = value
    return out


def varying_fields(results: Sequence[dict]) -> list[str]:
    """Grouping fields whose value differs between runs (a field absent from some runs also varies)."""
    per_run = [grouping_fields(r) for r in results]
    order = list(dict.fromkeys(k for fields in per_run for k in fields))
    return [k for k in order
            if len({json.dumps(f.get(k, "<absent>"), sort_keys=True, default=str) for f in per_run}) > 1]


def strategy_labels(results: Sequence[dict]) -> list[str]:
    """Strategy names, suffixed with the resolved hyper-parameters that differ between runs of that strategy."""
    by_name: dict[str, list[dict]] = {}
    for r in results:
        by_name.setdefault(strategy_name(r), []).append(strategy_params(r))
    varying = {
        name: sorted({k for p in params for k in p if len({json.dumps(q.get(k), default=str) for q in params}) > 1})
        for name, params in by_name.items()
    }
    labels = []
    for r in results:
        name, params = strategy_name(r), strategy_params(r)
        extra = [f"{k}={spec_label(params.get(k))}" for k in varying[name]]
        labels.append(f"{name}({', '.join(extra)})" if extra else name)
    return labels


SEEDS_HEADER = "seeds (*: CIs conditional on one trained model)"
LEADERBOARD_SCHEMA = "chainforget.leaderboard/2"


def _bounds(metric: str) -> tuple[float | None, float | None]:
    spec = registries("metrics").get(metric)
    return spec.low, spec.high


def _unit_suffix(metric: str) -> str:
    """`` [unit]`` of a metric whose unit is its own (a plugin's "ratio"); nothing for task-unit metrics."""
    unit = registries("metrics").get(metric).unit
    return "" if not unit or unit == TASK_UNIT else f" [{unit}]"


def _unit_of(result: dict, metric: str, task: str) -> str:
    """The unit of ``metric`` on ``task``: the metric's own (a share, a p-value), else the task's score unit."""
    unit = registries("metrics").get(metric).unit if metric in registries("metrics").names() else TASK_UNIT
    if unit and unit != TASK_UNIT:
        return unit
    info = result.get("task_info", {}).get(task.split("/", 1)[0], {})
    return str(info.get("unit") or info.get("primary_metric") or "score")


def _entry_field(result: dict, metric: str, key: str, field: str) -> Any:
    entry = result.get("metrics", {}).get(metric, {}).get(key)
    return entry.get(field) if isinstance(entry, dict) else None


def missing_reason(runs: Sequence[dict], metric: str, key: str) -> str:
    """Why ``metric`` has no value for ``key`` in these runs: the first stored reason, else that none is stored."""
    for r in runs:
        reason = _entry_field(r, metric, key, "missing")
        if reason:
            return str(reason)
    if runs and metric in _FORGETTING_LIKE:  # the usual reason, read from where the task sits in the chain
        task = key.split("/", 1)[0]
        trained_at = runs[0].get("task_info", {}).get(task, {}).get("trained_at")
        if trained_at is None:
            return f"{task} is never trained in this chain"
        if trained_at >= len(runs[0].get("stages", [])) - 1:
            return f"{task} is trained in the last stage: nothing came after it to forget it"
    return f"no {metric} value for {key} in these runs"


_FORGETTING_LIKE = ("forgetting", "biased_forgetting", "relative_forgetting", "max_forgetting", "group_forgetting",
                    "group_effect_pvalue")


def _stored_cell(runs: Sequence[dict], metric: str, key: str, digits: int) -> Cell:
    """A stored metric over seeds (``metrics.estimates.stored_cell``), with its unit, seeds, n and p (one run) or
    missing reason: the cell compare and findings show for the same runs."""
    cell = estimate_cell(estimates.stored_cell(runs, metric, key, _bounds(metric), _unit_of(runs[0], metric, key)),
                         digits)
    if cell.missing and cell.missing.startswith(f"no {metric} value"):
        cell.missing = missing_reason(runs, metric, key)  # where the task sits in the chain says why
    return cell


def _seed_views(runs: Sequence[dict], with_records: dict) -> dict | None:
    """{seed: RunView} of runs given with their records, else None (bare results)."""
    if not all(id(r) in with_records for r in runs):
        return None
    return {r.get("spec", {}).get("seed"): estimates.RunView(with_records[id(r)]) for r in runs}


def _metric_columns(results: Sequence[dict], columns: Sequence[str]) -> list[tuple[str, str]]:
    """(metric, key) pairs of the extra ``--columns`` metrics (plugins included), for every key any run has."""
    known = registries("metrics").names()
    out = []
    for metric in columns:
        if metric not in known:
            raise unknown_name("metric column", metric, known, "registered metrics", cutoff=0.5,
                               see="(see `chainforget list metrics`)")
        keys = dict.fromkeys(k for r in results for k in (r.get("metrics", {}).get(metric) or {}))
        out += [(metric, k) for k in keys]
    return out


def leaderboard_rows(results: Sequence[dict], digits: int = 3, columns: Sequence[str] = ()
                     ) -> tuple[list[str], list[list[Cell]]]:
    """Headers and rows of the leaderboard (see the module docstring for columns and aggregation); ``columns`` adds
    one column per registered metric name and task key (``"<key> <metric>"``)."""
    given = list(results)
    results = [r["result"] if isinstance(r, dict) and isinstance(r.get("result"), dict) else r for r in given]
    with_records = {id(r["result"]): r for r in given
                    if isinstance(r, dict) and isinstance(r.get("result"), dict) and r.get("records")}
    views: dict[tuple, dict | None] = {}

    def views_of(runs: Sequence[dict]) -> dict | None:
        key = tuple(id(r) for r in runs)
        if key not in views:
            views[key] = _seed_views(runs, with_records)
        return views[key]

    fields = varying_fields(results)
    labels = strategy_labels(results)
    safety, capability = task_kinds(results)

    def axes(r: dict) -> tuple[str, ...]:
        values = grouping_fields(r)
        return tuple(spec_label(values.get(k)) for k in fields)

    groups: dict[tuple, list[dict]] = {}
    for label, r in zip(labels, results):
        groups.setdefault((label, chain_label(r), *axes(r)), []).append(r)
    naive = {(chain_label(r), r.get("spec", {}).get("seed"), axes(r)): r
             for r in results if strategy_name(r) == "naive"}

    extra = _metric_columns(results, columns)
    headers = [Column("strategy", kind="label"), Column("chain", kind="label"),
               *(Column(f, kind="label") for f in fields), Column(SEEDS_HEADER, "seeds", "count")]
    headers += [c for t in safety for c in (Column(f"{t} forgetting"), Column(f"{t} biased forgetting"),
                                            Column(f"{t} group p"))]
    headers += [Column(f"{t} final") for t in capability] + [Column(f"{t} vs naive") for t in capability]
    headers += [Column(f"{key} {metric}{_unit_suffix(metric)}") for metric, key in extra]

    chain_order = list(dict.fromkeys(chain_label(r) for r in results))
    keys = sorted(groups, key=lambda k: (chain_order.index(k[1]), k[0] != "naive", k[0], k[2:]))
    rows = []
    for key in keys:
        runs = groups[key]
        seeds = f"{len(runs)}*" if len(runs) == 1 else str(len(runs))
        row = [Cell(key[0]), Cell(key[1]), *map(Cell, key[2:]), Cell(seeds, len(runs))]
        for t in safety:
            row.append(_stored_cell(runs, "forgetting", t, digits))
            seed_views = views_of(runs) if len(runs) > 1 else None
            if seed_views is not None and estimates.forgetting_vectors(seed_views, t):  # the spread over seeds
                est = estimates.spread_cell(seed_views, t, DEFAULTS["min_group_size"], DEFAULTS["n_boot"],
                                            DEFAULTS["seed"], _unit_of(runs[0], "biased_forgetting", t))
                row.append(estimate_cell(est, digits))
                row.append(Cell("" if est.p is None else f"{est.p:.3f}", est.p, p=est.p, seeds=len(runs),
                                unit="p-value", missing=est.missing))
                continue
            biased = _stored_cell(runs, "biased_forgetting", t, digits)
            row.append(biased)
            if len(runs) == 1:
                p = _num(metric_entry(runs[0], "group_effect_pvalue", t)[0])
                row.append(Cell("" if p is None else f"{p:.3f}", p, p=p, seeds=1, unit="p-value",
                                missing=None if p is not None else missing_reason(runs, "group_effect_pvalue", t)))
            else:
                row.append(Cell("", seeds=len(runs), unit="p-value",
                                missing="a per-run test; over several seeds see `chainforget findings` (2)"))
        for t in capability:
            row.append(estimate_cell(estimates.final_cell(runs, t, _unit_of(runs[0], "forgetting", t),
                                                          views_of(runs)), digits))
        for t in capability:
            if key[0] != "naive" and (mine := views_of(runs)) is not None:
                theirs = [naive.get((chain_label(r), r.get("spec", {}).get("seed"), axes(r))) for r in runs]
                if all(b is not None for b in theirs) and (naive_views := views_of(theirs)) is not None:
                    row.append(estimate_cell(estimates.paired_difference(
                        mine, naive_views, "final", t, _unit_of(runs[0], "forgetting", t)), digits))
                    continue
            diffs = []
            for r in runs:
                base = naive.get((chain_label(r), r.get("spec", {}).get("seed"), axes(r)))
                mine, theirs = final_score(r, t), final_score(base, t) if base is not None else None
                if strategy_name(r) != "naive" and mine is not None and theirs is not None:
                    diffs.append((mine - theirs, None, None))
            reason = ("naive is the baseline" if key[0] == "naive" else
                      "no naive run with the same chain, seed and settings")
            row.append(format_cell(aggregate(diffs), digits, seeds=len(diffs) or None,
                                   unit=_unit_of(runs[0], "forgetting", t), missing=reason))
        for metric, k in extra:
            row.append(_stored_cell(runs, metric, k, digits))
        rows.append(row)
    return Columns(headers, LEADERBOARD_SCHEMA), rows


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


def column_index(headers: Sequence[str], key: str) -> int:
    """Index of a column by name (case, spaces, '_' and '-' ignored); one-line ConfigError with did-you-mean."""
    normed = [_norm(h) for h in headers]
    if _norm(key) in normed:
        return normed.index(_norm(key))
    bare = [_norm(_UNIT.sub("", h)) for h in headers]  # a metric column may be named without its " [unit]"
    if _norm(key) in bare:
        return bare.index(_norm(key))
    close = closest(_norm(key), normed, cutoff=0.5)
    hint = f"did you mean {headers[normed.index(close)]!r}? " if close else ""
    raise ConfigError(f"unknown sort column {key!r}; {hint}columns: {', '.join(headers)}")


def _sort_value(cell: Any) -> float | str | None:
    value = getattr(cell, "value", None)
    if value is not None:
        return value
    text = "" if cell is None else str(cell)
    match = _NUMBER.match(text)
    if match:
        return float(match.group(1))
    return text or None


def sort_rows(rows: Sequence[Sequence[Any]], headers: Sequence[str], key: str, descending: bool = False) -> list:
    """Rows sorted by column ``key`` (numbers numerically, text alphabetically); blank cells always last."""
    idx = column_index(headers, key)
    keyed = [(_sort_value(row[idx]), row) for row in rows]
    blank = [row for v, row in keyed if v is None]
    numbers = [(v, row) for v, row in keyed if isinstance(v, float)]
    texts = [(v, row) for v, row in keyed if isinstance(v, str)]
    ordered = [row for _, row in sorted(numbers, key=lambda p: p[0], reverse=descending)]
    ordered += [row for _, row in sorted(texts, key=lambda p: p[0], reverse=descending)]
    return ordered + blank


MEASURE_FIELDS = ("value", "ci_low", "ci_high", "p", "n", "unit", "seeds", "missing")


def _as_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Column]:
    """Headers as :class:`Column`s; a plain string header is a measure when a cell under it holds numbers."""
    out = []
    for j, h in enumerate(headers):
        if isinstance(h, Column):
            out.append(h)
            continue
        numeric = any(isinstance(row[j], Cell) and (row[j].value is not None or row[j].missing) for row in rows)
        out.append(Column(str(h), kind="measure" if numeric else "label"))
    seen: dict[str, int] = {}
    for c in out:  # keys stay unique: a second 'x' becomes 'x_2'
        seen[c.key] = seen.get(c.key, 0) + 1
        if seen[c.key] > 1:
            c.key = f"{c.key}_{seen[c.key]}"
    return out


def _int(cell: Any) -> int | None:
    value = getattr(cell, "value", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)
    match = re.match(r"^\s*(\d+)", "" if cell is None else str(cell))
    return int(match.group(1)) if match else None


def _measure(cell: Any) -> dict[str, Any]:
    """A cell as its numbers: the Cell's own fields, or a number read from plain text (a CSV read back)."""
    if isinstance(cell, Cell):
        out = {"value": _num(cell.value), "ci_low": _num(cell.low), "ci_high": _num(cell.high), "p": _num(cell.p),
               "n": cell.n, "unit": cell.unit, "seeds": cell.seeds, "missing": cell.missing}
    else:
        text = "" if cell is None else str(cell)
        match = _NUMBER.match(text)
        out = dict.fromkeys(MEASURE_FIELDS)
        out["value"] = float(match.group(1)) if match else None
    if out["value"] is None and not out["missing"]:
        out["missing"] = "no value"
    return out


def _flag(cell: Any, row_measures: list[dict]) -> bool | None:
    """'*' anywhere in the cell = true ('p=0.020 *' too); otherwise false, or null when the cell is blank and the
    measure it marks has no value."""
    text = "" if cell is None else str(cell)
    if "*" in text:
        return True
    if not text.strip() and row_measures and row_measures[-1]["value"] is None:
        return None
    return False


def table_records(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[Column], list[dict]]:
    """The table as numbers: one dict per row keyed by column key (labels as text, counts as integers, measures
    as ``{value, ci_low, ci_high, p, n, unit, seeds, missing}``, flags as booleans)."""
    columns = _as_columns(headers, rows)
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        measures: list[dict] = []
        for column, cell in zip(columns, row):
            if column.kind == "measure":
                measures.append(_measure(cell))
                record[column.key] = measures[-1]
            elif column.kind == "count":
                record[column.key] = _int(cell)
            elif column.kind == "flag":
                record[column.key] = _flag(cell, measures)
            else:
                record[column.key] = "" if cell is None else str(cell)
        records.append(record)
    return columns, records


def _csv(columns: list[Column], records: list[dict]) -> str:
    names = []
    for c in columns:
        names += [f"{c.key}_{f}" for f in MEASURE_FIELDS] if c.kind == "measure" else [c.key]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for record in records:
        line = []
        for c in columns:
            cell = record[c.key]
            parts = [cell[f] for f in MEASURE_FIELDS] if c.kind == "measure" else [cell]
            line += ["" if v is None else str(v).lower() if isinstance(v, bool) else repr(v)
                     if isinstance(v, float) else str(v) for v in parts]
        writer.writerow(line)
    return buf.getvalue()


def _display(columns: list[Column], rows: Sequence[Sequence[Any]]) -> tuple[list[list[str]], dict[str, int]]:
    """Display text; a measure without a value shows 'n/a (k)', k numbering its reason in the footnotes."""
    notes: dict[str, int] = {}
    cells = []
    for row in rows:
        line = []
        for column, cell in zip(columns, row):
            text = "" if cell is None else str(cell)
            if not text and column.kind == "measure":
                reason = getattr(cell, "missing", None) or "no value"
                text = f"n/a ({notes.setdefault(reason, len(notes) + 1)})"
            line.append(text)
        cells.append(line)
    return cells, notes


def _latex_escape(text: str) -> str:
    return re.sub(r"([\\&%$#_{}~^])", lambda m: "\\" + m.group(1) if m.group(1) not in "\\~^" else " ", text)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "github",
                 schema: str | None = None, extra: dict | None = None) -> str:
    """Render as github|latex|csv|json|html|plain.

    JSON: ``{"schema", "columns": [{key, title, kind}], "rows": [{key: ...}], **extra}`` with numbers (see
    :func:`table_records`); CSV: one column per label/count and eight per measure (``<key>_value``,
    ``<key>_ci_low``, ... ``<key>_missing``). The text formats print missing values as ``n/a (k)`` with footnotes.
    """
    if fmt not in TABLE_FORMATS:
        hint = did_you_mean(fmt, TABLE_FORMATS, cutoff=0.5)
        raise ConfigError(f"unknown table format {fmt!r}; {hint}choose one of {', '.join(TABLE_FORMATS)}")
    schema = schema or getattr(headers, "schema", None) or "chainforget.table/2"
    if fmt in ("json", "csv"):
        columns, records = table_records(headers, rows)
        if fmt == "csv":
            return _csv(columns, records)
        doc = {"schema": schema, **(extra or {}),
               "columns": [{"key": c.key, "title": str(c), "kind": c.kind} for c in columns], "rows": records}
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    from tabulate import tabulate

    columns = _as_columns(headers, rows)
    raw = [["" if c is None else str(c) for c in row] for row in rows]
    numeric = [all(_NUMBER.match(row[j]) for row in raw if row[j]) and any(row[j] for row in raw)
               for j in range(len(columns))]
    cells, notes = _display(columns, rows)
    align = ["right" if n else "left" for n in numeric]
    text = tabulate(cells, headers=[str(h) for h in headers], tablefmt=_TABULATE_FMT[fmt], disable_numparse=True,
                    colalign=align)
    if not notes:
        return text
    if fmt == "html":
        import html

        return text + "\n" + "\n".join(f"<p>({k}) {html.escape(r)}</p>" for r, k in notes.items())
    if fmt == "latex":
        return text + "\n" + "\n".join(f"\\noindent ({k}) {_latex_escape(r)}\\\\" for r, k in notes.items())
    return text + "\n\n" + "\n".join(f"({k}) {r}" for r, k in notes.items())
