"""``chainforget findings`` output: text (default), JSON, or one self-contained HTML page.

The HTML page opens with a summary (one sentence per question, with its interval and minimum detectable effect),
then each question's table and figures: forest plots on the metric's own scale with intervals clipped to the range
its values can take, per-group results as a table and a forest plot. It holds its figures as PNG ``data:`` URIs and
references nothing outside itself (no scripts, style sheets, fonts or links), so it opens from disk without a server.
Everything shown is read from the findings dict, so the page, the text and the JSON show the same numbers.

One wording for one situation, in every question (:func:`verdict`): a missing value says why; a difference that is
exactly 0 on every example says "identical"; a test says "p < 0.001" below 0.001; "not distinguishable from 0" always
comes with the effect size the study would usually miss.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from chainforget.config.defaults import FINDINGS_FORMATS
from chainforget.errors import ConfigError, did_you_mean
from chainforget.report import drawing

FIG_WIDTH = 10.5  # inches at FIG_DPI: 1,050 px, the page's column width
FIG_DPI = 100
COLUMN_PX = int(FIG_WIDTH * FIG_DPI)
SAFETY, CAPABILITY = "#cb181d", "#2171b5"


def num(x: Any, digits: int = 3) -> str:
    """A number for reading: fixed ``digits`` decimals, small non-zero values in two significant digits, float noise
    below 1e-12 as 0."""
    if x is None:
        return "n/a"
    if not isinstance(x, (int, float)):
        return str(x)
    if abs(x) < 1e-12:  # float noise (an interval end at -5.6e-17) reads as the 0 it is
        x = 0.0
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2g}"
    return f"{x:.{digits}f}"


def p_text(p: Any) -> str:
    """'p < 0.001', 'p = 0.012', 'p = 0.41'; 'no p' when there is no test."""
    if p is None:
        return "no p"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def p_cell(p: Any) -> str:
    """A p column's cell: '< 0.001', '0.012', '0.41'; 'n/a' without a test."""
    return "n/a" if p is None else p_text(p).replace("p = ", "").replace("p < ", "< ")


def _unit(unit: Any) -> str:
    return f" {unit}" if unit else ""


def interval(e: dict | None, unit: Any = None) -> str:
    """'0.047 [-0.041, 0.172] acc'; an open side is '-inf'/'inf'; a missing value is 'n/a'."""
    if not e or e.get("value") is None:
        return "n/a"
    text = num(e["value"])
    low, high = e.get("ci_low"), e.get("ci_high")
    if low is not None or high is not None or e.get("unbounded"):
        text += f" [{'-inf' if low is None else num(low)}, {'inf' if high is None else num(high)}]"
    return text + _unit(unit)


def identical(e: dict) -> bool:
    """A difference that is exactly 0 with an interval of width 0: the same on every evaluation example."""
    return e.get("value") == 0 and e.get("ci_low") in (0, None) and e.get("ci_high") in (0, None)


def verdict(e: dict | None, more: str, less: str, unit: Any = None, alpha: float = 0.05,
            missing: str | None = None) -> str:
    """One sentence reading an effect against 0 and against its minimum detectable effect (MDE), worded the same
    way in every question."""
    if not e or e.get("value") is None:
        return f"missing: {missing or (e or {}).get('missing') or 'no value for these runs'}"
    if identical(e):
        return ("identical on every evaluation example: no difference at this study size, and no variation to size "
                "a minimum detectable effect by (more or harder evaluation data would tell)")
    p, mde = e.get("p"), e.get("mde")
    if p is None:
        return "no test: an interval is open (e.g. a gain not clearly positive); more data is needed"
    open_ended = bool(e.get("unbounded")) or e.get("ci_low") is None or e.get("ci_high") is None
    why = ("an open interval (a gain not clearly positive) sizes no minimum detectable effect" if open_ended
           else "no variation to size a minimum detectable effect by")
    size = f"{num(mde)}{_unit(unit)}"
    if p < alpha:
        return f"{more if e['value'] > 0 else less} ({p_text(p)}); " + (f"minimum detectable effect {size}" if mde
                                                                         else why)
    if not mde:
        return f"not distinguishable from 0 ({p_text(p)}); {why}"
    return (f"not distinguishable from 0 ({p_text(p)}); effects smaller than {size} would usually be missed at this "
            f"study size")


