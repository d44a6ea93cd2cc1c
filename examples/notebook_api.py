"""chainforget from Python, as in a notebook: run a small suite, load it as tidy pandas DataFrames, analyse.

    .venv/bin/python examples/notebook_api.py [--out runs-api-example]

It runs on ``tiny-trained`` (the ~3M test model that has read the tasks' inputs, so each task's own stage raises
its score) in about a minute on a laptop CPU; swap in ``smollm2-135m`` and larger limits for real numbers. Every
cell below works the same on the quick preset's folder: ``res = cf.load("runs/")``. Columns: docs/api.md.
"""

from __future__ import annotations

import argparse

import chainforget.api as cf

SUITE = {
    "model": "tiny-trained",
    "chains": [["bbq", "gsm8k"], ["gsm8k", "bbq"]],
    "strategies": ["naive", "replay"],
    "seeds": [0],
    "limit_train": {"bbq": 24, "gsm8k": 8},
    "limit_eval": {"bbq": 36, "gsm8k": 8},
    "task_options": {"gsm8k": {"primary_metric": "gold_logprob"}},
    "train": {"batch_size": 4, "micro_batch_size": 4, "max_length": 192, "learning_rate": 0.003},
    "eval_batch_size": 16,
    "metric_options": {"n_boot": 200},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs-api-example")
    out = ap.parse_args().out

    # Run: finished runs and shared prefixes are reused, so a second call returns at once.
    res = cf.run_suite(SUITE, out)
    print(f"{len(res)} runs under {out}/")

    m = res.metrics  # one row per run x task x group x stage x metric
    scores = m[(m.metric == "score") & (m.group == "all")]
    print("\nScore matrices (rows: stages; columns: tasks), naive on bbq -> gsm8k:")
    one = scores[(scores.strategy == "naive") & (scores.chain == "bbq,gsm8k")]
    print(one.pivot(index=["stage", "stage_label"], columns="task", values="value").round(3).to_string())

    print("\nRelative forgetting of the first task (share of its own stage's gain lost later):")
    rel = m[(m.metric == "relative_forgetting") & m.value.notna()]
    print(rel[["strategy", "chain", "task", "value", "ci_low", "ci_high", "unit"]].round(3).to_string(index=False))

    print("\nBBQ accuracy per group at the last stage (n = eval examples):")
    last = m[(m.metric == "score") & (m.task == "bbq") & (m.group != "all") & (m.stage == m.stage.max())]
    print(last.pivot_table(index="group", columns=["strategy", "chain"], values="value").round(2).to_string())

    print("\nMissing values say why:")
    gone = m[m.value.isna() & m.missing.notna()].drop_duplicates("metric")
    print(gone[["metric", "task", "missing"]].head(5).to_string(index=False))

    print("\nThe leaderboard, as `chainforget leaderboard --format json` gives it (one row per cell):")
    board = cf.leaderboard(out, columns=["relative_forgetting"])
    print(board[["strategy", "chain", "column", "value", "ci_low", "ci_high", "missing"]].round(3).to_string(index=False))

    print("\nPer-example records: BBQ accuracy by stage, from the records themselves:")
    rec = res.records
    bbq = rec[rec.task == "bbq"]
    print(bbq.groupby(["strategy", "chain", "stage"]).acc.mean().unstack("stage").round(3).to_string())


if __name__ == "__main__":
    main()
