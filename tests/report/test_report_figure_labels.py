"""Figures a study really produces (five strategies with long names, two orders, tasks scored in accuracy and in
nats per token) have no overlapping labels, one color scale per unit, units on every axis, and a zero that looks
different from a missing value; label boxes are compared with matplotlib's own renderer."""

from __future__ import annotations

import os

import pytest

from chainforget.report import drawing, plots

UNITS = {"bbq": ("safety", "acc"), "boolq": ("capability", "acc"), "gsm8k": ("capability", "gold_logprob")}
STRATEGIES = ("naive", "replay", "ewc", "lwf", "safety-retune-with-a-rather-long-setting-name")
GROUPS = ("Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance", "Race_ethnicity",
          "Religion", "SES", "Sexual_orientation")


def _result(strategy: str, chain: tuple[str, ...], seed: int, k: int) -> dict:
    """A run whose scores are in each task's own unit (gsm8k in nats per token, negative); points coincide
    across strategies (the same forgetting and gains) to provoke label collisions."""
    stages = ["base", *chain]
    tasks = list(UNITS)
    info = {t: {"kind": UNITS[t][0], "primary_metric": UNITS[t][1], "higher_is_better": True,
                "trained_at": chain.index(t) + 1 if t in chain else None} for t in tasks}

    def score(t, step):
        a = info[t]["trained_at"]
        base = -1.9 if t == "gsm8k" else 0.45
        lift = 0.6 if t == "gsm8k" else 0.3
        if a is None or step < a:
            return base
        return base + lift - (0.0 if step == a else 0.05 * (k % 2))

    matrix = [[score(t, s) for t in tasks] for s in range(len(stages))]
    matrix[-1][tasks.index("boolq")] = None if strategy == "lwf" else matrix[-1][tasks.index("boolq")]
    group_matrix = {"bbq": {g: [score("bbq", s) - 0.01 * i * (s == len(stages) - 1) for s in range(len(stages))]
                            for i, g in enumerate(GROUPS)}}
    forgetting = {}
    a = info["bbq"]["trained_at"]
    if a is not None and a < len(stages) - 1:
        v = matrix[a][0] - matrix[-1][0]
        forgetting["bbq"] = {"value": v, "ci_low": v - 0.03, "ci_high": v + 0.03}
    return {"schema_version": 1, "run_id": f"{strategy}-{'-'.join(chain)}-s{seed}",
            "spec": {"model": "tiny", "chain": list(chain), "strategy": strategy, "seed": seed},
            "tasks": list(chain), "stages": stages, "eval_tasks": tasks, "task_info": info, "score_matrix": matrix,
            "group_score_matrix": group_matrix, "group_sizes": {"bbq": {g: 20 + 5 * i for i, g in enumerate(GROUPS)}},
            "metrics": {"forgetting": forgetting,
                        "relative_forgetting": {"bbq": {"value": 0.0 if k == 0 else None if k == 3 else 0.2 * k,
                                                        "missing": "gain not positive" if k == 3 else None}}},
            "sharpness": [{"lambda_max": 10.0 + k}, {"lambda_max": 20.0 + k}, {"lambda_max": 5.0}]}


# Folders of finished runs whose every figure (plot's and the findings page's) is checked too, e.g. the quick
# preset's: CHAINFORGET_FIGURE_RUNS=runs-quick pytest tests/report/test_report_figure_labels.py
RUN_DIRS = [p for p in os.environ.get("CHAINFORGET_FIGURE_RUNS", "").split(os.pathsep) if p]


def draw_all(results: list[dict], metrics=()) -> dict:
    """Every figure ``plot`` draws for these results, by file stem, without writing files."""
    drawn = {}
    original = plots._save

    def keep(fig, out, stem):
        drawn[stem] = fig
        return []

    plots._save = keep
    try:
        plots.plot_all(results, "unused", metrics=metrics)
    finally:
        plots._save = original
    return drawn


