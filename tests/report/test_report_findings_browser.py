"""The findings page as a reader meets it: opened in headless Chromium (Chromium from the OS packages; see the
README), it logs no console errors, every image decodes and is shown at the column's width, and no element sticks out
of the column. Runs wherever a Chromium binary is on PATH (``make test`` and ``.ci/run`` install one where they
can); ``CHAINFORGET_FINDINGS_PAGES=a.html:b.html`` adds pages to check (e.g. the quick preset's)."""

from __future__ import annotations

import os

import pytest
from browser_check import check_page, find_chromium
from findings_samples import page as sample_page
from test_report_factory import make_run

from chainforget.metrics.compute import compute_all
from chainforget.report.findings import findings
from chainforget.report.findings_render import COLUMN_PX, render

pytestmark = [pytest.mark.process, pytest.mark.skipif(
    find_chromium() is None, reason="no Chromium on PATH: `apt-get install chromium` (Debian) to run the browser "
                                    "checks of the findings page")]
EXTRA = [p for p in os.environ.get("CHAINFORGET_FINDINGS_PAGES", "").split(os.pathsep) if p]


def _from_runs() -> dict:
    """findings over synthetic runs (both orders, two strategies, a planted group effect), as the CLI computes it."""
    def acc(task, step, group, chain):
        a = chain.index(task) + 1
        return 0.3 if step < a else 0.85 if step == a else 0.55 - (0.2 if group == "Age" else 0.0)

    runs = []
    for strategy in ("naive", "replay"):
        for chain in (("bbq", "gsm8k"), ("gsm8k", "bbq")):
            run = make_run(strategy, chain, 0, lambda t, s, g, c=chain: acc(t, s, g, c), n_per_group=30)
            r = run["result"]
            r.update(compute_all(run["records"], r["task_info"], r["stages"], eval_tasks=r["eval_tasks"], n_boot=100))
            runs.append(run)
    return findings(runs, n_boot=100)


def _assert_reads_well(report: dict) -> None:
    assert report["errors"] == []
    assert report["images"], "the page shows no figure"
    for image in report["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image  # decoded
        assert image["shown"] <= report["column"][1] - report["column"][0] + 1, image
    assert report["overflow"] == []
    assert report["width"] <= report["viewport"]  # no horizontal scrolling


@pytest.mark.parametrize("kind", ["sample", "runs", *EXTRA])
def test_findings_page_reads_well_in_headless_chromium(kind, tmp_path):
    if kind in ("sample", "runs"):
        page = tmp_path / "findings.html"
        page.write_text(sample_page("planted") if kind == "sample" else render(_from_runs(), "html"),
                        encoding="utf-8")
    else:
        page = kind
    report = check_page(page, width=1300, screenshot=str(tmp_path / "page.png"))
    _assert_reads_well(report)
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"
    if kind == "sample":
        assert {i["shown"] for i in report["images"]} == {COLUMN_PX}  # figures at the column's width


def test_the_browser_check_sees_errors_broken_images_and_overflow(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body style='max-width:600px;margin:auto'>"
                    "<img alt='broken' src='data:image/png;base64,AAAA'>"
                    "<div style='width:900px'>too wide</div>"
                    "<script>console.error('boom')</script></body></html>", encoding="utf-8")
    report = check_page(page, width=1000)
    assert any("boom" in e for e in report["errors"])
    assert [i["width"] for i in report["images"]] == [0]
    assert any(o["element"] == "div" for o in report["overflow"])
    with pytest.raises(AssertionError):
        _assert_reads_well(report)