# --- the three questions, as sentences and table rows ------------------------------------------------------------


def _alpha(found: dict) -> float:
    return 1.0 - float(found.get("confidence", 0.95))


def _oa_words(oa: dict) -> tuple[str, str]:
    if oa.get("higher_is_better") is False:
        return "safety is forgotten more when it comes first", "capability is forgotten more when it comes first"
    return "safety keeps more when it comes first", "capability keeps more when it comes first"


def oa_reading(found: dict, a: dict) -> str:
    oa = found["order_asymmetry"]
    sides = [("safety", a.get("safety_first") or {}), ("capability", a.get("capability_first") or {})]
    absent = [(name, side) for name, side in sides if side.get("value") is None]
    if len(absent) == 2:
        reasons = list(dict.fromkeys(side.get("missing") or "no value" for _, side in absent))
        return f"missing: {oa['metric']} is missing for both orders ({'; '.join(reasons)})"
    if absent:
        name, side = absent[0]
        return (f"missing: {oa['metric']} is missing when {name} comes first ({side.get('missing') or 'no value'}); "
                f"no comparison")
    more, less = _oa_words(oa)
    return verdict(a.get("difference"), more, less, oa.get("unit"), _alpha(found))


def gd_reading(found: dict, a: dict) -> str:
    spread = a.get("spread")
    if not spread:
        return f"missing: {a.get('reading') or 'no spread for these runs'}"
    text = verdict(spread, "forgetting depends on the group", "forgetting depends on the group", a.get("unit"),
                   _alpha(found))
    groups = a.get("groups") or []
    worst = [g for g in groups if g.get("ci_low") is not None and all(
        o.get("ci_high") is not None and g["ci_low"] > o["ci_high"] for o in groups if o is not g)]
    if worst and spread.get("p") is not None and spread["p"] < _alpha(found):
        text += f"; {worst[0]['group']} forgot more than every other group (simultaneous intervals)"
    return text


def mi_reading(found: dict, a: dict) -> str:
    base = found["mitigation"]["baseline"]
    if a.get("measure") == "safety forgetting":
        more, less = f"forgets more than {base}", f"forgets less than {base}"
    else:
        more, less = f"keeps more capability than {base}", f"loses capability against {base}"
    return verdict(a.get("difference"), more, less, a.get("unit"), _alpha(found))


def _pick(answers: list[dict], baseline: str) -> dict | None:
    """The answer a summary leads with: the baseline setting's (the plain chain), else the first."""
    return next((a for a in answers if a.get("setting") == baseline), answers[0] if answers else None)


def summary(found: dict) -> list[str]:
    """One sentence per question, each with its interval and MDE."""
    alpha = _alpha(found)
    baseline = found["mitigation"].get("baseline", "naive")
    out = []
    oa = found["order_asymmetry"]
    a = _pick(oa["answers"], baseline)
    if a is None:
        out.append(f"(1) Order asymmetry: no answer from these runs ({oa.get('note') or 'no pair of orders'}).")
    else:
        d = a.get("difference") or {}
        sig = sum(1 for x in oa["answers"] if (x.get("difference") or {}).get("p") is not None
                  and x["difference"]["p"] < alpha)
        what = (f"{oa['metric']} first-task difference {interval(d, oa.get('unit'))}; "
                if d.get("value") is not None else "")
        out.append(f"(1) Order asymmetry, {a['setting']} ({a['safety_task']} / {a['capability_task']}): "
                   f"{what}{oa_reading(found, a)}."
                   + (f" {sig} of {len(oa['answers'])} settings differ at p < {alpha:g}."
                      if len(oa["answers"]) > 1 else ""))
    gd = found["group_dependence"]
    a = _pick(gd["answers"], baseline)
    if a is None:
        out.append(f"(2) Group dependence: no answer from these runs ({gd.get('note') or 'no safety task'}).")
    else:
        s = a.get("spread") or {}
        sig = sum(1 for x in gd["answers"] if (x.get("spread") or {}).get("p") is not None and x["spread"]["p"] < alpha)
        out.append(f"(2) Group dependence, {a['setting']} on {a['chain']} ({a['task']}): between-group spread "
                   f"{interval(s, a.get('unit'))}; {gd_reading(found, a)}."
                   + (f" {sig} of {len(gd['answers'])} cells show a spread at p < {alpha:g}."
                      if len(gd["answers"]) > 1 else ""))
    mi = found["mitigation"]
    safety = [x for x in mi["answers"] if x.get("measure") == "safety forgetting"
              and (x.get("difference") or {}).get("value") is not None]
    if not safety:
        out.append(f"(3) Mitigation: no answer from these runs ({mi.get('note') or 'no strategy to compare'}).")
    else:
        best = min(safety, key=lambda x: x["difference"]["value"])
        d = best["difference"]
        sig = sum(1 for x in safety if d_p(x) is not None and d_p(x) < alpha and x["difference"]["value"] < 0)
        out.append(f"(3) Mitigation: {sig} of {len(safety)} (strategy, chain, task) cells forget less than "
                   f"{mi['baseline']} at p < {alpha:g}; the largest reduction, {best['setting']} on "
                   f"{best['chain']} ({best['task']}): {interval(d, best.get('unit'))}; "
                   f"{mi_reading(found, best)}.")
    return out


