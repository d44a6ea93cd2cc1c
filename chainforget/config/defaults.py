"""Defaults that several commands share, defined once (the CLI's --help shows these same values)."""

from __future__ import annotations

# Bootstrap/permutation settings of every metric interval (run, leaderboard, `metrics --check` recompute).
METRIC_OPTION_DEFAULTS = {"min_group_size": 20, "n_boot": 1000, "seed": 0}

# The probe and power iteration that `--sharpness` uses during a run; `chainforget sharpness` defaults to the same.
SHARPNESS_DEFAULTS = {"batch_size": 8, "max_iter": 30, "tol": 1e-3}

# Output formats of every table (leaderboard, compare, findings' tables) and of the findings report as a whole.
TABLE_FORMATS = ("github", "latex", "csv", "json", "html", "plain")
FINDINGS_FORMATS = ("text", "json", "html")
