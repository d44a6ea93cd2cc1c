"""The findings page and text: a summary first, one wording per situation in every question, p below 0.001
written as such, forest plots clipped to the metric's range, per-group tables, figures at the column's width with no
overlapping labels, and one self-contained file."""

from __future__ import annotations

import base64
import html
import json
import re
import struct

import pytest
from findings_samples import found, page

from chainforget.report import drawing
from chainforget.report import findings_render as fr

IDENTICAL = "identical on every evaluation example"


def _readings(doc: dict) -> list[str]:
    return [a["reading"] for q in ("order_asymmetry", "group_dependence", "mitigation") for a in doc[q]["answers"]]


@pytest.fixture(scope="module")
def planted_page():
    return page("planted")


def test_summary_comes_first_with_one_sentence_per_question_and_its_interval_and_mde(planted_page):
    planted = found("planted")
    sentences = fr.summary(planted)
    assert [s[:3] for s in sentences] == ["(1)", "(2)", "(3)"]
    for s in sentences:
        assert re.search(r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", s), s  # the interval
        assert "minimum detectable effect" in s or "would usually be missed" in s, s  # the MDE
    assert "p < 0.001" in sentences[0] and "safety is forgotten more when it comes first" in sentences[0]
    assert "Age forgot more than every other group" in sentences[1]
    assert planted_page.index("<h2>Summary</h2>") < planted_page.index("<h2>(1)")
    assert all(s.split(":")[0] in planted_page for s in sentences)


def test_p_is_never_printed_as_zero(planted_page):
    planted = found("planted")
    for fmt in ("text", "html", "json"):
        text = planted_page if fmt == "html" else fr.render(planted, fmt)
        if fmt == "html":
            text = html.unescape(text)
        elif fmt == "json":
            text = "\n".join(_readings(json.loads(text)))  # the numbers stay numbers (p: 0.0); the words say < 0.001
        assert "p < 0.001" in text
        assert not re.search(r"p\W{1,4}0(\.0+)?(?![\d.])", text.replace("p < 0.001", "")), fmt
    assert fr.p_text(0.0) == "p < 0.001" and fr.p_text(0.0123) == "p = 0.012" and fr.p_text(0.41) == "p = 0.41"


def test_the_same_situation_is_worded_the_same_in_every_question():
    zero = found("zero")
    doc = json.loads(fr.render(zero, "json"))
    assert all(r.startswith(IDENTICAL) for r in _readings(doc)) and len(_readings(doc)) == 18
    text = fr.render(zero, "text")
    assert "effects smaller than" not in text and "7.67e-06" not in text and "n/a (no variation)" in text
    missing = json.loads(fr.render(found("missing"), "json"))
    for a in missing["order_asymmetry"]["answers"]:
        assert a["reading"].startswith("missing: relative_forgetting is missing for both orders (")
    one = found("planted")
    one["order_asymmetry"]["answers"][0]["capability_first"].update(value=None, missing="no gain")
    assert fr.oa_reading(one, one["order_asymmetry"]["answers"][0]) == (
        "missing: relative_forgetting is missing when capability comes first (no gain); no comparison")
    open_ended = {"value": 0.05, "ci_low": None, "ci_high": None, "p": 0.4, "mde": None, "unbounded": True}
    assert fr.verdict(open_ended, "more", "less") == (
        "not distinguishable from 0 (p = 0.40); an open interval (a gain not clearly positive) sizes no minimum "
        "detectable effect")
    flat = {"value": 0.02, "ci_low": 0.02, "ci_high": 0.02, "p": 0.0001, "mde": None}
    assert fr.verdict(flat, "more", "less") == "more (p < 0.001); no variation to size a minimum detectable effect by"
    assert all(r.startswith(("missing:", IDENTICAL, "not distinguishable", "no test", "safety", "capability",
                             "forgetting depends", "forgets", "keeps", "loses")) for r in _readings(doc))


def test_an_order_axis_without_values_is_not_drawn_and_says_why():
    missing = found("missing")
    for question in ("group_dependence", "mitigation"):  # only the order question matters here: keep the page small
        missing[question]["answers"] = missing[question]["answers"][:1]
    text = fr.render(missing, "html")
    with fr.style():
        assert fr.figure_objects(missing)["order"] == []
    assert "No figure: relative_forgetting has no value in either order" in text


def test_forest_clips_intervals_to_the_metric_range_and_marks_the_clipped_side():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    rows = [{"value": 0.3, "ci_low": -1.6, "ci_high": 1.2}, {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}, None]
    assert drawing.forest(ax, ["a", "b", "c"], rows, bounds=(-1.0, 1.0)) == [2]
    xs = [x for line in ax.get_lines() for x in line.get_xdata() if line.get_linestyle() != "--"]
    assert min(xs) >= -1.0 and max(xs) <= 1.0
    assert {"<", ">"} <= {line.get_marker() for line in ax.get_lines()}  # both sides clipped, both marked
    assert [t.get_text() for t in ax.texts] == ["n/a"]  # the missing row says so; the zero row is a point at 0
    ax = Figure().add_subplot()
    drawing.forest(ax, ["open"], [{"value": 0.2, "ci_low": -0.1, "ci_high": None, "unbounded": True}])
    right = ax.get_xlim()[1]
    assert any(line.get_marker() == ">" and line.get_xdata()[0] == right for line in ax.get_lines())  # reaches the edge
    assert fr.score_range("bbq", "acc") == (-1.0, 1.0) and fr.score_range("no-such-task", "acc") == (None, None)


@pytest.fixture(scope="module")
def page_figures():
    with fr.style():
        return fr.figure_objects(found("planted"))


def test_figures_fill_the_column_and_have_no_overlapping_labels(page_figures):
    assert [len(page_figures[k]) for k in ("order", "group", "mitigation", "pareto")] == [1, 5, 2, 1]
    for section, items in page_figures.items():
        for caption, fig in items:
            assert fig.get_size_inches()[0] * fr.FIG_DPI == fr.COLUMN_PX
            assert drawing.label_overlaps(fig) == [], (section, caption)


def test_the_page_is_one_file_with_per_group_tables_and_column_wide_images(planted_page):
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:)", planted_page)
    assert not re.search(r"https?://|@import|url\(|<script|<link", planted_page)
    assert planted_page.count('<table class="groups">') == 5
    assert "<td>Sexual_orientation</td>" in planted_page and "; Gender_identity " not in planted_page  # rows, not one text cell
    widths = [struct.unpack(">I", base64.b64decode(png)[16:20])[0]
              for png in re.findall(r'src="data:image/png;base64,([^"]+)"', planted_page)]
    assert widths and set(widths) == {fr.COLUMN_PX}
    assert f"max-width:{fr.COLUMN_PX}px" in planted_page