@pytest.fixture(scope="module")
def figures():
    results = [_result(s, chain, seed, k) for k, s in enumerate(STRATEGIES)
               for chain in (("bbq", "gsm8k", "boolq"), ("gsm8k", "boolq", "bbq")) for seed in (0, 1)]
    drawn = draw_all(results[:1])  # one run's heatmap and group bars; the cross-run figures of all runs
    drawn.update({stem: fig for stem, fig in draw_all(results, ("relative_forgetting", "forgetting")).items()
                  if not stem.startswith(("heatmap-", "group-"))})
    return drawn


def test_no_figure_has_overlapping_or_clipped_labels(figures):
    assert sorted(s.split("-")[0] for s in figures) == ["group", "heatmap", "metric", "metric", "order", "pareto",
                                                        "sharpness"]
    for stem, fig in figures.items():
        assert drawing.label_overlaps(fig) == [], stem


if RUN_DIRS:  # only asked for with CHAINFORGET_FIGURE_RUNS (real runs take minutes to make)
    @pytest.mark.parametrize("run_dir", RUN_DIRS)
    def test_figures_of_real_runs_have_no_overlapping_labels(run_dir):
        from chainforget.report import findings_render
        from chainforget.report.findings import findings
        from chainforget.store.results import find_runs, load_result, load_run

        runs, _ = find_runs([run_dir])
        for stem, fig in draw_all([load_result(r) for r in runs], ("relative_forgetting",)).items():
            assert drawing.label_overlaps(fig) == [], stem
        with findings_render.style():
            for section, items in findings_render.figure_objects(findings([load_run(r) for r in runs])).items():
                for caption, fig in items:
                    assert drawing.label_overlaps(fig) == [], (section, caption)


def test_the_overlap_check_sees_a_collision():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.annotate("replay", (0.5, 0.5))
    ax.annotate("naive", (0.5, 0.5))
    assert ("replay", "naive") in drawing.label_overlaps(fig)


def test_heatmap_has_one_color_scale_per_unit(figures):
    fig = next(f for stem, f in figures.items() if stem.startswith("heatmap-"))
    panels = [ax for ax in fig.get_axes() if ax.images]
    assert len(panels) == 2  # acc (bbq, boolq) and nats per token (gsm8k)
    clims = [ax.images[0].get_clim() for ax in panels]
    assert clims[0] == (0.0, 1.0) and clims[1][1] < 0  # the nats panel spans its own (negative) range
    colorbars = [ax.get_ylabel() for ax in fig.get_axes() if not ax.images and ax.get_ylabel()]
    assert "acc" in colorbars and "gold_logprob" in colorbars


def test_axes_name_their_units_and_pareto_keeps_units_apart(figures):
    pareto = figures["pareto"]
    panels = [ax for ax in pareto.get_axes() if ax.get_xlabel()]
    assert len(panels) == 2  # bbq vs boolq (acc) and bbq vs gsm8k (nats), never averaged together
    assert sorted(ax.get_xlabel().replace("\n", " ") for ax in panels) == [
        "boolq gained, final - base (acc)", "gsm8k gained, final - base (gold_logprob)"]
    assert all(not ax.texts for ax in panels)  # no point labels to collide: a legend names them
    rel = figures["metric-relative_forgetting"].get_axes()[0]
    assert rel.get_ylabel().replace("\n", " ") == "relative_forgetting (share of the stage's gain)"
    forgetting = figures["metric-forgetting"].get_axes()[0]
    assert forgetting.get_ylabel() == "forgetting (acc)"  # a task-unit metric: the task's unit, not "(task)"


def test_sharpness_panels_keep_units_apart(figures):
    axes = [ax for ax in figures["sharpness-vs-forgetting"].get_axes() if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in axes] == ["forgetting of that task (acc)",
                                                "forgetting of that task (gold_logprob)"]


def test_zero_and_missing_are_drawn_differently(figures):
    ax = figures["metric-relative_forgetting"].get_axes()[0]
    missing = [line for line in ax.get_lines() if line.get_marker() == "x"]
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    (marks,) = missing
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert [labels[i] for i in marks.get_xdata()] == ["lwf bbq,gsm8k,boolq", "lwf gsm8k,boolq,bbq"]  # no value
    assert any(list(d.get_ydata()) == [0.0] for d in dots)  # naive's zero: a dot on the axis, not an empty slot
