"""The leaderboard table: result dicts in, (headers, rows) out, rendered in one of six formats.

One row per strategy and chain order (and per any other setting that varies across the runs: spec fields and the
resolved training settings, e.g. finetune or learning_rate; strategy hyper-parameters that differ are appended to
the strategy name), aggregating seeds. Columns, for every safety task ``S`` and capability task ``C`` found in the runs::

    strategy | chain | <varying fields> | seeds | S forgetting | S biased forgetting | C final | C vs naive

Aggregation over seeds (``aggregate``): with one seed a cell shows the stored metric and its stored 95% bootstrap
CI ("0.120 [0.050, 0.190]"); with n > 1 seeds it shows the mean over seeds and the across-seed 95% interval
mean +- t(0.975, n-1) * sd / sqrt(n) (Student t, sd with n-1), which reflects seed-to-seed variation rather than
example sampling. ``C final`` is the last score-matrix row (after every stage, a retune stage included).
``C vs naive`` is the capability cost: final score minus naive's final score on the same chain, seed and other
fields, aggregated the same way (negative = capability lost); blank for naive and where no naive run matches.
A missing metric gives a blank cell, never a zero.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any, Iterable, Sequence

from chainforget.errors import ConfigError, closest, did_you_mean
from chainforget.metrics.base import TASK_UNIT
from chainforget.metrics.replicates import combine_seeds, se_from_interval
from chainforget.plugins import registries

FORMATS = ("github", "latex", "csv", "json", "html", "plain")
_TABULATE_FMT = {"github": "github", "latex": "latex_booktabs", "html": "html", "plain": "simple"}
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
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


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student t quantile (table up to 30 degrees of freedom, then a close approximation)."""
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.5 / df


def aggregate(entries: Iterable[tuple[Any, Any, Any]], bounds: tuple[float | None, float | None] = (None, None)
              ) -> tuple[float, float | None, float | None] | None:
    """(value, ci_low, ci_high) over seeds: the single entry as stored (conditional on one trained model), or the
    mean with an interval holding both between-seed and evaluation variance (``metrics.replicates.combine_seeds``),
    clipped to the metric's declared ``bounds``."""
    clean = [(_num(v), _num(lo), _num(hi)) for v, lo, hi in entries]
    clean = [e for e in clean if e[0] is not None]
    if not clean:
        return None
    if len(clean) == 1:
        return clean[0]
    return combine_seeds([e[0] for e in clean], [se_from_interval(e[1], e[2]) for e in clean], bounds)[:3]


def format_cell(agg: tuple[float, float | None, float | None] | None, digits: int = 3) -> Cell:
    """'0.120 [0.050, 0.190]', '0.120' without a CI, '' when missing."""
    if agg is None:
        return Cell("")
    value, low, high = agg
    text = f"{value:.{digits}f}"
    if low is not None and high is not None:
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return Cell(text, value, low, high)


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


def _varying_fields(results: Sequence[dict]) -> list[str]:
    """Grouping fields whose value differs between runs (a field absent from some runs also varies)."""
    per_run = [grouping_fields(r) for r in results]
    order = list(dict.fromkeys(k for fields in per_run for k in fields))
    return [k for k in order
            if len({json.dumps(f.get(k, "<absent>"), sort_keys=True, default=str) for f in per_run}) > 1]


def _strategy_labels(results: Sequence[dict]) -> list[str]:
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


def _bounds(metric: str) -> tuple[float | None, float | None]:
    spec = registries("metrics").get(metric)
    return spec.low, spec.high


def _unit_suffix(metric: str) -> str:
    """`` [unit]`` of a metric whose unit is its own (a plugin's "ratio"); nothing for task-unit metrics."""
    unit = registries("metrics").get(metric).unit
    return "" if not unit or unit == TASK_UNIT else f" [{unit}]"


