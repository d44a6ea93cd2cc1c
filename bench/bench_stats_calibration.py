"""The simulation tables of docs/metrics.md: calibration of the biased-forgetting spread, the group test, the
simultaneous per-group intervals, differences with seeds, the order-asymmetry difference and the minimum detectable
effects, with the methods they replaced for contrast. Every number comes from chainforget.metrics.simulate and
chainforget.metrics.simulate_inference (the same designs as the seeded tests in
tests/metrics/test_metrics_calibration.py and tests/metrics/test_metrics_inference.py, with more repetitions).

    .venv/bin/python bench/bench_stats_calibration.py [--scale 1.0] [--seed 0] [--write-docs]

``--scale`` multiplies every repetition count (the default run takes several minutes on 2 shared cores; the Monte
Carlo standard error of a coverage near 0.95 from R repetitions is sqrt(0.95 * 0.05 / R), 0.011 at R = 400).
``--write-docs`` replaces the marked section of docs/metrics.md with the tables. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

from chainforget.metrics import simulate as sim
from chainforget.metrics import simulate_inference as simi

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
BEGIN, END = "<!-- bench_stats_calibration: begin -->", "<!-- bench_stats_calibration: end -->"
TEN_TIMES = [0.6 if s < 1500 else 0.06 for s in sim.BBQ_EVAL_SIZES]  # ten-fold variance differences
ACC = (180, 0.2, 0.18, "acc")


def _se(p: float, reps: int) -> str:
    return f"{p:.3f} (+-{math.sqrt(max(p * (1 - p), 1e-4) / reps):.3f})"


CHURN = [0.2, 0.6, 0.2, 0.4, 0.6, 0.2, 0.6, 0.3, 0.6]  # unequal noise across BBQ categories
DESIGNS = {
    "BBQ eval split (15,900; templates of 8-480)": sim.seed_design("full", sim.BBQ_EVAL_TEMPLATE_SIZES, CHURN),
    "paper preset's BBQ sample (1,000)": sim.seed_design("paper", sim.BBQ_PAPER_TEMPLATE_SIZES, CHURN),
    "paper preset's ToxiGen sample (13 x 77)": sim.flat_design("toxigen", sim.TOXIGEN_PAPER_SIZES, 0.3),
    "quick preset's BBQ sample (9 x 20)": sim.seed_design("quick", sim.BBQ_QUICK_TEMPLATE_SIZES, 0.6),
}


def tables(scale: float, seed: int) -> tuple[str, dict]:
    r = lambda n: max(20, int(round(n * scale)))  # noqa: E731
    figures: dict = {}
    lines = ["**Seeds and training noise** (the product's `spread.analyse`, 199 bootstrap replicates per test, so "
             "the exact level of p < 0.05 is 0.045): size of the group test (every group forgets 0.03 on average; "
             "each seed shifts each group by N(0, SD^2)) and coverage of the spread interval at a true spread of "
             "0.1, with the Monte Carlo SE. With one seed a seed's group shift is a real group effect of that "
             "trained model, so the rows with one seed and SD > 0 show why seeds are needed, not a miscalibration.",
             "", "| design | seeds | seed x group SD | reps | test size | coverage (tau 0.1) | mean width |",
             "|---|---|---|---|---|---|---|"]
    for d, (name, design) in enumerate(DESIGNS.items()):
        for seeds in (1, 2, 3, 5):
            for k, sd in enumerate((0.0, 0.05, 0.10)):
                reps = r(400)
                base = seed + 10_000 + 1000 * d + 10 * seeds + k
                size = sim.seeded_calibration(design, seeds, sd, reps, base)
                cover = sim.seeded_calibration(design, seeds, sd, reps, base + 500, tau=0.1)
                figures[f"seeds_{design.name}_S{seeds}_sd{sd}"] = {"size": size["rejection_rate"],
                                                                   "coverage": cover["coverage"]}
                lines.append(f"| {name} | {seeds} | {sd:.2f} | {reps} | {_se(size['rejection_rate'], reps)} | "
                             f"{_se(cover['coverage'], reps)} | {cover['mean_width']:.3f} |")

    lines += ["", "**Spread interval, one seed** (random-effects tau) vs the old bias-corrected interval of max - min: "
              "coverage of the truth (true tau, resp. true range) at nominal 0.95.", "",
              "| design | true tau | reps | coverage | mean width | p < 0.05 | old max-min: coverage |",
              "|---|---|---|---|---|---|---|"]
    cases = [("9 x 20", sim.flat_design("9 x 20", [20] * 9, 0.35), 20),
             ("9 x 100", sim.flat_design("9 x 100", [100] * 9, 0.35), 100),
             ("quick preset's BBQ sample", DESIGNS["quick preset's BBQ sample (9 x 20)"], None),
             ("paper preset's BBQ sample", DESIGNS["paper preset's BBQ sample (1,000)"], None)]
    for name, design, old_n in cases:
        for tau in (0.0, 0.1, 0.3):
            reps = r(400)
            new = sim.seeded_calibration(design, 1, 0.0, reps, seed + 1000 + len(name) + int(100 * tau), tau=tau)
            old = (sim.old_range_coverage(9, old_n, tau, r(200), seed + 2000 + old_n + int(100 * tau))
                   if old_n else None)
            figures[f"spread_{design.name}_tau{tau}"] = {**new, "old_range_coverage": old}
            lines.append(f"| {name} | {tau} | {reps} | {_se(new['coverage'], reps)} | {new['mean_width']:.3f} | "
                         f"{new['rejection_rate']:.3f} | {'-' if old is None else f'{old:.3f}'} |")

    lines += ["", "**Group test size, one seed**, at nominal 0.05 (every group forgets 0.03 on average): the new "
              "test vs the old between-group sum of squares with examples permuted.", "",
              "| design | reps | new | old |", "|---|---|---|---|"]
    small = [n // 10 for n in sim.BBQ_EVAL_SIZES]
    designs = [("equal variances, 9 x 20", [20] * 9, [0.3] * 9, None),
               ("ten-fold variances, eval split's category proportions (41-340)", small, TEN_TIMES, None),
               ("ten-fold variances, eval split's sizes in its real templates (sd 0.15)", sim.BBQ_EVAL_SIZES,
                TEN_TIMES, sim.BBQ_EVAL_TEMPLATES)]
    for k, (name, sizes, churn, templates) in enumerate(designs):
        reps = r(400)
        if templates is None:
            new = sim.null_rejection_rate(sizes, churn, reps, seed + 3000 + k)
        else:
            real = sim.seed_design("full", sim.BBQ_EVAL_TEMPLATE_SIZES, churn, unit_sd=0.0)
            new = sim.seeded_calibration(real, 1, 0.0, reps, seed + 3000 + k)["rejection_rate"]
        old_reps = r(300 if templates is None else 60)
        old = sim.old_test_size(sizes, churn, old_reps, seed + 4000 + k, templates=templates, template_sd=0.15)
        figures[f"size_{k}"] = {"new": new, "old": old}
        lines.append(f"| {name} | {reps} / {old_reps} | {_se(new, reps)} | {old:.3f} |")

    lines += ["", "**Power and minimum detectable effects.**", "", "| what | design | reps | result |",
              "|---|---|---|---|"]
    for n in (20, 100):
        reps = r(200)
        power = sim.null_rejection_rate([n] * 9, [0.6] * 9, reps, seed + 5000 + n, shift=0.4)
        figures[f"power_shift0.4_9x{n}"] = power
        lines.append(f"| group test: one group forgets 0.4 more (churn 0.6) | 9 x {n} | {reps} | power "
                     f"{power:.3f} |")
    for n in (20, 100):
        reps = r(300)
        at_mde = sim.spread_power_at_mde(9, n, reps, seed + 6000 + n)
        figures[f"spread_mde_9x{n}"] = at_mde
        lines.append(f"| group test at the stated spread MDE (findings) | 9 x {n} | {reps} | MDE "
                     f"{at_mde['mde']:.3f}, power {at_mde['power']:.3f} (target 0.80) |")
    for k, (name, design) in enumerate(DESIGNS.items()):
        for seeds in (1, 3):
            reps = r(200)
            res = sim.group_interval_coverage(design, seeds, 0.10 if seeds > 1 else 0.0, 0.1, reps,
                                              seed + 7500 + 10 * k + seeds)
            figures[f"group_intervals_{design.name}_S{seeds}"] = res
            width = "-" if res["mean_width"] is None else f"{res['mean_width']:.2f}"
            lines.append(f"| simultaneous per-group intervals, clipped to [-1, 1] | {name}, {seeds} seed(s)"
                         f"{', SD 0.10' if seeds > 1 else ''}, tau 0.1 | {reps} | coverage {res['coverage']:.3f}; "
                         f"groups without an interval {res['no_interval']:.2f}; mean width {width} |")
    for n in (20, 100):
        reps = r(200)
        cov = sim.simultaneous_coverage(9, n, 0.1, reps, seed + 7000 + n)
        figures[f"simultaneous_9x{n}"] = cov
        lines.append(f"| simultaneous per-group intervals: all 9 cover | 9 x {n}, tau 0.1 | {reps} | coverage "
                     f"{cov:.3f} |")

    lines += ["", "**Differences with seeds** (compare's difference column, findings (3), the leaderboard's vs naive): "
              "a method minus the baseline on 0/1 scores of the same examples, truth 0 (coverage = 1 - size); "
              "`metrics.inference.seed_parts`: the joint cluster covariance of every seed of both methods (shared "
              "part, t(clusters - groups)) plus the between-seed variance (t(S - 1)). Seed sd on the logit scale; "
              "one seed cannot see training randomness (its interval is conditional on the trained model).", "",
              "| design | seeds | seed sd | reps | coverage (MC SE) | mean width |", "|---|---|---|---|---|---|"]
    quick = simi.layout([20] * 9, [7] * 9, unit_size=2)
    split = _bbq_split()
    for k, (name, codes, settings) in enumerate([
            ("quick preset: BBQ 9 x 20, context pairs in 7 templates each", quick,
             [(1, 0.0), (2, 0.0), (2, 0.2), (2, 0.5), (3, 0.0), (3, 0.2), (3, 0.5), (5, 0.0), (5, 0.2), (5, 0.5)]),
            ("paper preset: the shipped BBQ eval split (15,900 examples, 141 templates of 8-480)", split,
             [(3, 0.0), (3, 0.2), (3, 0.5)])]):
        for n_seeds, seed_sd in settings:
            reps = r(1000 if k == 0 else 400)
            res = simi.difference_calibration(*codes, n_seeds, seed_sd, reps, seed + 9000 + 100 * k + 10 * n_seeds
                                              + int(10 * seed_sd), chunk=20)
            figures[f"difference_{k}_S{n_seeds}_sd{seed_sd}"] = res
            lines.append(f"| {name} | {n_seeds} | {seed_sd} | {reps} | {_se(res['coverage'], reps)} | "
                         f"{res['mean_width']:.3f} |")

    lines += ["", "**Order asymmetry** (findings (1)): relative_forgetting of the first task of one order minus that "
              "of the other; Fieller's interval per ratio, MOVER for the difference (`metrics.inference`). First "
              "task: BBQ-like, the quick preset's draw (9 x 20 in context pairs, 0/1 scores, gain 0.2, forgets "
              "0.18 = 90% of the gain). 'open' = intervals the data cannot bound (a gain not clearly positive), "
              "which are reported as unbounded and count as covering; 'misses below / above' = intervals wholly "
              "below / above the truth.", "",
              "| other order's first task | seeds | truth | reps | coverage (MC SE) | p < 0.05 | open | misses below / "
              "above |", "|---|---|---|---|---|---|---|---|"]
    cases = [("quick preset: 12 GSM8K examples, nats, gain 0.166, forgets 610%", (12, 0.166, 1.02, "nats"), {}),
             ("12 examples, nats, gain 0.166, forgets 90% (no asymmetry)", (12, 0.166, 0.149, "nats"), {}),
             ("100 examples, nats, gain 0.3, forgets 90% (no asymmetry)", (100, 0.3, 0.27, "nats"), {}),
             ("100 examples, nats, gain 0.3, forgets 300%", (100, 0.3, 0.9, "nats"), {}),
             ("100 examples, no asymmetry, seed sd 0.1", (100, 0.3, 0.27, "nats"), {"n_seeds": 3, "seed_sd": 0.1}),
             ("100 examples, no asymmetry, seed sd 0.3", (100, 0.3, 0.27, "nats"), {"n_seeds": 5, "seed_sd": 0.3})]
    cases.append(("paper preset: BBQ first on its shipped split (0/1, gain 0.1, forgets 50%) vs a 1,000-example "
                  "0/1 task, seed sd 0.1, no asymmetry", (1000, 0.1, 0.05, "acc"),
                  {"n_seeds": 3, "seed_sd": 0.1, "first": (15900, 0.1, 0.05, "acc"), "first_layout": split}))
    for k, (name, other, extra) in enumerate(cases):
        reps = r(2000 if "first" not in extra else 400)
        extra = {"first_layout": quick, **extra}
        first = extra.pop("first", ACC)
        res = simi.asymmetry_calibration(first, other, reps, seed + 8000 + k, chunk=20, **extra)
        figures[f"asymmetry_{k}"] = res
        lines.append(f"| {name} | {extra.get('n_seeds', 1)} | {res['truth']:.2f} | {reps} | "
                     f"{_se(res['coverage'], reps)} | {res['excludes_zero']:.3f} | {res['open']:.3f} | "
                     f"{res['misses']['interval_below_truth']:.3f} / {res['misses']['interval_above_truth']:.3f} |")
    return "\n".join(lines), figures


def _bbq_split():
    """(category code, template code) of every example of the shipped BBQ evaluation split (the task loader's)."""
    from chainforget.plugins import registries

    examples = registries("tasks").get("bbq").eval_examples()
    return simi.from_labels([e.group for e in examples], [e.meta["template"] for e in examples])


def write_docs(text: str, header: str) -> None:
    doc = DOCS.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{header}\n\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    DOCS.write_text(doc, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every repetition count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="rewrite the marked section of docs/metrics.md")
    args = parser.parse_args()
    start = time.perf_counter()
    text, figures = tables(args.scale, args.seed)
    seconds = time.perf_counter() - start
    header = (f"_Generated by `bench/bench_stats_calibration.py --scale {args.scale:g} --seed {args.seed}` in "
              f"{seconds:.0f} s; rerun it to regenerate this section._")
    print(header + "\n\n" + text)
    if args.write_docs:
        write_docs(text, header)
    print(json.dumps({"seconds": round(seconds, 1), "scale": args.scale, **figures}, sort_keys=True))


if __name__ == "__main__":
    main()
