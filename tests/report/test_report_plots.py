"""Plots: every figure is written as a non-empty PNG and PDF; the numbers behind them are checked directly."""

from __future__ import annotations

import math

import pytest
from test_report_factory import make_result, make_run

from chainforget.report import plots

SF, CF = ("bbq", "gsm8k"), ("gsm8k", "bbq")


def _acc(forget, cap):
    def acc(task, step, group):
        if task == "bbq":
            trained = step >= 1
            return 0.8 - (forget if step == 2 else 0) if trained else 0.5
        return cap if step >= 1 else 0.1
    return acc


def _results():
    out = []
    for strategy, forget, cap in (("naive", 0.3, 0.35), ("replay", 0.05, 0.3), ("ewc", 0.15, 0.33)):
        for chain in (SF, CF):
            for seed in (0, 1):
                lam = [None, 10.0 + 40 * forget + seed, 5.0 + seed]
                run = make_run(strategy, chain, seed, _acc(forget, cap), n_per_group=25, sharpness=lam)
                out.append(run["result"])
    return out


def _check_files(paths, n):
    assert len(paths) == n
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000
        assert data[:4] == (b"\x89PNG" if path.suffix == ".png" else b"%PDF")


def test_plot_all_writes_every_figure_as_png_and_pdf(tmp_path):
    results = [r for r in _results() if r["spec"]["seed"] == 0 and r["spec"]["strategy"] != "ewc"]
    paths = plots.plot_all(results, tmp_path)
    # 4 heatmaps, group bars for the 2 safety-first runs (bbq trained last has nothing to forget), 3 cross-run
    _check_files(paths, 2 * (4 + 2 + 3))
    stems = sorted({p.stem for p in paths})
    assert [s for s in stems if not s.startswith(("heatmap-", "group-forgetting-bbq-"))] == [
        "order-asymmetry", "pareto", "sharpness-vs-forgetting"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    # the same run gives the same bytes (no timestamps in the files)
    again = plots.score_heatmap(results[0], tmp_path / "again")
    assert [p.read_bytes() for p in again] == [(tmp_path / p.name).read_bytes() for p in again]


def test_cross_run_figures_are_skipped_without_data(tmp_path):
    bare = make_result(metrics=False)
    assert plots.sharpness_vs_forgetting([bare], tmp_path) == []
    bare["tasks"] = []
    assert plots.order_asymmetry([bare], tmp_path) == []


def test_group_forgetting_prefers_stored_metric_then_matrix():
    result = make_result()
    result["metrics"]["group_forgetting"] = {"bbq/Age": {"value": 0.4, "ci_low": 0.3, "ci_high": 0.5},
                                             "bbq/Race": {"value": None, "missing": "no score"}}
    assert plots.group_forgetting(result, "bbq") == {"Age": (0.4, 0.3, 0.5), "Race": (None, None, None)}
    result["metrics"] = {}
    result["group_score_matrix"] = {"bbq": {"Age": [0.5, 0.9, 0.6], "Race": [0.5, 0.8, 0.8]}}
    got = plots.group_forgetting(result, "bbq")
    assert got["Age"][0] == pytest.approx(0.3) and got["Race"][0] == pytest.approx(0.0) and got["Age"][1] is None
    late = make_result(chain=CF)  # bbq trained in the last stage: nothing to forget
    late["metrics"] = {}
    assert plots.group_forgetting(late, "bbq") == {}


def test_tradeoff_point_and_pareto_front():
    result = make_result(forgetting=0.25, cap_final=0.4)  # capability 0.1 at base
    gained, retained = plots.tradeoff_point(result)
    assert gained == pytest.approx(0.3) and retained == pytest.approx(-0.25)
    points = [(0, 0), (1, 1), (2, 0.5), (0.5, 2), (1, 0.5)]
    assert plots.pareto_front(points) == [3, 1, 2]


def test_spearman_against_hand_computed_values():
    assert plots.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert plots.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert plots.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))  # average ranks
    assert math.isnan(plots.spearman([1, 2], [2, 1]))


def test_sharpness_points_index_stage_lists_and_skip_missing():
    results = _results()
    pts = plots.sharpness_points(results)
    # only the first task of each chain has a later stage; its lambda is entry [1] of the per-stage list
    assert len(pts) == 12
    naive_sf = [r for r in results if r["spec"]["strategy"] == "naive" and r["tasks"][0] == "bbq"][0]
    lam = naive_sf["sharpness"][1]["lambda_max"]
    assert (lam, naive_sf["metrics"]["forgetting"]["bbq"]["value"], "safety") in pts
    no_sharp = [{**r, "sharpness": None} for r in results]
    assert plots.sharpness_points(no_sharp) == []


def test_order_asymmetry_keeps_units_apart_and_reports_the_share_of_the_gain_lost(tmp_path, monkeypatch):
    """One panel (own axis, own metric) per first task; the annotation is forgetting / (R[a] - R[0])."""
    sf = make_result(chain=SF, forgetting=0.25)
    forgot, gain = plots.gain_lost(sf, "bbq")
    matrix, col = sf["score_matrix"], sf["eval_tasks"].index("bbq")
    assert gain == pytest.approx(matrix[1][col] - matrix[0][col])
    assert forgot == pytest.approx(plots.forgetting_of(sf, "bbq")[0])
    cf = make_result(chain=CF)
    cf["task_info"]["gsm8k"]["primary_metric"] = "gold_logprob"
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out, stem: figures.append(fig) or [])
    plots.order_asymmetry([sf, cf], tmp_path)
    (fig,) = figures
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["forgetting of bbq (acc)", "forgetting of gsm8k (gold_logprob)"]
    assert [ax.get_title() for ax in axes] == ["safety first: bbq forgotten", "capability first: gsm8k forgotten"]
    share = f"{forgot / gain:.0%}"
    assert [t.get_text() for t in axes[0].texts] == [share]


def test_pareto_figure_shows_every_point_and_no_point_for_a_task_trained_last(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lost = make_result(strategy="lwf", forgetting=0.0, cap_final=-0.5)  # capability lost: a negative x
    kept = make_result(strategy="naive", forgetting=0.3, cap_final=0.4)
    assert plots.tradeoff_pairs(make_result(chain=CF)) == {}  # bbq trained last: no forgetting, no point
    opened = []
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        opened.append(fig)
        return real_savefig(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = keep
    try:
        behind = make_result(strategy="ewc", forgetting=0.4, cap_final=0.0)  # dominated by naive: off the front
        plots.pareto_scatter([lost, kept, behind, make_result(strategy="replay", chain=CF)], tmp_path)
    finally:
        matplotlib.figure.Figure.savefig = real_savefig
    ax = opened[0].axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for x, y in [(-0.6, 0.0), (0.3, -0.3), (-0.1, -0.4)]:  # gained = final - base (0.1); retained = -forgetting
        assert x0 < x < x1 and y0 < y < y1, (x, y, ax.get_xlim(), ax.get_ylim())
    plt.close("all")