def _metric_columns(results: Sequence[dict], columns: Sequence[str]) -> list[tuple[str, str]]:
    """(metric, key) pairs of the extra ``--columns`` metrics (plugins included), for every key any run has."""
    known = registries("metrics").names()
    out = []
    for metric in columns:
        if metric not in known:
            raise ConfigError(f"unknown metric column {metric!r}; {did_you_mean(metric, known, cutoff=0.5)}"
                              f"registered metrics: {', '.join(known)} (see `chainforget list metrics`)")
        keys = dict.fromkeys(k for r in results for k in (r.get("metrics", {}).get(metric) or {}))
        out += [(metric, k) for k in keys]
    return out


def leaderboard_rows(results: Sequence[dict], digits: int = 3, columns: Sequence[str] = ()
                     ) -> tuple[list[str], list[list[Cell]]]:
    """Headers and rows of the leaderboard (see the module docstring for columns and aggregation); ``columns`` adds
    one column per registered metric name and task key (``"<key> <metric>"``)."""
    results = list(results)
    fields = _varying_fields(results)
    labels = _strategy_labels(results)
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
    headers = ["strategy", "chain", *fields, SEEDS_HEADER]
    headers += [h for t in safety for h in (f"{t} forgetting", f"{t} biased forgetting", f"{t} group p")]
    headers += [f"{t} final" for t in capability] + [f"{t} vs naive" for t in capability]
    headers += [f"{key} {metric}{_unit_suffix(metric)}" for metric, key in extra]

    chain_order = list(dict.fromkeys(chain_label(r) for r in results))
    keys = sorted(groups, key=lambda k: (chain_order.index(k[1]), k[0] != "naive", k[0], k[2:]))
    rows = []
    for key in keys:
        runs = groups[key]
        seeds = f"{len(runs)}*" if len(runs) == 1 else str(len(runs))
        row = [Cell(key[0]), Cell(key[1]), *map(Cell, key[2:]), Cell(seeds, len(runs))]
        for t in safety:
            row.append(format_cell(aggregate((metric_entry(r, "forgetting", t) for r in runs),
                                             _bounds("forgetting")), digits))
            row.append(format_cell(aggregate((metric_entry(r, "biased_forgetting", t) for r in runs),
                                             _bounds("biased_forgetting")), digits))
            p = metric_entry(runs[0], "group_effect_pvalue", t)[0] if len(runs) == 1 else None
            row.append(Cell("" if p is None else f"{p:.3f}", p))
        for t in capability:
            row.append(format_cell(aggregate((final_score(r, t), None, None) for r in runs), digits))
        for t in capability:
            diffs = []
            for r in runs:
                base = naive.get((chain_label(r), r.get("spec", {}).get("seed"), axes(r)))
                mine, theirs = final_score(r, t), final_score(base, t) if base is not None else None
                if strategy_name(r) != "naive" and mine is not None and theirs is not None:
                    diffs.append((mine - theirs, None, None))
            row.append(format_cell(aggregate(diffs), digits))
        for metric, k in extra:
            row.append(format_cell(aggregate((metric_entry(r, metric, k) for r in runs), _bounds(metric)), digits))
        rows.append(row)
    return headers, rows


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


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "github") -> str:
    """Render as github|latex|csv|json|html|plain. CSV and JSON (a list of objects) load back losslessly."""
    if fmt not in FORMATS:
        hint = did_you_mean(fmt, FORMATS, cutoff=0.5)
        raise ConfigError(f"unknown table format {fmt!r}; {hint}choose one of {', '.join(FORMATS)}")
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    headers = [str(h) for h in headers]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(cells)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(headers, row)) for row in cells], indent=2, ensure_ascii=False) + "\n"
    from tabulate import tabulate

    numeric = [all(_NUMBER.match(row[j]) for row in cells if row[j]) and any(row[j] for row in cells)
               for j in range(len(headers))]
    align = ["right" if n else "left" for n in numeric]
    return tabulate(cells, headers=headers, tablefmt=_TABULATE_FMT[fmt], disable_numparse=True, colalign=align)
