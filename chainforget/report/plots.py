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

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS
from chainforget.metrics.forgetting import matrix_drop
from chainforget.metrics.pareto import gain_share, pareto_front, spearman
from chainforget.plugins import registries
from chainforget.report import drawing
from chainforget.report.tables import aggregate, chain_label, metric_entry, strategy_name
from chainforget.store.atomic import atomic_write_bytes

MIN_GROUP_SIZE = METRIC_OPTION_DEFAULTS["min_group_size"]


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


def task_unit(result: dict, task: str) -> str:
    """The unit of a task's scores: ``task_info['unit']``, else its primary metric's name (``acc``...)."""
    info = result.get("task_info", {}).get(task, {})
    return str(info.get("unit") or info.get("primary_metric") or "score")


def score_heatmap(result: dict, out_dir: str | Path) -> list[Path]:
    """The score matrix: rows are stages (base model first), columns eval tasks, each cell annotated; one panel and
    one color scale per unit (accuracy on 0-1, nats per token on its own range), so no column is flattened by
    another's range. A missing score is a grey 'n/a' cell, never a color."""
    import matplotlib

    matrix = np.array([[np.nan if x is None else x for x in row] for row in result["score_matrix"]], dtype=float)
    stages, tasks = result["stages"], result["eval_tasks"]
    units: dict[str, list[int]] = {}
    for j, t in enumerate(tasks):
        units.setdefault(task_unit(result, t), []).append(j)
    width = 2.0 + sum(1.25 * len(cols) + 1.1 for cols in units.values())
    fig = _figure(max(4.5, width), 1.5 + 0.45 * len(stages))
    axes = fig.subplots(1, len(units), squeeze=False, width_ratios=[len(c) for c in units.values()],
                        sharey=True)[0]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
    for ax, (unit, cols) in zip(axes, units.items()):
        block = matrix[:, cols]
        finite = block[np.isfinite(block)]
        bounded = finite.size > 0 and finite.min() >= 0 and finite.max() <= 1
        low, high = (0.0, 1.0) if bounded or finite.size == 0 else (float(finite.min()), float(finite.max()))
        if high <= low:
            low, high = low - 0.5, high + 0.5
        image = ax.imshow(block, cmap=cmap, aspect="auto", vmin=low, vmax=high)
        for (i, j), v in np.ndenumerate(block):
            if np.isfinite(v):
                dark = (v - low) / (high - low) < 0.55
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
            else:
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#555555", style="italic")
        kinds = [result.get("task_info", {}).get(tasks[j], {}).get("kind", "?") for j in cols]
        names = drawing.short_labels([tasks[j] for j in cols], 12)
        ax.set_xticks(range(len(cols)), [f"{t}\n({k})" for t, k in zip(names, kinds)], fontsize=8)
        fig.colorbar(image, ax=ax, label=drawing.wrap(unit, 0.4 * 4, 8), fraction=0.12, pad=0.03)
    axes[0].set_yticks(range(len(stages)), drawing.short_labels([f"{i}: {s}" for i, s in enumerate(stages)], 18),
                       fontsize=8)
    axes[0].set_ylabel("after stage")
    fig.supxlabel("evaluated task (one color scale per unit)", fontsize=8)
    fig.suptitle(drawing.wrap(f"score matrix: {_run_name(result)}", max(4.5, width) - 0.3), fontsize=9)
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
    """Per-group forgetting of one safety task, sorted, with CIs; groups below 20 examples drawn pale, groups
    without a value marked 'n/a' (a zero is a dot on the axis, not an empty slot)."""
    per_group = group_forgetting(result, task)
    if not any(v[0] is not None for v in per_group.values()):
        return []
    sizes = result.get("group_sizes", {}).get(task, {})
    groups = sorted(per_group, key=lambda g: (per_group[g][0] is None, -(per_group[g][0] or 0.0), g))
    fig = _figure(max(5.0, 0.45 * len(groups) + 2), 4.4)
    ax = fig.add_subplot()
    small = [sizes.get(g, MIN_GROUP_SIZE) < MIN_GROUP_SIZE for g in groups]
    colors = ["#c6dbef" if s else "#2171b5" for s in small]
    drawing.bars(ax, [per_group[g] for g in groups], colors)
    overall = forgetting_of(result, task)[0]
    if overall is not None:
        ax.axhline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    names = drawing.short_labels(groups, 18)
    labels = [f"{n} (n={sizes[g]})" if g in sizes else n for n, g in zip(names, groups)]
    ax.set_xticks(range(len(groups)), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_ylabel(f"forgetting of {task} ({task_unit(result, task)})")
    width = fig.get_size_inches()[0]
    ax.set_title(drawing.wrap(f"{task} forgetting per group: {_run_name(result)}", width - 1.0), fontsize=9)
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
    panels: dict[str, tuple[str, str]] = {}  # first task -> (kind, score unit)
    for r in results:
        if not r.get("tasks"):
            continue
        first = r["tasks"][0]
        info = r.get("task_info", {}).get(first, {})
        if info.get("kind") not in ("safety", "capability"):
            continue
        panels.setdefault(first, (info["kind"], task_unit(r, first)))
        cells.setdefault((strategy_name(r), first), []).append(forgetting_of(r, first))
        gains.setdefault((strategy_name(r), first), []).append(gain_lost(r, first))
    if not cells:
        return []
    order = sorted(panels, key=lambda t: (panels[t][0] != "safety", t))
    strategies = sorted({s for s, _ in cells}, key=lambda s: (s != "naive", s))
    names = drawing.short_labels(strategies, 16)
    fig = _figure(max(5.0, (0.75 * len(strategies) + 1.6) * len(order)), 4.4)
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    for ax, task in zip(axes, order):
        kind, metric = panels[task]
        aggs = [aggregate(cells.get((s, task), [])) for s in strategies]
        if drawing.bars(ax, aggs, "#cb181d" if kind == "safety" else "#2171b5"):
            ax.legend(fontsize=8)
        ax.margins(y=0.15)  # room for the share above the tallest bar
        for i, agg in enumerate(aggs):
            if agg is None:
                continue
            top = max(agg[0], agg[2] if agg[2] is not None else agg[0])
            forgot = _mean([f for f, _ in gains[(strategies[i], task)]])
            gain = _mean([g for _, g in gains[(strategies[i], task)]])
            share = gain_share(forgot, gain)
            text = "no gain" if share is None else f"{share:.0%}"
            ax.annotate(text, (i, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        ax.set_xticks(range(len(strategies)), names, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_ylabel(f"forgetting of {task} ({metric})")
        ax.set_title(f"{kind} first: {task} forgotten", fontsize=9)
    fig.supxlabel("above each bar: the share of what the task's own stage gained that was lost", fontsize=8)
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


def tradeoff_pairs(result: dict) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """Per (trained safety task, capability task): (capability gained on that task, safety retained on that task),
    each in its own task's unit; never averaged across tasks, whose units may differ."""
    matrix, info = result.get("score_matrix") or [], result.get("task_info", {})
    tasks = result.get("eval_tasks", [])
    last = len(matrix) - 1  # a safety task trained in the last stage has no forgetting yet: no point for it
    safety = [t for t in tasks if info.get(t, {}).get("kind") == "safety"
              and isinstance(info[t].get("trained_at"), int) and info[t]["trained_at"] < last]
    capability = [t for t in tasks if info.get(t, {}).get("kind") == "capability"]
    out = {}
    for c in capability:
        col = _col(result, c)
        gained = None
        if matrix and matrix[0][col] is not None and matrix[-1][col] is not None:
            gained = -matrix_drop([row[col] for row in matrix], 0, len(matrix) - 1, _higher_is_better(result, c))
        for s in safety:
            forgot = forgetting_of(result, s)[0]
            out[(s, c)] = (gained, None if forgot is None else -forgot)
    return out


def pareto_scatter(results: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """Safety retained vs capability gained, one panel per (safety task, capability task) pair so that each axis
    has one unit, one point per strategy and chain (mean over seeds), the front drawn. Points carry no text: the
    color names the strategy and the marker the chain in a legend under the panels, so labels never collide and
    long setting names never squeeze the axes; points that coincide are drawn side by side."""
    by_key: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        by_key.setdefault((strategy_name(r), chain_label(r)), []).append(r)
    panels: dict[tuple[str, str], tuple[list[tuple[str, str]], list[tuple[float, float]]]] = {}
    units: dict[str, str] = {}
    for key, runs in sorted(by_key.items()):
        pairs = [tradeoff_pairs(r) for r in runs]
        for r in runs:
            for t in r.get("eval_tasks", []):
                units.setdefault(t, task_unit(r, t))
        for pair in dict.fromkeys(p for d in pairs for p in d):
            x, y = _mean([d.get(pair, (None, None))[0] for d in pairs]), _mean([d.get(pair, (None, None))[1]
                                                                              for d in pairs])
            if x is not None and y is not None:
                labels, points = panels.setdefault(pair, ([], []))
                labels.append(key)
                points.append((x, y))
    if not panels:
        return []
    strategies = sorted({s for s, _ in by_key}, key=lambda s: (s != "naive", s))
    chains = sorted({c for _, c in by_key})
    markers = "osD^vP*X"
    fig = _figure(max(6.0, 4.2 * len(panels)), 4.4 + 0.25 * math.ceil((len(strategies) + len(chains)) / 3))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, ((s_task, c_task), (labels, points)) in zip(axes, panels.items()):
        from matplotlib.transforms import offset_copy

        same: dict[tuple[float, float], int] = {}
        for p in points:
            same[p] = same.get(p, 0) + 1
        seen: dict[tuple[float, float], int] = {}
        for (s, c), (x, y) in zip(labels, points):
            k = seen[(x, y)] = seen.get((x, y), -1) + 1
            shift = (k - (same[(x, y)] - 1) / 2) * 8  # coinciding points side by side (points), never hidden
            ax.scatter(x, y, color=f"C{strategies.index(s) % 10}", marker=markers[chains.index(c) % len(markers)],
                       s=55, edgecolor="black", linewidth=0.5, zorder=3,
                       transform=offset_copy(ax.transData, fig=fig, x=shift, y=0, units="points"))
        ax.update_datalim(points)  # the offset transform keeps scatter out of autoscaling: every point in view
        ax.margins(0.08)
        ax.autoscale_view()
        for chain in chains:  # one front per chain, as findings states its Pareto set
            mine = [i for i, (_, c) in enumerate(labels) if c == chain]
            front = [mine[i] for i in pareto_front([points[i] for i in mine])]
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="black", linewidth=1,
                    linestyle=":", zorder=2)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlabel(drawing.wrap(f"{c_task} gained, final - base ({units.get(c_task, 'score')})", 3.8, 9))
        ax.set_ylabel(drawing.wrap(f"{s_task} retained, final - after training ({units.get(s_task, 'score')})",
                                   3.6, 9))
        ax.set_title(f"{s_task} vs {c_task}", fontsize=9)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", marker="o", color=f"C{i % 10}", label=s)
               for i, s in enumerate(strategies)]
    handles += [Line2D([], [], linestyle="none", marker=markers[i % len(markers)], color="grey", label=f"chain {c}")
                for i, c in enumerate(chains)]
    handles.append(Line2D([], [], color="black", linestyle=":", label="Pareto front (per chain)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8, frameon=False)
    fig.suptitle("safety retained vs capability gained (mean over seeds; up and right is better)", fontsize=9)
    return _save(fig, out_dir, "pareto")


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
    """Hessian lambda_max at the end of a task's stage vs that task's forgetting, one panel per score unit (an
    accuracy's forgetting and a log-probability's never share an axis, nor a rank correlation), each with its
    Spearman correlation."""
    units = list(dict.fromkeys(task_unit(r, t) for r in results for t in r.get("task_info", {})))
    panels = []
    for unit in units:  # the same points, restricted to the tasks scored in this unit
        only = [{**r, "task_info": {t: i for t, i in r.get("task_info", {}).items() if task_unit(r, t) == unit}}
                for r in results]
        points = sharpness_points(only)
        if points:
            panels.append((unit, points))
    if not panels:
        return []
    fig = _figure(max(5.5, 4.6 * len(panels)), 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (unit, points) in zip(axes, panels):
        rho = spearman([p[0] for p in points], [p[1] for p in points])
        for kind, color in (("safety", "#cb181d"), ("capability", "#2171b5")):
            sel = [p for p in points if p[2] == kind]
            if sel:
                ax.scatter([p[0] for p in sel], [p[1] for p in sel], color=color, label=kind, s=30)
        ax.set_xscale("log" if min(p[0] for p in points) > 0 else "linear")
        ax.set_xlabel(drawing.wrap("lambda_max of the training-loss Hessian after the task's stage", 4.0, 10))
        ax.set_ylabel(f"forgetting of that task ({unit})")
        rho_text = "n/a" if math.isnan(rho) else f"{rho:.2f}"
        ax.set_title(f"{unit}: Spearman rho = {rho_text} (n = {len(points)})", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("sharpness vs forgetting", fontsize=9)
    return _save(fig, out_dir, "sharpness-vs-forgetting")


def metric_values(results: Sequence[dict], metric: str) -> list[str]:
    """The keys (tasks) for which some run stores a value of ``metric``."""
    return list(dict.fromkeys(k for r in results for k, e in (r.get("metrics", {}).get(metric) or {}).items()
                              if isinstance(e, dict) and isinstance(e.get("value"), (int, float))))


def metric_bars(results: Sequence[dict], metric: str, out_dir: str | Path) -> list[Path]:
    """Any registered metric (plugins included): one panel per stored key (task), one bar per strategy and chain
    (mean over seeds, interval from ``tables.aggregate`` within the metric's declared range); the axis names the
    metric's unit (its ``MetricSpec``'s, or the task's own for a metric in task units) and the title its
    direction. A strategy without a value is marked 'n/a', distinct from a zero."""
    spec = registries("metrics").get(metric)
    keys = metric_values(results, metric)
    if not keys:
        return []
    cells = sorted({(strategy_name(r), chain_label(r)) for r in results}, key=lambda c: (c[1], c[0] != "naive", c[0]))
    fig = _figure(max(5.0, (0.45 * len(cells) + 1.6) * len(keys)), 4.6)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    info = {t: i for r in results for t, i in r.get("task_info", {}).items()}
    for ax, key in zip(axes, keys):
        aggs = [aggregate((metric_entry(r, metric, key) for r in results
                           if (strategy_name(r), chain_label(r)) == cell), (spec.low, spec.high)) for cell in cells]
        if drawing.bars(ax, aggs, "#6a51a3"):
            ax.legend(fontsize=8)
        names = drawing.short_labels([s for s, _ in cells], 16)
        ax.set_xticks(range(len(cells)), [f"{n} {c}" for n, (_, c) in zip(names, cells)], rotation=45, ha="right",
                      rotation_mode="anchor", fontsize=7)
        unit = drawing.metric_unit(metric, info.get(key.split("/", 1)[0]))
        ax.set_ylabel(drawing.wrap(f"{metric} ({unit})", 3.6, 10))
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
