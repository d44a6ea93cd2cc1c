"""What the CLI's run / leaderboard / metrics commands do, minus the click parsing and printing."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from chainforget.benchmark.runner import run
from chainforget.benchmark.suite_runner import collect_results, run_suite
from chainforget.config.files import load_config_file
from chainforget.config.metric_options import metric_options_from
from chainforget.config.spec import (
    RUN_CONFIG_KEYS,
    RunSpec,
    check_keys,
    parse_set_options,
    parse_task_list,
    run_settings,
)
from chainforget.config.suite import parse_shard, resolve_suite
from chainforget.engine.logs import check_wandb, parse_logger_names
from chainforget.errors import ChainforgetError, ConfigError, DataError, unknown_name
from chainforget.metrics.compute import read_run, recompute_run
from chainforget.plugins import registries
from chainforget.report.tables import leaderboard_rows, render_table, sort_rows
from chainforget.store.results import find_runs, load_result, remove_unstarted_run


def _load_run_config(path: str, what: str) -> dict[str, Any]:
    data = load_config_file(path, what)
    check_keys(data, RUN_CONFIG_KEYS, what)
    return data


def build_run_spec(*, sets=(), config_path=None, train=None, **settings) -> tuple[RunSpec, dict]:
    """Config file first, then flags (``settings``: run settings by their RunSpec name, None = not given; ``train``:
    training settings); returns the spec and the metric options."""
    unknown = sorted(set(settings) - set(run_settings()))
    if unknown:
        raise TypeError(f"build_run_spec: {', '.join(unknown)} is no RunSpec field")
    cfg: dict[str, Any] = _load_run_config(config_path, "run config") if config_path else {}
    for key in ("metric_options", "strategy_params", "train", "task_options"):
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise ConfigError(f"{config_path}: {key} must be a mapping of keys to values, got {cfg[key]!r}")
    metric_options = dict(cfg.pop("metric_options", None) or {})
    metric_options_from(metric_options)  # here, so --dry-run refuses n_boot: 10**12 as the run does
    cfg.update({k: v for k, v in settings.items() if v is not None})
    if not cfg.get("chain"):
        raise ConfigError("no chain given; pass --chain bbq,gsm8k (see `chainforget list tasks`)")
    cfg["chain"] = tuple(parse_task_list(cfg["chain"], "chain"))
    if "eval_tasks" in cfg:
        cfg["eval_tasks"] = tuple(parse_task_list(cfg["eval_tasks"], "eval_tasks"))
    strategy_sets, train_sets = parse_set_options(sets)
    name = cfg.get("strategy", "naive")
    for owner in strategy_sets:
        if owner != name:
            raise ConfigError(f"--set {owner}.* does not match --strategy {name}; "
                              f"use --set {name}.PARAM=VALUE or train.KEY=VALUE")
    cfg["strategy_params"] = {**dict(cfg.get("strategy_params") or {}), **strategy_sets.get(name, {})}
    cfg["train"] = {**dict(cfg.get("train") or {}), **train_sets, **(train or {})}
    return RunSpec.from_dict(cfg), metric_options


def run_command(*, out: str, resume: bool, log: str, quiet: bool, echo: Callable[[str], None], **spec_args) -> dict:
    spec, metric_options = build_run_spec(**spec_args)
    loggers = tuple(x.strip() for x in log.split(",") if x.strip()) if log else ()
    if "wandb" in parse_logger_names(loggers):
        check_wandb()  # before any work, not after the model has loaded
    out_dir = Path(out)
    existed = out_dir.is_dir()
    before = set(os.listdir(out_dir)) if existed else set()
    try:
        return run(spec, out, resume=resume, progress=not quiet, echo=echo, metric_options=metric_options,
                   loggers=loggers)
    except (ChainforgetError, OSError):  # a refusal (bad model, LoRA targets, chat template...): --out as it was
        for name in sorted(set(os.listdir(out_dir)) - before) if out_dir.is_dir() else []:
            remove_unstarted_run(out_dir / name)
        if not existed:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty
        raise


def leaderboard_command(*, preset: str | None, suite_path: str | None, out: str, shard: str | None, launcher: str,
                        no_run: bool, sort_key: str | None, ascending: bool, fmt: str, quiet: bool,
                        echo: Callable[[str], None], warn: Callable[[str], None] | None = None,
                        columns: str | None = None, max_runs: int | None = None) -> str:
    """Run the suite (``--preset``, default quick, or ``--suite``), then tabulate its runs. With ``no_run`` and no
    suite named, tabulate every complete run under ``out`` instead: no suite file, no run ids to recompute, so it
    is as quick as ``compare``."""
    warn = warn or echo
    extra = parse_columns(columns)  # before any run: a typo must not cost a suite
    if no_run and suite_path is None and preset is None:
        results = folder_results(out, warn)
    else:
        results = _suite_results(resolve_suite(suite_path or preset or DEFAULT_PRESET, max_runs), out, shard=shard,
                                 launcher=launcher, no_run=no_run, quiet=quiet, echo=echo, warn=warn)
    headers, rows = leaderboard_rows(results, columns=extra)
    if sort_key:
        rows = sort_rows(rows, headers, sort_key, descending=not ascending)
    return render_table(headers, rows, fmt)


DEFAULT_PRESET = "quick"


def _suite_results(suite, out: str, *, shard: str | None, launcher: str, no_run: bool, quiet: bool,
                   echo: Callable[[str], None], warn: Callable[[str], None]) -> list[dict]:
    shard_t = parse_shard(shard)
    if not no_run:
        run_suite(suite, out, shard=shard_t, progress=not quiet, echo=echo, launcher=launcher,
                  warn=lambda msg: None)  # the damaged runs are reported once, below
    results, missing, damaged = collect_results(suite, out, with_records=True)  # records: compare's intervals
    for line in damaged:
        warn(f"damaged run left out of the table: {line}")
    if missing:
        echo(f"{len(missing)} run(s) of this suite are not complete yet (other shards?): {', '.join(missing[:5])}"
             + (" ..." if len(missing) > 5 else ""))
    if not results:
        raise ConfigError(f"no complete runs of this suite under {out}; run it without --no-run first")
    return results


def folder_results(out: str, warn: Callable[[str], None]) -> list[dict]:
    """Every complete run under ``out`` (any depth) as a verified run dict with its records, as compare reads it;
    incomplete and damaged runs are reported through ``warn`` and left out."""
    if not Path(out).is_dir():
        raise ConfigError(f"{out} is not a folder; pass the --out of a leaderboard or run (or --suite/--preset to run "
                          f"one)")
    dirs, warnings = find_runs([out])
    for line in warnings:
        warn(line)
    results = []
    for run_dir in dirs:
        try:
            results.append(read_run(run_dir))  # with its records, so cells match compare and findings
        except DataError as exc:
            if "written by schema version" in str(exc):
                raise  # another chainforget's results: the whole table would be wrong, not one run
            warn(f"damaged run left out of the table: {exc}")
    if not results:
        raise ConfigError(f"no complete runs under {out}; finish them (rerun the same command) or pass another "
                          f"folder")
    return results


def parse_columns(text: str | None) -> list[str]:
    """``--columns a,b``: extra metric columns, each a registered metric (plugins included)."""
    names = [c.strip() for c in (text or "").split(",")]
    if text is not None and not all(names):
        raise ConfigError(f"--columns {text!r} has an empty name; give comma-separated metric names, e.g. "
                          f"relative_forgetting,bwt (see `chainforget list metrics`)")
    known = registries("metrics").names()
    for name in names if text else []:
        if name not in known:
            raise unknown_name("metric column", name, known, "registered metrics", cutoff=0.5,
                               see="(see `chainforget list metrics`)")
    return names if text else []


def metrics_command(run_dir: str) -> tuple[str, bool]:
    """Recompute metrics from disk; returns (JSON text, equal to the stored ones?)."""
    stored = load_result(run_dir)
    recomputed = recompute_run(run_dir)
    keys = ("score_matrix", "group_score_matrix", "group_sizes", "metrics")
    same = all(json.dumps(stored.get(k), sort_keys=True) == json.dumps(recomputed.get(k), sort_keys=True)
               for k in keys)
    text = json.dumps({"run_id": stored.get("run_id"), "identical_to_stored": same,
                       **{k: recomputed.get(k) for k in keys}}, indent=2, sort_keys=True)
    return text, same