def mde_text(e: dict | None) -> str:
    """The MDE column: 'n/a (no variation)' when every example agrees, 'n/a' when there is no estimate."""
    if e and e.get("value") is not None and identical(e):
        return "n/a (no variation)"
    return num((e or {}).get("mde"))


def d_p(answer: dict) -> float | None:
    return (answer.get("difference") or {}).get("p")


def tables(found: dict) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, explanation, headers, rows) of the three answers and the Pareto set."""
    oa = found["order_asymmetry"]
    unit = f" ({oa['unit']})" if oa.get("unit") else ""
    direction = "lower" if oa.get("higher_is_better") is False else "higher"
    t1 = ("(1) Order asymmetry: is safety forgotten more when it comes first?",
          f"{oa['metric']}{unit} of the first task of each order ({direction} is better); difference = safety first "
          f"minus capability first; MDE = minimum detectable |difference| at {found['power']:.0%} power. "
          + (oa.get("note") or ""),
          ["setting", "pair", "safety first", "capability first", "difference [95% CI]", "p", "MDE", "seeds",
           "reading"],
          [[a["setting"], f"{a['safety_task']} / {a['capability_task']}", interval(a.get("safety_first")),
            interval(a.get("capability_first")), interval(a.get("difference")),
            p_cell(d_p(a)), mde_text(a.get("difference")),
            f"{(a.get('safety_first') or {}).get('seeds', '?')}/{(a.get('capability_first') or {}).get('seeds', '?')}",
            oa_reading(found, a)] for a in oa["answers"]])
    gd = found["group_dependence"]
    t2 = ("(2) Group dependence: does forgetting depend on the group?",
          "spread = noise-corrected between-group SD of per-group forgetting (its interval excludes 0 exactly when "
          "p < 0.05); per-group forgetting with simultaneous 95% intervals below. " + (gd.get("note") or ""),
          ["setting", "chain", "task", "seeds", "spread [95% CI]", "p", "MDE", "unit", "reading"],
          [[a["setting"], a["chain"], a["task"], str(a.get("seeds", "")), interval(a.get("spread")),
            p_cell((a.get("spread") or {}).get("p")), mde_text(a.get("spread")), a.get("unit") or "",
            gd_reading(found, a)] for a in gd["answers"]])
    mi = found["mitigation"]
    t3 = (f"(3) Mitigation: each strategy minus {mi['baseline']}, paired by seed and example",
          "safety forgetting (negative = forgets less) and final capability (negative = capability cost). "
          + (mi.get("note") or ""),
          ["setting", "chain", "measure", "task", "unit", "pairs", "difference [95% CI]", "p", "MDE", "reading"],
          [[a["setting"], a["chain"], a["measure"], a["task"], a.get("unit") or "", str(a.get("pairs", "")),
            interval(a.get("difference")), p_cell(d_p(a)), mde_text(a.get("difference")),
            mi_reading(found, a)] for a in mi["answers"]])
    t4 = ("Pareto set: less safety forgetting and more final capability",
          "a setting is in the set when no other setting on that chain forgets less and ends higher",
          ["chain", "safety / capability", "Pareto set"],
          [[f["chain"], f"{f['safety_task']} / {f['capability_task']}", ", ".join(f["front"])]
           for f in mi["pareto"]])
    return [t1, t2, t3, t4]


def group_rows(answer: dict) -> list[list[str]]:
    """Per-group forgetting of one group-dependence answer: group, examples, value with its interval."""
    return [[g["group"], "" if g.get("n") is None else str(g["n"]),
             interval(g) + (f" ({g['ci_missing']})" if g.get("ci_missing") else "")]
            for g in answer.get("groups") or []]


def render_text(found: dict) -> str:
    lines = [f"findings over {found['runs']} runs ({found['confidence']:.0%} intervals; MDE at "
             f"{found['power']:.0%} power)", "", "Summary"] + [f"  {s}" for s in summary(found)]
    for i, (title, explanation, headers, rows) in enumerate(tables(found)):
        lines += ["", title, explanation.strip()]
        if not rows:
            lines.append("  (no answer from these runs)")
        for row in rows:
            lines.append("  " + " | ".join(f"{h}: {c}" for h, c in zip(headers, row) if c))
        if i == 1:
            for a in found["group_dependence"]["answers"]:
                if a.get("groups"):
                    lines.append(f"  per group, {a['setting']} on {a['chain']} ({a['task']}, {a.get('unit', '')}):")
                    lines += [f"    {g:<24} n={n:<5} {v}" for g, n, v in group_rows(a)]
    return "\n".join(lines) + "\n"


# --- figures ------------------------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(rows: int, panels: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIG_WIDTH, 1.3 + 0.42 * max(rows, 2)), layout="constrained")
    return fig, fig.subplots(1, panels, squeeze=False, sharey=True)[0]


def _metric_bounds(metric: str) -> tuple[float | None, float | None]:
    from chainforget.plugins import registries

    try:
        spec = registries("metrics").get(metric)
    except ConfigError:
        return (None, None)
    return spec.low, spec.high


def score_range(task: str, unit: Any) -> tuple[float | None, float | None]:
    """The range of a difference of two scores of ``task`` in ``unit`` (e.g. [-1, 1] for an accuracy), from the
    registered task's metric declaration; unbounded when the task or metric is unknown."""
    from chainforget.plugins import registries

    try:
        metrics = registries("tasks").get(task).spec.metrics
    except Exception:  # noqa: BLE001 - a task of a plugin that is not installed here: no declared range
        return (None, None)
    for m in metrics:
        if m.name == unit and m.low is not None and m.high is not None:
            return (m.low - m.high, m.high - m.low)
    return (None, None)


