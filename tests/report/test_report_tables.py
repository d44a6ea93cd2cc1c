"""Leaderboard rows, seed aggregation, capability cost, sorting and every output format."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest
from test_report_factory import make_result

from chainforget.config.defaults import TABLE_FORMATS
from chainforget.errors import ConfigError
from chainforget.report.tables import (
    SEEDS_HEADER,
    aggregate,
    leaderboard_rows,
    render_table,
    sort_rows,
)

SF, BC = ("bbq", "gsm8k"), ("gsm8k", "bbq")


def _grid():
    return [
        make_result("naive", SF, 0, forgetting=0.30, biased=0.20, cap_final=0.40),
        make_result("replay", SF, 0, forgetting=0.10, biased=0.05, cap_final=0.35),
        make_result("naive", BC, 0, forgetting=0.00, biased=0.01, cap_final=0.20),
        make_result("replay", BC, 0, forgetting=0.02, biased=0.03, cap_final=0.25),
    ]


def _by(headers, rows, strategy, chain):
    (row,) = [r for r in rows if r[0] == strategy and r[1] == chain]
    return dict(zip(headers, row))


def test_rows_and_columns_one_seed():
    headers, rows = leaderboard_rows(_grid())
    assert headers == ["strategy", "chain", SEEDS_HEADER, "bbq forgetting", "bbq biased forgetting", "bbq group p",
                       "gsm8k final", "gsm8k vs naive"]
    assert [(r[0], r[1]) for r in rows] == [("naive", "bbq,gsm8k"), ("replay", "bbq,gsm8k"),
                                           ("naive", "gsm8k,bbq"), ("replay", "gsm8k,bbq")]
    replay = _by(headers, rows, "replay", "bbq,gsm8k")
    assert replay["bbq forgetting"] == "0.100 [0.080, 0.120]"  # the stored CI, one seed
    assert replay["bbq biased forgetting"] == "0.050 [0.030, 0.070]"
    assert replay["gsm8k final"] == "0.350"
    assert replay["gsm8k vs naive"] == "-0.050"  # 0.35 - 0.40 on the same chain and seed
    assert _by(headers, rows, "replay", "gsm8k,bbq")["gsm8k vs naive"] == "0.050"
    assert _by(headers, rows, "naive", "bbq,gsm8k")["gsm8k vs naive"] == ""


def test_seeds_aggregate_with_t_interval_and_cost_pairs_by_seed():
    results = [make_result("naive", SF, s, forgetting=f, cap_final=c)
               for s, f, c in ((0, 0.2, 0.40), (1, 0.3, 0.50), (2, 0.4, 0.45))]
    results += [make_result("replay", SF, s, forgetting=f, cap_final=c)
                for s, f, c in ((0, 0.1, 0.38), (1, 0.1, 0.47), (2, 0.1, 0.44))]
    headers, rows = leaderboard_rows(results)
    naive = _by(headers, rows, "naive", "bbq,gsm8k")
    # between seeds: t(0.975, 2)^2 * sd^2 / n; evaluation: the stored CIs' standard error (0.02 / 1.96), whole
    half = math.sqrt(4.303 ** 2 * 0.1 ** 2 / 3 + 1.96 ** 2 * (0.02 / 1.96) ** 2)
    assert naive[SEEDS_HEADER] == "3"
    assert naive["bbq forgetting"] == f"0.300 [{0.3 - half:.3f}, {0.3 + half:.3f}]"
    cost = _by(headers, rows, "replay", "bbq,gsm8k")["gsm8k vs naive"]
    assert cost.value == pytest.approx(-0.02)  # per-seed differences -0.02, -0.03, -0.01
    assert cost.startswith("-0.020 [")
    assert aggregate([(1.0, None, None), (None, None, None)]) == (1.0, None, None)
    assert aggregate([]) is None


def test_varying_fields_become_columns_and_naive_is_matched_on_them():
    results = [make_result("naive", SF, 0, finetune=ft, cap_final=c) for ft, c in (("full", 0.4), ("lora", 0.3))]
    results += [make_result("ewc", SF, 0, finetune=ft, cap_final=c) for ft, c in (("full", 0.35), ("lora", 0.32))]
    headers, rows = leaderboard_rows(results)
    assert headers[:4] == ["strategy", "chain", "finetune", SEEDS_HEADER]
    costs = {r[2]: dict(zip(headers, r))["gsm8k vs naive"] for r in rows if r[0] == "ewc"}
    assert costs == {"full": "-0.050", "lora": "0.020"}


def test_missing_cells_carry_their_reason_and_print_a_footnote_mark():
    results = [make_result("replay", SF, 0, metrics=False)]
    results[0]["metrics"]["forgetting"] = {"bbq": {"value": None, "missing": "bbq is trained in the last stage"}}
    headers, rows = leaderboard_rows(results)
    row = dict(zip(headers, rows[0]))
    assert row["bbq forgetting"] == "" and row["bbq forgetting"].missing == "bbq is trained in the last stage"
    assert row["gsm8k vs naive"].missing == "no naive run with the same chain, seed and settings"
    assert row["gsm8k final"] == "0.300" and row["gsm8k final"].missing is None
    for fmt in ("github", "plain", "html", "latex"):
        text = render_table(headers, rows, fmt)
        marks = {cell for line in text.splitlines() for cell in re.findall(r"n/a \((\d+)\)", line)}
        assert marks == {"1", "2", "3", "4"}  # forgetting, biased forgetting, group p, vs naive
        assert "bbq is trained in the last stage" in text and "no naive run with the same chain" in text
    table = render_table(headers, rows, "github").split("\n\n")[0]
    assert "||" not in table.replace(" ", "")  # no blank cell in the table itself
    # no stored entry at all: the reason is read from where the task sits in the chain
    headers, rows = leaderboard_rows([make_result("replay", BC, 0, metrics=False)])
    row = dict(zip(headers, rows[0]))
    assert row["bbq forgetting"].missing == "bbq is trained in the last stage: nothing came after it to forget it"


def test_strategy_hyperparameters_that_differ_split_rows():
    a = make_result("replay", SF, 0, forgetting=0.1)
    b = make_result("replay", SF, 0, forgetting=0.2)
    a["resolved_params"], b["resolved_params"] = {"fraction": 0.05, "k": 1}, {"fraction": 0.1, "k": 1}
    _, rows = leaderboard_rows([a, b])
    assert sorted(r[0] for r in rows) == ["replay(fraction=0.05)", "replay(fraction=0.1)"]


def test_sort_numeric_descending_blank_last_and_unknown_column():
    headers, rows = leaderboard_rows(_grid() + [make_result("lwf", SF, 0, metrics=False)])
    ordered = sort_rows(rows, headers, "bbq forgetting", descending=True)
    assert [r[0] + "/" + r[1] for r in ordered] == ["naive/bbq,gsm8k", "replay/bbq,gsm8k", "replay/gsm8k,bbq",
                                                    "naive/gsm8k,bbq", "lwf/bbq,gsm8k"]
    ascending = sort_rows(rows, headers, "BBQ_Forgetting")  # case, spaces and underscores are forgiven
    assert [r[3] for r in ascending][:2] == ["0.000 [-0.020, 0.020]", "0.020 [0.000, 0.040]"]
    assert ascending[-1][0] == "lwf"
    # plain strings (as read back from CSV) sort the same way
    plain = [[str(c) for c in r] for r in rows]
    assert [r[0] for r in sort_rows(plain, headers, "bbq forgetting")] == [r[0] for r in ascending]
    with pytest.raises(ConfigError) as info:
        sort_rows(rows, headers, "bbq forgeting")
    assert "did you mean 'bbq forgetting'?" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_every_format_renders_the_values(fmt):
    headers, rows = leaderboard_rows(_grid())
    text = render_table(headers, rows, fmt)
    if fmt == "csv":
        back = list(csv.DictReader(io.StringIO(text)))
        assert [(r["strategy"], r["chain"], int(r["seeds"])) for r in back] == [(r[0], r[1], 1) for r in rows]
        replay = back[1]
        assert float(replay["bbq_forgetting_value"]) == pytest.approx(0.1)
        assert float(replay["bbq_forgetting_ci_low"]) == pytest.approx(0.08)
        assert replay["bbq_forgetting_unit"] == "acc" and replay["bbq_forgetting_missing"] == ""
        assert back[0]["gsm8k_vs_naive_value"] == "" and back[0]["gsm8k_vs_naive_missing"] == "naive is the baseline"
    elif fmt == "json":
        back = json.loads(text)
        assert back["schema"] == "chainforget.leaderboard/2"
        assert [c["key"] for c in back["columns"]] == ["strategy", "chain", "seeds", "bbq_forgetting",
                                                       "bbq_biased_forgetting", "bbq_group_p", "gsm8k_final",
                                                       "gsm8k_vs_naive"]
        replay = back["rows"][1]
        assert replay["bbq_forgetting"] == {"value": 0.1, "ci_low": pytest.approx(0.08),
                                            "ci_high": pytest.approx(0.12), "p": None, "n": None, "unit": "acc",
                                            "seeds": 1, "missing": None}
        assert replay["gsm8k_vs_naive"]["value"] == pytest.approx(-0.05) and replay["seeds"] == 1
    else:
        for value in ("0.100 [0.080, 0.120]", "-0.050", "gsm8k,bbq", "0.350"):
            assert value in text
        if fmt == "latex":
            assert "\\begin{tabular}" in text and "biased forgetting" in text
        if fmt == "html":
            assert text.count("<tr>") == len(rows) + 1


def test_unknown_format_is_one_line_error():
    with pytest.raises(ConfigError, match="did you mean 'latex'"):
        render_table(["a"], [["1"]], "latx")


def test_runner_shaped_results_group_on_resolved_training_settings():
    """Runs as the runner writes them: training overrides in spec.train, resolved ones in train_config."""
    results = []
    for ft in ("full", "lora"):
        for seed in (0, 1):
            for strategy, cap in (("naive", 0.40), ("replay", 0.30)):
                r = make_result(strategy, SF, seed, cap_final=cap + (0.05 if ft == "lora" else 0))
                r["spec"] = {"chain": list(SF), "strategy": strategy, "model": "tiny", "seed": seed,
                             "strategy_params": {"fraction": 0.05} if strategy == "replay" else {},
                             "train": {"finetune": ft} if ft == "lora" else {}}
                r["train_config"] = {"learning_rate": 1e-4, "finetune": ft, "seed": seed}
                r["sharpness"] = None
                results.append(r)
    headers, rows = leaderboard_rows(results)
    assert headers[:4] == ["strategy", "chain", "finetune", SEEDS_HEADER]
    assert sorted((r[0], r[2], r[3]) for r in rows) == [("naive", "full", "2"), ("naive", "lora", "2"),
                                                        ("replay", "full", "2"), ("replay", "lora", "2")]
    assert {dict(zip(headers, r))["gsm8k vs naive"] for r in rows if r[0] == "replay"} == {"-0.100 [-0.100, -0.100]"}


def test_across_seed_interval_stays_in_the_declared_range_and_metric_columns():
    results = [make_result("naive", SF, s, biased=b) for s, b in ((0, 0.0), (1, 0.05))]
    for r, rel in zip(results, (0.4, 0.6)):
        r["metrics"]["relative_forgetting"] = {"bbq": {"value": rel, "ci_low": rel - 0.1, "ci_high": rel + 0.1}}
    headers, rows = leaderboard_rows(results, columns=["relative_forgetting"])
    row = dict(zip(headers, rows[0]))
    assert row["bbq biased forgetting"].low == 0.0  # a spread is never negative: the interval is clipped at 0
    # the column names the metric's own unit (from its MetricSpec) and sorts by its name with or without it
    assert row["bbq relative_forgetting [share of the stage's gain]"].value == pytest.approx(0.5)
    assert sort_rows(rows, headers, "bbq relative_forgetting") == rows
    with pytest.raises(ConfigError, match="did you mean 'relative_forgetting'"):
        leaderboard_rows(results, columns=["relative_forgeting"])
