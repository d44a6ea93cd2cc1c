"""``chainforget plot``: the figures of the study, from result files only.

Each function writes ``<stem>.png`` and ``<stem>.pdf`` into ``out_dir`` (atomically) and returns their paths.
matplotlib is imported inside the functions and used through ``matplotlib.figure.Figure`` (no pyplot), so nothing
changes the caller's global backend and ``chainforget --help`` never imports it.

Quantities (``a`` = the row where a task was trained, ``last`` = the final score-matrix row, ``0`` = base model):
forgetting = R[a] - R[last] (stored metric with its CI when present); share of the gain lost = forgetting /
(R[a] - R[0]), unit-free, for comparing tasks scored in different units; safety retained = R[last] - R[a] averaged over
trained safety tasks (0 = all kept); capability gained = R[last] - R[0] averaged over capability tasks.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from chainforget.metrics.forgetting import matrix_drop
from chainforget.plugins import registries
from chainforget.report.tables import aggregate, chain_label, metric_entry, strategy_name
from chainforget.store.atomic import atomic_write_bytes

MIN_GROUP_SIZE = 20


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def _figure(width: float = 6.0, height: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, out_dir: str | Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150, metadata=meta)
        path = out_dir / f"{_slug(stem)}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def _run_name(result: dict) -> str:
    seed = result.get("spec", {}).get("seed")
    return f"{strategy_name(result)} {chain_label(result)}" + (f" seed {seed}" if seed is not None else "")


def _col(result: dict, task: str) -> int | None:
    tasks = result.get("eval_tasks", [])
    return tasks.index(task) if task in tasks else None


def _higher_is_better(result: dict, task: str) -> bool:
    return bool(result.get("task_info", {}).get(task, {}).get("higher_is_better", True))


def forgetting_of(result: dict, task: str) -> tuple[Any, Any, Any]:
    """(value, ci_low, ci_high): the stored metric, else the metrics room's forgetting of the score matrix (with the
    lower-is-better sign flip) without a CI."""
    stored = metric_entry(result, "forgetting", task)
    if stored[0] is not None:
        return stored
    col, matrix = _col(result, task), result.get("score_matrix") or []
    a = result.get("task_info", {}).get(task, {}).get("trained_at")
    if col is None or a is None or not matrix:
        return (None, None, None)
    column = [row[col] for row in matrix]
    return (matrix_drop(column, a, len(column) - 1, _higher_is_better(result, task)), None, None)


def score_heatmap(result: dict, out_dir: str | Path) -> list[Path]:
    """The score matrix: rows are stages (base model first), columns eval tasks, each cell annotated."""
    matrix = np.array([[np.nan if x is None else x for x in row] for row in result["score_matrix"]], dtype=float)
    stages, tasks = result["stages"], result["eval_tasks"]
    fig = _figure(1.6 + 1.3 * len(tasks), 1.2 + 0.5 * len(stages))
    ax = fig.add_subplot()
    bounded = np.nanmin(matrix, initial=0) >= 0 and np.nanmax(matrix, initial=0) <= 1
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0 if bounded else None, vmax=1 if bounded else None)
    for (i, j), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="white" if v < np.nanmean(matrix) else "black")
    kinds = [result.get("task_info", {}).get(t, {}).get("kind", "?") for t in tasks]
    ax.set_xticks(range(len(tasks)), [f"{t} ({k})" for t, k in zip(tasks, kinds)])
    ax.set_yticks(range(len(stages)), [f"{i}: {s}" for i, s in enumerate(stages)])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after stage")
    ax.set_title(f"score matrix: {_run_name(result)}", fontsize=9)
    fig.colorbar(image, ax=ax, label="primary score")
    return _save(fig, out_dir, f"heatmap-{result.get('run_id', _run_name(result))}")


def group_forgetting(result: dict, task: str) -> dict[str, tuple[Any, Any, Any]]:
    """group -> (forgetting, ci_low, ci_high): the stored ``group_forgetting`` metric (keyed ``task/group``, or
    nested ``{task: {group: ...}}``), else computed from ``group_score_matrix`` without CIs."""
    stored = result.get("metrics", {}).get("group_forgetting", {})
    nested = stored.get(task)
    if isinstance(nested, dict) and nested and all(isinstance(e, dict) for e in nested.values()):
        return {g: (e.get("value"), e.get("ci_low"), e.get("ci_high")) for g, e in nested.items()}
    prefixed = {k.split("/", 1)[1]: metric_entry(result, "group_forgetting", k) for k in stored
                if k.startswith(f"{task}/")}
    if prefixed:
        return prefixed
    rows = result.get("group_score_matrix", {}).get(task, {})
    a = result.get("task_info", {}).get(task, {}).get("trained_at") or 0  # an eval-only task: drift from base
    if a >= len(result.get("stages", [])) - 1:
        return {}  # trained in the last stage: nothing to forget yet
    out = {}
    for group, scores in rows.items():
        value = matrix_drop(scores, a, len(scores) - 1, _higher_is_better(result, task))
        if value is not None:
            out[group] = (value, None, None)
    return out


def group_forgetting_bars(result: dict, task: str, out_dir: str | Path) -> list[Path]:
    """Per-group forgetting of one safety task, sorted, with CIs; groups below 20 examples drawn pale."""
    per_group = {g: v for g, v in group_forgetting(result, task).items() if v[0] is not None}
    if not per_group:
        return []
    sizes = result.get("group_sizes", {}).get(task, {})
    groups = sorted(per_group, key=lambda g: per_group[g][0], reverse=True)
    values = np.array([per_group[g][0] for g in groups], dtype=float)
    low = np.array([per_group[g][1] if per_group[g][1] is not None else per_group[g][0] for g in groups], float)
    high = np.array([per_group[g][2] if per_group[g][2] is not None else per_group[g][0] for g in groups], float)
    fig = _figure(max(5.0, 0.45 * len(groups) + 2), 4.2)
    ax = fig.add_subplot()
    small = [sizes.get(g, MIN_GROUP_SIZE) < MIN_GROUP_SIZE for g in groups]
    colors = ["#c6dbef" if s else "#2171b5" for s in small]
    ax.bar(range(len(groups)), values, color=colors, yerr=[values - low, high - values], capsize=3)
    overall = forgetting_of(result, task)[0]
    if overall is not None:
        ax.axhline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
        ax.legend(fontsize=8)
    ax.axhline(0, color="grey", linewidth=0.5)
    labels = [f"{g} (n={sizes[g]})" if g in sizes else g for g in groups]
    ax.set_xticks(range(len(groups)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("forgetting (score after training - final)")
    ax.set_title(f"{task} forgetting per group: {_run_name(result)}", fontsize=9)
    return _save(fig, out_dir, f"group-forgetting-{task}-{result.get('run_id', _run_name(result))}")


def gain_lost(result: dict, task: str) -> tuple[float | None, float | None]:
    """(forgetting of ``task``, what training on it gained: R[a] - R[0]); unit-free share = forgetting / gain."""
    forgot = forgetting_of(result, task)[0]
    col, matrix = _col(result, task), result.get("score_matrix") or []
    a = result.get("task_info", {}).get(task, {}).get("trained_at")
    if col is None or a is None or len(matrix) <= a or matrix[0][col] is None or matrix[a][col] is None:
        return forgot, None
    return forgot, -matrix_drop([row[col] for row in matrix], 0, a, _higher_is_better(result, task))


def order_asymmetry(results: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """Forgetting of a chain's first task, one panel per first task (safety tasks first), each on its own
    metric's axis: tasks scored in different units (accuracy, nats per token) never share an axis. Above each bar,
    the share of what training on that task gained that was lost (forgetting / (R[a] - R[0])): the unit-free
    number to compare across panels."""
    cells: dict[tuple[str, str], list[tuple[Any, Any, Any]]] = {}
    gains: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}
    panels: dict[str, tuple[str, str]] = {}  # first task -> (kind, primary metric)
    for r in results:
        if not r.get("tasks"):
            continue
        first = r["tasks"][0]
        info = r.get("task_info", {}).get(first, {})
        if info.get("kind") not in ("safety", "capability"):
            continue
        panels.setdefault(first, (info["kind"], info.get("primary_metric", "score")))
        cells.setdefault((strategy_name(r), first), []).append(forgetting_of(r, first))
        gains.setdefault((strategy_name(r), first), []).append(gain_lost(r, first))
    if not cells:
        return []
    order = sorted(panels, key=lambda t: (panels[t][0] != "safety", t))
    strategies = sorted({s for s, _ in cells}, key=lambda s: (s != "naive", s))
    fig = _figure(max(5.0, (0.8 * len(strategies) + 1.5) * len(order)), 4.0)
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    for ax, task in zip(axes, order):
        kind, metric = panels[task]
        aggs = [aggregate(cells.get((s, task), [])) for s in strategies]
        keep = [i for i, a in enumerate(aggs) if a is not None]
        if keep:
            vals = np.array([aggs[i][0] for i in keep])
            lows = np.array([aggs[i][1] if aggs[i][1] is not None else aggs[i][0] for i in keep])
            highs = np.array([aggs[i][2] if aggs[i][2] is not None else aggs[i][0] for i in keep])
            ax.bar(keep, vals, width=0.6, color="#cb181d" if kind == "safety" else "#2171b5",
                   yerr=[vals - lows, highs - vals], capsize=3)
            for i, top in zip(keep, np.maximum(vals, highs)):
                forgot = _mean([f for f, _ in gains[(strategies[i], task)]])
                gain = _mean([g for _, g in gains[(strategies[i], task)]])
                text = f"{forgot / gain:.0%} of gain" if forgot is not None and gain and gain > 0 else "no gain"
                ax.annotate(text, (i, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xticks(range(len(strategies)), strategies, rotation=30 if len(strategies) > 4 else 0)
        ax.set_ylabel(f"forgetting of {task} ({metric})")
        ax.set_title(f"{kind} first: {task} forgotten", fontsize=9)
    fig.suptitle("order asymmetry: is safety forgotten more when it comes first?", fontsize=9)
    return _save(fig, out_dir, "order-asymmetry")


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def tradeoff_point(result: dict) -> tuple[float | None, float | None]:
    """(capability gained, safety retained) of one run, as defined in the module docstring."""
    matrix, info = result.get("score_matrix") or [], result.get("task_info", {})
    gained, retained = [], []
    for task in result.get("eval_tasks", []):
        col, kind = _col(result, task), info.get(task, {}).get("kind")
        if not matrix or matrix[0][col] is None or matrix[-1][col] is None:
            continue
        if kind == "capability":
            gained.append(-matrix_drop([row[col] for row in matrix], 0, len(matrix) - 1, _higher_is_better(result, task)))
        elif kind == "safety" and info[task].get("trained_at") is not None:
            retained.append(-forgetting_of(result, task)[0] if forgetting_of(result, task)[0] is not None else None)
    return _mean(gained), _mean(retained)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (both maximised), sorted by x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def pareto_scatter(results: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """Safety retained vs capability gained, one point per strategy and chain (mean over seeds), front drawn."""
    by_key: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}
    for r in results:
        by_key.setdefault((strategy_name(r), chain_label(r)), []).append(tradeoff_point(r))
    labels, points = [], []
    for key, pts in sorted(by_key.items()):
        x, y = _mean([p[0] for p in pts]), _mean([p[1] for p in pts])
        if x is not None and y is not None:
            labels.append(key)
            points.append((x, y))
    if not points:
        return []
    fig = _figure(6.0, 4.5)
    ax = fig.add_subplot()
    strategies = sorted({s for s, _ in labels}, key=lambda s: (s != "naive", s))
    chains = sorted({c for _, c in labels})
    markers = "osD^vP*X"
    colors = [f"C{i % 10}" for i in range(len(strategies))]
    for (s, c), (x, y) in zip(labels, points):
        ax.scatter(x, y, color=colors[strategies.index(s)], marker=markers[chains.index(c) % len(markers)], s=50)
        ax.annotate(s, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="black", linewidth=1,
            linestyle=":", label="Pareto front")
    for c in chains:
        ax.scatter([], [], color="grey", marker=markers[chains.index(c) % len(markers)], label=f"chain {c}")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("capability gained (final - base, mean over capability tasks)")
    ax.set_ylabel("safety retained (final - after safety training)")
    ax.set_title("safety retained vs capability gained", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "pareto")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 points or a constant variable."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for value in np.unique(v):
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def _lambda_at(result: dict, trained_at: int) -> float | None:
    """lambda_max at the end of training stage ``trained_at`` (sharpness listed per stage or per experience)."""
    sharp = result.get("sharpness")
    if not isinstance(sharp, list):
        return None
    if len(sharp) == len(result.get("stages", [])):
        entry = sharp[trained_at]
    elif len(sharp) == len(result.get("tasks", [])):
        entry = sharp[trained_at - 1]
    else:
        return None
    value = entry.get("lambda_max") if isinstance(entry, dict) else entry
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def sharpness_points(results: Sequence[dict]) -> list[tuple[float, float, str]]:
    """(lambda_max after training a task, that task's forgetting, kind) over runs, for tasks trained before the end."""
    points = []
    for r in results:
        last = len(r.get("stages", [])) - 1
        for task, info in r.get("task_info", {}).items():
            a = info.get("trained_at")
            if a is None or a >= last:
                continue
            lam, forgot = _lambda_at(r, a), forgetting_of(r, task)[0]
            if lam is not None and forgot is not None:
                points.append((lam, forgot, info.get("kind", "?")))
    return points


def sharpness_vs_forgetting(results: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """Hessian lambda_max at the end of a task's stage vs that task's forgetting, with the Spearman correlation."""
    points = sharpness_points(results)
    if not points:
        return []
    rho = spearman([p[0] for p in points], [p[1] for p in points])
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    for kind, color in (("safety", "#cb181d"), ("capability", "#2171b5")):
        sel = [p for p in points if p[2] == kind]
        if sel:
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], color=color, label=kind, s=30)
    ax.set_xscale("log" if min(p[0] for p in points) > 0 else "linear")
    ax.set_xlabel("lambda_max of the training-loss Hessian after the task's stage")
    ax.set_ylabel("forgetting of that task")
    rho_text = "n/a" if math.isnan(rho) else f"{rho:.2f}"
    ax.set_title(f"sharpness vs forgetting: Spearman rho = {rho_text} (n = {len(points)})", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "sharpness-vs-forgetting")