def _oa_figure(found: dict):
    oa = found["order_asymmetry"]
    answers = oa["answers"]
    labels, entries, colors = [], [], []
    for a in answers:
        for key, name, color in (("safety_first", "safety first", SAFETY),
                                 ("capability_first", "capability first", CAPABILITY)):
            side = a.get(key) or {}
            labels.append(f"{drawing.short_labels([a['setting']], 24)[0]}: {name}")
            entries.append(side)
            colors.append(color)
    if not any(e.get("value") is not None for e in entries):
        return None
    fig, (left, right) = _figure(len(entries), 2)
    drawing.forest(left, labels, entries, _metric_bounds(oa["metric"]), color=colors)
    diffs = [a.get("difference") if k == 0 else None for a in answers for k in (0, 1)]
    drawing.forest(right, labels, diffs, (None, None), color="black", mark_missing=False)
    unit = f" ({oa['unit']})" if oa.get("unit") else ""
    left.set_xlabel(drawing.wrap(f"{oa['metric']}{unit}", 3.0, 11))
    right.set_xlabel(drawing.wrap(f"difference, safety first - capability first{unit}", 3.0, 11))
    return fig


def _group_figure(answer: dict):
    groups = answer.get("groups") or []
    if not any(g.get("value") is not None for g in groups):
        return None
    fig, (ax,) = _figure(len(groups))
    drawing.forest(ax, [f"{g['group']} (n={g['n']})" if g.get("n") is not None else g["group"] for g in groups],
                   groups, score_range(answer["task"], answer.get("unit")))
    ax.set_xlabel(f"forgetting of {answer['task']} ({answer.get('unit') or 'score'}), simultaneous 95% intervals")
    return fig


