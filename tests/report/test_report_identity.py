"""One engine, one number: the same runs and the same quantity give the same value and interval in the leaderboard,
compare and findings (with one seed and with three)."""

from __future__ import annotations

import pytest
from test_report_factory import make_run

from chainforget.metrics.compute import compute_all
from chainforget.report.compare import compare_runs
from chainforget.report.findings import findings
from chainforget.report.tables import leaderboard_rows

CHAINS = (("bbq", "gsm8k"), ("gsm8k", "bbq"))


def _acc(chain, forget, extra_age):
    def acc(task, step, group):
        a = chain.index(task) + 1
        if step < a:
            return 0.3
        return 0.8 if step == a else 0.8 - forget[task] - (extra_age if group == "Age" else 0.0)
    return acc


def _run(strategy, chain, seed, forget, extra_age):
    run = make_run(strategy, chain, seed, _acc(chain, forget, extra_age), n_per_group=40)
    r = run["result"]
    r.update(compute_all(run["records"], r["task_info"], r["stages"], eval_tasks=r["eval_tasks"], n_boot=200))
    return run


@pytest.fixture(scope="module", params=[(0,), (0, 1, 2)], ids=["one seed", "three seeds"])
def runs(request):
    out = {}
    for strategy, forget, extra in (("naive", {"bbq": 0.35, "gsm8k": 0.1}, 0.2), ("replay", {"bbq": 0.1, "gsm8k": 0.1}, 0.0)):
        out[strategy] = [_run(strategy, chain, seed, forget, extra) for chain in CHAINS for seed in request.param]
    return out


def _triple(cell):
    return cell.value, cell.low, cell.high


def _cells(row: dict, *keys):
    return {k: row[k] for k in keys}


def test_leaderboard_compare_and_findings_print_the_same_intervals(runs):
    everything = runs["naive"] + runs["replay"]
    headers, rows = leaderboard_rows(everything, columns=["relative_forgetting"])
    board = {(str(r[0]), str(r[1])): dict(zip(headers, r)) for r in rows}
    c_headers, c_rows = compare_runs(runs, "naive", metrics=("forgetting", "biased_forgetting", "final",
                                                            "relative_forgetting"))
    comp = {(str(r[0]), str(r[1]), str(r[2]), str(r[3])): dict(zip(c_headers, r)) for r in c_rows}
    found = findings(everything)
    value, diff = "value [95% CI]", "diff vs naive [95% CI]"

    for method in ("naive", "replay"):
        lead = board[(method, "bbq,gsm8k")]
        # the final score, its interval from the records
        assert _triple(lead["gsm8k final"]) == _triple(comp[("final", "gsm8k", "bbq,gsm8k", method)][value])
        assert lead["gsm8k final"].low is not None
        # a stored metric's cell: forgetting and relative forgetting
        assert _triple(lead["bbq forgetting"]) == _triple(comp[("forgetting", "bbq", "bbq,gsm8k", method)][value])
        rel = lead["bbq relative_forgetting [share of the stage's gain]"]
        assert _triple(rel) == _triple(comp[("relative_forgetting", "bbq", "bbq,gsm8k", method)][value])
        (asym,) = [a for a in found["order_asymmetry"]["answers"] if a["setting"] == method]
        side = asym["safety_first"]
        assert (side["value"], side["ci_low"], side["ci_high"]) == _triple(rel)
        # the biased-forgetting spread, its interval and the group p
        spread = comp[("biased_forgetting", "bbq", "bbq,gsm8k", method)]
        (group,) = [a for a in found["group_dependence"]["answers"] if a["setting"] == method
                    and a["chain"] == "bbq,gsm8k" and a["task"] == "bbq"]
        g = group["spread"]
        assert _triple(lead["bbq biased forgetting"]) == _triple(spread[value]) == (g["value"], g["ci_low"],
                                                                                    g["ci_high"])
        assert lead["bbq group p"].p == spread["sig"].p == g["p"]

    # differences: replay minus naive, paired by seed and example
    lead = board[("replay", "bbq,gsm8k")]
    final = comp[("final", "gsm8k", "bbq,gsm8k", "replay")][diff]
    forgot = comp[("forgetting", "bbq", "bbq,gsm8k", "replay")][diff]
    answers = {a["measure"]: a["difference"] for a in found["mitigation"]["answers"]
               if a["setting"] == "replay" and a["chain"] == "bbq,gsm8k"}
    assert _triple(lead["gsm8k vs naive"]) == _triple(final)
    fin, sf = answers["final capability"], answers["safety forgetting"]
    assert (fin["value"], fin["ci_low"], fin["ci_high"], fin["p"]) == (*_triple(final), final.p)
    assert (sf["value"], sf["ci_low"], sf["ci_high"], sf["p"]) == (*_triple(forgot), forgot.p)
    assert forgot.low is not None and forgot.high < 0  # planted: replay forgets 0.25 less
    # none of the compared intervals is vacuously equal (missing in every table)
    for cell in (lead["bbq forgetting"], lead["bbq biased forgetting"], lead["gsm8k vs naive"], final):
        assert None not in _triple(cell), cell
