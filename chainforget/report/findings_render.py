"""``chainforget findings`` output: text (default), JSON, or one self-contained HTML page.

The HTML page holds its tables and its figures (PNG, base64 ``data:`` URIs) and references nothing outside itself:
no scripts, style sheets, fonts or links, so it opens from disk in a browser without a server. Everything drawn is
read from the findings dict, so the page, the text and the JSON always show the same numbers.
"""

from __future__ import annotations

import base64
import html
import io
import json

from chainforget.errors import ConfigError, did_you_mean

FORMATS = ("text", "json", "html")


def _n(x, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}" if isinstance(x, (int, float)) else str(x)


def _ci(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "missing" + (f" ({e['missing']})" if e and e.get("missing") else "")
    if e.get("ci_low") is None and e.get("ci_high") is None:
        return _n(e["value"])
    return f"{_n(e['value'])} [{_n(e.get('ci_low')) or '-inf'}, {_n(e.get('ci_high')) or 'inf'}]"


def _p(p) -> str:
    return "" if p is None else f"{p:.3g}"


def tables(found: dict) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, explanation, headers, rows) of the three answers."""
    oa = found["order_asymmetry"]
    unit = f" ({oa['unit']})" if oa["unit"] else ""
    direction = "lower" if oa["higher_is_better"] is False else "higher"
    t1 = ("(1) Order asymmetry: is safety forgotten more when it comes first?",
          f"{oa['metric']}{unit} of the first task of each order ({direction} is better); difference = safety first "
          f"minus capability first; MDE = minimum detectable |difference| at {found['power']:.0%} power. "
          + (oa.get("note") or ""),
          ["setting", "pair", "safety first", "capability first", "difference [95% CI]", "p", "MDE", "seeds",
           "reading"],
          [[a["setting"], f"{a['safety_task']} / {a['capability_task']}", _ci(a["safety_first"]),
            _ci(a["capability_first"]), _ci(a["difference"]), _p((a["difference"] or {}).get("p")),
            _n((a["difference"] or {}).get("mde")), f"{a['safety_first']['seeds']}/{a['capability_first']['seeds']}",
            a["reading"]] for a in oa["answers"]])
    gd = found["group_dependence"]
    t2 = ("(2) Group dependence: does forgetting depend on the group?",
          "spread = noise-corrected between-group SD of per-group forgetting (interval excludes 0 only when p < 0.05);"
          " per-group forgetting with simultaneous 95% intervals. " + (gd.get("note") or ""),
          ["setting", "chain", "task", "seeds", "spread [95% CI]", "p", "MDE", "per-group forgetting", "reading"],
          [[a["setting"], a["chain"], a["task"], str(a["seeds"]), _ci(a["spread"]), _p((a["spread"] or {}).get("p")),
            _n((a["spread"] or {}).get("mde")),
            "; ".join(f"{g['group']} {_ci(g)}" for g in a.get("groups") or []), a["reading"]]
           for a in gd["answers"]])
    mi = found["mitigation"]
    t3 = (f"(3) Mitigation: each strategy minus {mi['baseline']}, paired by seed and example",
          "safety forgetting (negative = forgets less) and final capability (negative = capability cost). "
          + (mi.get("note") or ""),
          ["setting", "chain", "measure", "task", "unit", "pairs", "difference [95% CI]", "p", "MDE", "reading"],
          [[a["setting"], a["chain"], a["measure"], a["task"], a["unit"], str(a["pairs"]), _ci(a["difference"]),
            _p(a["difference"]["p"]), _n(a["difference"]["mde"]), a["reading"]] for a in mi["answers"]])
    t4 = ("Pareto set: less safety forgetting and more final capability",
          "a setting is in the set when no other setting on that chain forgets less and ends higher",
          ["chain", "safety / capability", "Pareto set", "all (forgetting, final)"],
          [[f["chain"], f"{f['safety_task']} / {f['capability_task']}", ", ".join(f["front"]),
            "; ".join(f"{p['setting']} ({_n(p['forgetting'])}, {_n(p['final'])})" for p in f["points"])]
           for f in mi["pareto"]])
    return [t1, t2, t3, t4]


def render_text(found: dict) -> str:
    lines = [f"findings over {found['runs']} runs ({found['confidence']:.0%} intervals; MDE at "
             f"{found['power']:.0%} power)"]
    for title, explanation, headers, rows in tables(found):
        lines += ["", title, explanation.strip()]
        if not rows:
            lines.append("  (no answer from these runs)")
        for row in rows:
            lines.append("  " + " | ".join(f"{h}: {c}" for h, c in zip(headers, row) if c))
    return "\n".join(lines) + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bars(ax, labels, entries, color):
    import numpy as np

    keep = [i for i, e in enumerate(entries) if e and e.get("value") is not None]
    vals = np.array([entries[i]["value"] for i in keep], dtype=float)
    low = np.array([entries[i].get("ci_low") if entries[i].get("ci_low") is not None else entries[i]["value"]
                    for i in keep], dtype=float)
    high = np.array([entries[i].get("ci_high") if entries[i].get("ci_high") is not None else entries[i]["value"]
                     for i in keep], dtype=float)
    colors = [color[i] for i in keep] if isinstance(color, list) else color
    ax.bar(keep, vals, color=colors, yerr=[vals - low, high - vals], capsize=3)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)


def figures(found: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) of the answers' figures."""
    import matplotlib
    from matplotlib.figure import Figure

    out = []
    with matplotlib.rc_context({"text.parse_math": False}):
        oa = found["order_asymmetry"]["answers"]
        if oa:
            fig = Figure(figsize=(max(4.5, 1.2 * len(oa) + 2), 3.6), layout="constrained")
            ax = fig.add_subplot()
            labels = [f"{a['setting']}\n{side.replace('_', ' ')}" for a in oa for side in ("safety_first",
                                                                                         "capability_first")]
            _bars(ax, labels, [a[s] for a in oa for s in ("safety_first", "capability_first")],
                  ["#cb181d", "#2171b5"] * len(oa))
            ax.set_ylabel(found["order_asymmetry"]["metric"])
            out.append(("Order asymmetry: the first task's " + found["order_asymmetry"]["metric"], _png(fig)))
        for a in found["group_dependence"]["answers"][:8]:
            if not a.get("groups"):
                continue
            fig = Figure(figsize=(max(4.5, 0.5 * len(a["groups"]) + 2), 3.6), layout="constrained")
            ax = fig.add_subplot()
            _bars(ax, [g["group"] for g in a["groups"]], a["groups"], "#2171b5")
            ax.set_ylabel(f"forgetting ({a.get('unit', '')})")
            out.append((f"Per-group forgetting of {a['task']}, {a['setting']} on {a['chain']} (simultaneous 95% "
                        f"intervals)", _png(fig)))
        for f in found["mitigation"]["pareto"]:
            fig = Figure(figsize=(5.0, 3.8), layout="constrained")
            ax = fig.add_subplot()
            for p in f["points"]:
                ax.scatter(p["final"], p["forgetting"], color="black" if p["setting"] in f["front"] else "grey")
                ax.annotate(p["setting"], (p["final"], p["forgetting"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel(f"final {f['capability_task']} score")
            ax.set_ylabel(f"{f['safety_task']} forgetting (down = more forgotten)")
            out.append((f"Pareto set on {f['chain']}: black points are in it", _png(fig)))
    return out


def render_html(found: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>chainforget findings</title>',
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #bbb;padding:3px 6px;"
             "vertical-align:top}th{background:#eee}figure{margin:1em 0}img{max-width:100%}</style></head><body>",
             f"<h1>chainforget findings</h1><p>{found['runs']} runs; {found['confidence']:.0%} intervals; minimum "
             f"detectable effects (MDE) at {found['power']:.0%} power.</p>"]
    for title, explanation, headers, rows in tables(found):
        parts.append(f"<h2>{e(title)}</h2><p>{e(explanation)}</p>")
        if not rows:
            parts.append("<p><em>No answer from these runs.</em></p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    figs = figures(found)
    if figs:
        parts.append("<h2>Figures</h2>")
        parts += [f'<figure><img alt="{e(cap)}" src="data:image/png;base64,{png}"><figcaption>{e(cap)}'
                  f"</figcaption></figure>" for cap, png in figs]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(found: dict, fmt: str = "text") -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown findings format {fmt!r}; {did_you_mean(fmt, FORMATS)}choose one of "
                          f"{', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(found, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return render_html(found) if fmt == "html" else render_text(found)