def _mitigation_figure(found: dict, measure: str, task: str):
    answers = [a for a in found["mitigation"]["answers"] if a["measure"] == measure and a["task"] == task]
    if not any((a.get("difference") or {}).get("value") is not None for a in answers):
        return None
    unit = answers[0].get("unit") or "score"
    fig, (ax,) = _figure(len(answers))
    drawing.forest(ax, drawing.short_labels([f"{a['setting']} on {a['chain']}" for a in answers], 40),
                   [a.get("difference") for a in answers],
                   score_range(task, unit), color=SAFETY if measure == "safety forgetting" else CAPABILITY)
    ax.set_xlabel(f"{measure} of {task} minus {found['mitigation']['baseline']} ({unit})")
    return fig


def _pareto_figure(front: dict):
    from matplotlib.lines import Line2D

    fig, (ax,) = _figure(6)
    points = front["points"]
    handles = []
    for i, p in enumerate(points):
        inside = p["setting"] in front["front"]
        ax.scatter(p["final"], p["forgetting"], s=70, color=f"C{i % 10}", edgecolor="black" if inside else "none",
                   linewidth=1.5, marker="o" if inside else "s", zorder=3)
        handles.append(Line2D([], [], linestyle="none", marker="o" if inside else "s", color=f"C{i % 10}",
                              markeredgecolor="black" if inside else "none",
                              label=drawing.short_labels([p["setting"]], 40)[0] + (" (Pareto set)" if inside else
                                                                                    "")))
    ax.invert_yaxis()
    ax.set_xlabel(f"final {front['capability_task']} score")
    ax.set_ylabel(f"{front['safety_task']} forgetting\n(up = less)")
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)
    return fig


MAX_GROUP_FIGURES = 8


def group_caption(a: dict) -> str:
    return (f"Per-group forgetting of {a['task']}, {a['setting']} on {a['chain']} (simultaneous 95% intervals, "
            f"clipped to the score's range)")


def figure_objects(found: dict) -> dict[str, list[tuple[str, Any]]]:
    """The page's matplotlib figures by section (``order``, ``group``, ``mitigation``, ``pareto``): (caption,
    Figure). Call inside :func:`figures`' rc context, or use :func:`figures` for the PNGs."""
    out: dict[str, list[tuple[str, Any]]] = {"order": [], "group": [], "mitigation": [], "pareto": []}
    fig = _oa_figure(found)
    if fig is not None:
        out["order"].append((f"{found['order_asymmetry']['metric']} of the first task of each order (left; red: "
                             f"safety first, blue: capability first) and their difference (right), 95% intervals "
                             f"clipped to the metric's range", fig))
    for a in found["group_dependence"]["answers"][:MAX_GROUP_FIGURES]:
        fig = _group_figure(a)
        if fig is not None:
            out["group"].append((group_caption(a), fig))
    cells = dict.fromkeys((a["measure"], a["task"]) for a in found["mitigation"]["answers"])
    for measure, task in cells:
        fig = _mitigation_figure(found, measure, task)
        if fig is not None:
            out["mitigation"].append((f"{measure} of {task}: each setting minus {found['mitigation']['baseline']}, "
                                      f"95% intervals clipped to the score's range", fig))
    for f in found["mitigation"]["pareto"]:
        out["pareto"].append((f"Pareto set on {f['chain']} ({f['safety_task']} / {f['capability_task']}): outlined "
                              f"points are in it", _pareto_figure(f)))
    return out


def style():
    """The figures' matplotlib settings: labels drawn as written (no mathtext), 11 pt at the column's width."""
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False, "font.size": 11})


def figures(found: dict) -> dict[str, list[tuple[str, str]]]:
    """Figures by section: (caption, base64 PNG)."""
    with style():
        return {section: [(caption, _png(fig)) for caption, fig in items]
                for section, items in figure_objects(found).items()}