def metric_bars(results: Sequence[dict], metric: str, out_dir: str | Path) -> list[Path]:
    """Any registered metric (plugins included): one panel per stored key (task), one bar per strategy and chain
    (mean over seeds, interval from ``tables.aggregate`` within the metric's declared range); the axis names the
    metric's unit and the title its direction, both read from its ``MetricSpec``."""
    spec = registries("metrics").get(metric)
    keys = list(dict.fromkeys(k for r in results for k, e in (r.get("metrics", {}).get(metric) or {}).items()
                              if isinstance(e, dict) and isinstance(e.get("value"), (int, float))))
    if not keys:
        return []
    cells = sorted({(strategy_name(r), chain_label(r)) for r in results}, key=lambda c: (c[1], c[0] != "naive", c[0]))
    fig = _figure(max(5.0, (0.6 * len(cells) + 1.5) * len(keys)), 4.0)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    unit = "" if spec.unit in ("", None) else f" ({spec.unit})"
    for ax, key in zip(axes, keys):
        aggs = [aggregate((metric_entry(r, metric, key) for r in results
                           if (strategy_name(r), chain_label(r)) == cell), (spec.low, spec.high)) for cell in cells]
        keep = [i for i, a in enumerate(aggs) if a is not None]
        vals = np.array([aggs[i][0] for i in keep], dtype=float)
        lows = np.array([aggs[i][1] if aggs[i][1] is not None else aggs[i][0] for i in keep], dtype=float)
        highs = np.array([aggs[i][2] if aggs[i][2] is not None else aggs[i][0] for i in keep], dtype=float)
        ax.bar(keep, vals, color="#6a51a3", yerr=[vals - lows, highs - vals], capsize=3)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xticks(range(len(cells)), [f"{s}\n{c}" for s, c in cells], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric}{unit}")
        ax.set_title(key, fontsize=9)
    direction = {True: "higher is better", False: "lower is better", None: "not a score"}[spec.higher_is_better]
    fig.suptitle(f"{metric}: {direction}", fontsize=9)
    return _save(fig, out_dir, f"metric-{metric}")


def plot_all(results: Sequence[dict], out_dir: str | Path, metrics: Sequence[str] = ()) -> list[Path]:
    """Every figure that the runs support: heatmaps and group bars per run, then the cross-run figures, then one
    figure per metric named in ``metrics`` (any registered metric, plugins included).

    Every label is plain text: a task or group named with TeX-like characters (``x$\\frac{$``) is drawn as written,
    never parsed as mathtext (which fails on it)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        paths = _plot_all(results, out_dir)
        for metric in metrics:
            paths += metric_bars(results, metric, out_dir)
        return paths


def _plot_all(results: Sequence[dict], out_dir: str | Path) -> list[Path]:
    paths: list[Path] = []
    for r in results:
        paths += score_heatmap(r, out_dir)
        for task in r.get("eval_tasks", []):
            if r.get("task_info", {}).get(task, {}).get("kind") == "safety":
                paths += group_forgetting_bars(r, task, out_dir)
    paths += order_asymmetry(results, out_dir)
    paths += pareto_scatter(results, out_dir)
    paths += sharpness_vs_forgetting(results, out_dir)
    return paths