# --- the page -----------------------------------------------------------------------------------------------------

_CSS = ("body{font-family:sans-serif;max-width:%dpx;margin:2em auto;padding:0 1em;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0;font-size:88%%;width:100%%;table-layout:auto}"
        "td,th{border:1px solid #bbb;padding:3px 6px;vertical-align:top;overflow-wrap:break-word}th{background:#eee}"
        "table.groups{width:auto;min-width:40%%}figure{margin:1em 0}img{width:100%%;height:auto;display:block}"
        "figcaption{font-size:90%%;color:#444}.summary{background:#f4f7fb;border-left:4px solid #2171b5;"
        "padding:0.5em 1em}.note{color:#555;font-style:italic}" % COLUMN_PX)


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    e = html.escape
    head = f'<table class="{cls}">' if cls else "<table>"
    return (head + "<tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{_keep(e(c))}</td>" for c in row) + "</tr>" for row in rows)
            + "</table>")


def _keep(cell: str) -> str:
    """'< 0.001' stays on one line in a narrow column."""
    return cell.replace("&lt; ", "&lt;&nbsp;")


def _figs(items: list[tuple[str, str]]) -> list[str]:
    e = html.escape
    return [f'<figure><img alt="{e(cap)}" src="data:image/png;base64,{png}"><figcaption>{e(cap)}</figcaption>'
            f"</figure>" for cap, png in items]


def render_html(found: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">'
             '<meta name="viewport" content="width=device-width, initial-scale=1">'
             f"<title>chainforget findings</title><style>{_CSS}</style></head><body>",
             f"<h1>chainforget findings</h1><p>{found['runs']} runs; {found['confidence']:.0%} intervals; minimum "
             f"detectable effects (MDE) at {found['power']:.0%} power.</p>",
             '<h2>Summary</h2><div class="summary">' + "".join(f"<p>{e(s)}</p>" for s in summary(found)) + "</div>"]
    figs = figures(found)
    sections = ["order", "group", "mitigation", "pareto"]
    for (title, explanation, headers, rows), section in zip(tables(found), sections):
        parts.append(f"<h2>{e(title)}</h2><p>{e(explanation.strip())}</p>")
        if not rows:
            parts.append('<p class="note">No answer from these runs.</p>')
            continue
        parts.append(_table(headers, rows))
        if section == "group":  # each answer's table, then its forest plot
            drawn = dict(figs["group"])
            for a in found["group_dependence"]["answers"]:
                if a.get("groups"):
                    parts.append(f"<h3>Per-group forgetting of {e(a['task'])}, {e(a['setting'])} on "
                                 f"{e(a['chain'])} ({e(a.get('unit') or '')}, simultaneous 95% intervals)</h3>")
                    parts.append(_table(["group", "n", "forgetting [95% CI]"], group_rows(a), "groups"))
                    if group_caption(a) in drawn:
                        parts += _figs([(group_caption(a), drawn[group_caption(a)])])
            continue
        if section == "order" and not figs["order"]:
            parts.append(f'<p class="note">No figure: {e(found["order_asymmetry"]["metric"])} has no value in '
                         f"either order (see the reading).</p>")
        parts += _figs(figs[section])
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def with_readings(found: dict) -> dict:
    """A copy whose ``reading`` fields are :func:`verdict`'s, so JSON, text and page word a situation alike."""
    out = json.loads(json.dumps(found))
    for a in out["order_asymmetry"]["answers"]:
        a["reading"] = oa_reading(out, a)
    for a in out["group_dependence"]["answers"]:
        a["reading"] = gd_reading(out, a)
    for a in out["mitigation"]["answers"]:
        a["reading"] = mi_reading(out, a)
    return out


def render(found: dict, fmt: str = "text") -> str:
    if fmt not in FINDINGS_FORMATS:
        raise ConfigError(f"unknown findings format {fmt!r}; {did_you_mean(fmt, FINDINGS_FORMATS)}choose one of "
                          f"{', '.join(FINDINGS_FORMATS)}")
    if fmt == "json":
        return json.dumps(with_readings(found), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return render_html(found) if fmt == "html" else render_text(found)
