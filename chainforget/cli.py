"""The ``chainforget`` command line. Commands parse options, call one library function and render its result.

Heavy libraries (torch, transformers, avalanche) are imported inside commands only, so ``--help`` and ``list``
stay fast.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from chainforget import __version__
from chainforget.config.defaults import FINDINGS_FORMATS, METRIC_OPTION_DEFAULTS, SHARPNESS_DEFAULTS, TABLE_FORMATS
from chainforget.config.spec import DTYPES
from chainforget.errors import ChainforgetError, brief

KIND_CHOICES = ["tasks", "strategies", "metrics", "models", "presets", "launchers"]


def _main_rank() -> bool:
    """Under ``accelerate launch`` every process runs the command; only rank 0 prints (tables, errors, status)."""
    from chainforget.engine.distributed import is_main_process

    return is_main_process()


def _say(text: str = "", err: bool = False) -> None:
    if _main_rank():
        click.echo(text, err=err)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, Kubernetes and `kill` send) raised as an interrupt, so it stops like Ctrl-C does."""


def _on_sigterm(signum, frame):
    # the first SIGTERM starts the shutdown; later ones (a scheduler repeating itself) are ignored, so the shutdown
    # still removes its temporary files and ends with exit status 143 and its line, not killed half-way by the signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


class _Group(click.Group):
    """Turns user errors into one line and exit status 2 (``--debug`` shows the traceback): ChainforgetError, a bad
    flag (click's usage errors) and OSError (full disk, permissions: the environment, not a bug). Ctrl-C exits 130
    and SIGTERM 143, each with a line saying how to continue; writes in flight remove their temporary files. Any
    other exception is a bug: one line asking for the --debug traceback, exit status 1."""

    def invoke(self, ctx):
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread (an embedding application): leave its handler alone
            previous = None
        try:
            return self._invoke(ctx)
        finally:
            if previous is not None and signal.getsignal(signal.SIGTERM) is _on_sigterm:  # ignored once terminated
                signal.signal(signal.SIGTERM, previous)

    def _invoke(self, ctx):
        debug = lambda: bool(ctx.obj and ctx.obj.get("debug"))  # noqa: E731
        try:
            return super().invoke(ctx)
        except ChainforgetError as exc:
            if debug():
                raise
            _say(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            if debug():
                raise
            where = exc.ctx.command_path if exc.ctx else ctx.command_path
            message = " ".join(exc.format_message().split()).rstrip(".")
            message = message if len(message) <= 500 else message[:497] + "..."  # a hostile value stays one line
            _say(f"error: {message}; see `{where} --help`", err=True)
            ctx.exit(2)
        except OSError as exc:
            if debug():
                raise
            from chainforget.store.atomic import describe_os_error

            _say(f"error: {describe_os_error(exc)}", err=True)
            ctx.exit(2)
        except Terminated:
            _say("terminated (SIGTERM); rerun the same command (with --resume for `run`) to continue", err=True)
            ctx.exit(143)
        except KeyboardInterrupt:
            _say("interrupted; rerun the same command (with --resume for `run`) to continue", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback without --debug
            if debug():
                raise
            _say(f"error: internal error ({type(exc).__name__}: {brief(str(exc), 160)}); this is a bug in "
                 f"chainforget: rerun with --debug and report the traceback", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, "--version", prog_name="chainforget")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """chainforget: measure how chained fine-tuning makes language models forget safety tuning, how unevenly
    that forgetting falls on demographic groups, and how well mitigation strategies repair it.

    \b
    Typical use:
      chainforget list tasks                      what can be benchmarked
      chainforget run --chain bbq,gsm8k --strategy replay
      chainforget leaderboard                     the quick preset on SmolLM2-135M
      chainforget compare runs/a runs/b           mitigation vs baseline, with CIs
      chainforget findings runs/                  the paper's three questions, with detectable effects
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@main.command("list")
@click.argument("kind", required=False, type=click.Choice(KIND_CHOICES))
@click.option("--verbose", "-v", is_flag=True, help="Also show hyper-parameters (strategies) and details.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text tables, or JSON with typed fields (schema chainforget.list/1, docs/outputs.md).")
def list_cmd(kind: str | None, verbose: bool, fmt: str) -> None:
    """List registered tasks, strategies, metrics, models and presets (all kinds when KIND is omitted)."""
    from chainforget.report.listing import render_registries_json, render_registry

    kinds = [kind] if kind else KIND_CHOICES
    if fmt == "json":
        click.echo(render_registries_json(kinds), nl=False)
        return
    for i, k in enumerate(kinds):
        if i:
            click.echo()
        click.echo(render_registry(k, verbose=verbose))


def _echo(quiet: bool):
    return (lambda msg: None) if quiet or not _main_rank() else (lambda msg: click.echo(msg, err=True))


def _train_flag(setting: dict):
    """One training flag from a ``TrainConfig`` field (``engine.training.fields_help``): its flag, type, choices,
    help and default; None when not given (the engine's default applies)."""
    default = setting["default"]
    shown = "no cap" if default is None else ("on" if default else "off") if isinstance(default, bool) else default
    text = f"{setting['help'][0].upper()}{setting['help'][1:]}.  [default: {shown}]"
    if setting["type"] == "bool":
        name = setting["flag"][2:]
        return click.option(f"--{name}/--no-{name}", setting["name"], default=None, help=text)
    kind = click.Choice(list(setting["choices"])) if setting["choices"] else \
        {"int": int, "float": float, "str": str}[setting["type"]]
    return click.option(setting["flag"], setting["name"], type=kind, default=None, help=text)


def train_options(func):
    """One flag per training setting of ``TrainConfig`` (the seed is the run's ``--seed``)."""
    from chainforget.engine.training import fields_help

    for setting in reversed([s for s in fields_help() if s["name"] != "seed"]):
        func = _train_flag(setting)(func)
    return func


def _split_train(options: dict) -> tuple[dict, dict]:
    """Flags -> (run settings by RunSpec name, training settings the user passed)."""
    from chainforget.engine.training import fields_help

    names = {s["name"] for s in fields_help() if s["name"] != "seed"}  # --seed is the run's seed, not train's
    train = {k: v for k, v in options.items() if k in names and v is not None}
    return {k: v for k, v in options.items() if k not in names}, train


class _RunCommand(click.Command):
    """``run --help`` ends with every strategy's hyper-parameters (read from the registry, torch-free)."""

    def format_epilog(self, ctx, formatter):
        from chainforget.plugins import registries

        with formatter.section("Strategy hyper-parameters (--set STRATEGY.PARAM=VALUE)"):
            rows = []
            for entry in registries("strategies"):
                for param in getattr(entry.obj, "params", ()):
                    rows.append((f"{entry.name}.{param.name}", param.describe().split(": ", 1)[0].split("=", 1)[1]
                                 + ": " + param.help))
                if not getattr(entry.obj, "params", ()):
                    rows.append((entry.name, "(no hyper-parameters)"))
            formatter.write_dl(rows)


@main.command("run", cls=_RunCommand)
@click.option("--chain", help="Comma-separated tasks in training order, e.g. bbq,gsm8k (or a task file path).")
@click.option("--strategy", default=None, help="Strategy name (see `chainforget list strategies`).  [default: naive]")
@click.option("--model", default=None,
              help="Registered model name, a local Hugging Face model directory, or hf:ORG/NAME[@REVISION] (Hub "
                   "cache; HF_HUB_OFFLINE=1 uses the cache only).  [default: smollm2-135m]")
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Weights/compute dtype: auto = float32 on CPU, bfloat16 on a GPU that supports it; LoRA keeps "
                   "float32 adapters, full fine-tuning float32 master weights under autocast.  [default: auto]")
@click.option("--chat-template/--no-chat-template", default=None,
              help="Wrap every prompt in the tokenizer's chat template (training and scoring).  [default: off]")
@click.option("--trust-remote-code", is_flag=True, default=None,
              help="Let the model directory's own Python code run (only for code you trust).")
@click.option("--seed", type=int, default=None, help="Random seed.  [default: 0]")
@click.option("--eval-tasks", default=None, help="Extra tasks evaluated after every stage (comma-separated).")
@click.option("--limit-train", type=int, default=None, help="Training examples per task (stratified by group).")
@click.option("--limit-eval", type=int, default=None, help="Evaluation examples per task (stratified by group).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Strategy or training hyper-parameter, e.g. replay.fraction=0.05 or train.weight_decay=0.01.")
@click.option("--config", "config_path", type=click.Path(), default=None,
              help="YAML file with run settings (keys as in `chainforget run`); flags override it.")
@click.option("--sharpness", is_flag=True, default=None, help="Compute the Hessian lambda_max after every stage.")
@click.option("--out", default="runs", show_default=True, help="Directory that holds run directories.")
@click.option("--resume", is_flag=True, help="Continue from the run's own last checkpoint (plugin states included).")
@click.option("--log", "log", default="", help="Avalanche loggers: comma-separated text,csv,tensorboard,wandb.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
@click.option("--dry-run", is_flag=True, help="Print the stages to train and reuse, the examples and tokens, and "
                                              "an estimated wall time from a short probe; train and write nothing.")
@train_options
def run_cmd(sets, config_path, out, resume, log, quiet, dry_run, **flags):
    """Train one chain with one strategy, evaluating every task after every stage; writes runs/<run-id>/."""
    from chainforget.commands.runs import build_run_spec, run_command

    settings, train = _split_train(flags)  # run settings by their RunSpec names, and the training flags given
    if dry_run:
        from chainforget.benchmark.dryrun import dry_run as plan_only

        spec, _ = build_run_spec(sets=sets, config_path=config_path, train=train, **settings)
        plan_only([spec], out, echo=_say)
        return

    result = run_command(sets=sets, config_path=config_path, train=train, out=out, resume=resume, log=log,
                         quiet=quiet, echo=_echo(quiet), **settings)
    from chainforget.report.summary import run_summary

    _say(run_summary({**result, "run_dir": os.path.join(out, result["run_id"])}))  # "results: <its folder>"


@main.command("leaderboard")
@click.argument("folder", required=False, type=click.Path())
@click.option("--preset", default=None, help="Named suite (see `chainforget list presets`).  [default: quick]")
@click.option("--suite", "suite_path", type=click.Path(), default=None, help="A YAML suite file (overrides --preset).")
@click.option("--out", default="runs", show_default=True, help="Directory that holds run directories.")
@click.option("--shard", default=None, metavar="I/N", help="Run only the I-th of N deterministic slices of the grid.")
@click.option("--max-runs", type=int, default=None, metavar="N",
              help="Refuse a suite that expands to more than N runs, before expanding it (a guard against a mistyped grid).  [default: 10000]")
@click.option("--launcher", default="local", show_default=True,
              help="Where runs execute: local (this process), ray (one run per Ray task; needs chainforget[ray]) "
                   "or a plugin's launcher (see `chainforget list launchers`).")
@click.option("--no-run", is_flag=True, help="Only render the table from runs already complete.")
@click.option("--sort", "sort_key", default=None, help="Column to sort rows by.")
@click.option("--ascending", is_flag=True, help="Sort ascending instead of descending.")
@click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS),
              default="github", show_default=True, help="Table format.")
@click.option("--columns", default=None, metavar="METRIC,...",
              help="Extra columns: registered metrics (plugins included), one per task, e.g. relative_forgetting.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
@click.option("--dry-run", is_flag=True, help="Print the stages to train and reuse, the examples and tokens, and "
                                              "an estimated wall time from a short probe; train and write nothing.")
def leaderboard_cmd(folder, preset, suite_path, out, shard, max_runs, launcher, no_run, sort_key, ascending, fmt, columns,
                    quiet, dry_run):
    """Run a grid of strategies x chain orders x seeds, then print the leaderboard table.

    With a FOLDER, or --no-run without --suite/--preset, only tabulate the complete runs already under that folder
    (--out): no suite file needed, e.g. `chainforget leaderboard runs/`.
    """
    from chainforget.commands.runs import DEFAULT_PRESET, leaderboard_command

    if folder is not None:
        if out not in ("runs", folder):
            raise click.UsageError(f"FOLDER {folder!r} and --out {out!r} disagree; give one of them")
        out, no_run = folder, True

    if dry_run:
        from chainforget.benchmark.dryrun import dry_run as plan_only
        from chainforget.benchmark.suite_runner import suite_specs
        from chainforget.config.suite import parse_shard, resolve_suite

        suite = resolve_suite(suite_path or preset or DEFAULT_PRESET, max_runs)
        plan_only(suite_specs(suite, parse_shard(shard)), out, echo=_say)
        return

    _say(leaderboard_command(preset=preset, suite_path=suite_path, out=out, shard=shard, launcher=launcher,
                             no_run=no_run, sort_key=sort_key, ascending=ascending, fmt=fmt, quiet=quiet,
                             echo=_echo(quiet), warn=lambda msg: _say(f"warning: {msg}", err=True),
                             columns=columns, max_runs=max_runs))


@main.command("metrics")
@click.argument("run_dir", type=click.Path())
@click.option("--check", is_flag=True, help="Exit 1 if the recomputed metrics differ from result.json.")
def metrics_cmd(run_dir, check):
    """Recompute every metric of a finished run from its stored records (no model needed)."""
    from chainforget.commands.runs import metrics_command

    text, same = metrics_command(run_dir)
    click.echo(text)
    if check and not same:
        raise SystemExit(1)


@main.command("compare")
@click.argument("run_sets", nargs=-1, required=True, metavar="[LABEL=]PATH_OR_GLOB...")
@click.option("--baseline", default=None, help="Label of the run set the others are compared with "
              "(default: the first set, or 'naive' with --by strategy).")
@click.option("--by", "by", type=click.Choice(["set", "strategy"]), default="set", show_default=True,
              help="Group runs by the sets given on the command line, or by strategy across all runs found.")
@click.option("--metric", "metrics", multiple=True,
              help="Metric to compare (repeatable): forgetting, biased_forgetting, drift, final, or any registered "
                   "metric (plugins included; see `chainforget list metrics`).  [default: the first four]")
@click.option("--n-boot", type=int, default=METRIC_OPTION_DEFAULTS["n_boot"], show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS),
              default="github", show_default=True, help="Table format.")
def compare_cmd(run_sets, baseline, by, metrics, n_boot, seed, fmt):
    """Compare sets of runs: each method's value with a CI and its difference to a baseline with a paired
    bootstrap CI over seeds and examples; '*' marks a difference whose CI excludes 0.

    \b
    Examples:
      chainforget compare naive=runs/*_naive_* replay=runs/*_replay_*
      chainforget compare runs/ --by strategy --baseline naive
    """
    from chainforget.commands.reports import compare_command

    text, warnings = compare_command(run_sets, baseline=baseline, by=by, metrics=metrics, n_boot=n_boot,
                                     seed=seed, fmt=fmt)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(text)


@main.command("plot")
@click.argument("paths", nargs=-1, required=True, metavar="PATH_OR_GLOB...")
@click.option("--out", default="figures", show_default=True, help="Directory for the PNG and PDF files.")
@click.option("--metric", "metrics", multiple=True,
              help="Also draw this registered metric (repeatable; plugins included) per strategy and chain.")
def plot_cmd(paths, out, metrics):
    """Draw the figures: score-matrix heatmaps, per-group forgetting bars with CIs, order asymmetry,
    safety-vs-capability Pareto scatter, sharpness vs forgetting."""
    from chainforget.commands.reports import plot_command

    files, warnings = plot_command(paths, out, metrics)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"wrote {len(files)} files to {out}/")
    for f in files:
        click.echo(f"  {f}")


@main.command("findings")
@click.argument("paths", nargs=-1, required=True, metavar="PATH_OR_GLOB...")
@click.option("--metric", default="relative_forgetting", show_default=True,
              help="Unit-free per-task metric for the order-asymmetry question (any registered one, plugins "
                   "included).")
@click.option("--baseline", default="naive", show_default=True, help="Strategy the mitigations are compared with.")
@click.option("--n-boot", type=int, default=METRIC_OPTION_DEFAULTS["n_boot"], show_default=True,
              help="Bootstrap resamples and permutations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--min-group-size", type=int, default=METRIC_OPTION_DEFAULTS["min_group_size"], show_default=True,
              help="Groups with fewer eval examples are left out of the spread (several seeds).")
@click.option("--format", "fmt", type=click.Choice(FINDINGS_FORMATS), default="text", show_default=True,
              help="Output: text, JSON, or one self-contained HTML page (tables and figures, no server needed).")
def findings_cmd(paths, metric, baseline, n_boot, seed, min_group_size, fmt):
    """Answer the paper's three questions from finished runs: (1) order asymmetry, (2) group dependence,
    (3) mitigation vs the baseline with the Pareto set; each with its minimum detectable effect."""
    from chainforget.commands.reports import findings_command

    text, warnings = findings_command(paths, metric=metric, baseline=baseline, n_boot=n_boot, seed=seed,
                                      min_group_size=min_group_size, fmt=fmt)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(text, nl=False)


@main.command("power")
@click.argument("paths", nargs=-1, required=True, metavar="PILOT_RUNS...")
@click.option("--effect", "effects", multiple=True, metavar="QUESTION=SIZE",
              help="Effect to detect, per question (repeatable or space-separated): asymmetry (relative forgetting "
                   "difference), spread (between-group SD of forgetting), mitigation (forgetting difference vs the "
                   "baseline).  [default: asymmetry=0.5 spread=0.05 mitigation=0.03]")
@click.option("--power", "target_power", type=float, default=0.8, show_default=True, help="Power to reach.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Two-sided test level.")
@click.option("--baseline", default="naive", show_default=True, help="Strategy the mitigations are compared with.")
@click.option("--max-seeds", type=int, default=10, show_default=True, help="Most seeds to consider.")
@click.option("--seeds", type=int, default=None, help="Plan for exactly this many seeds (2 or more).")
@click.option("--min-group-size", type=int, default=METRIC_OPTION_DEFAULTS["min_group_size"], show_default=True,
              help="Groups with fewer pilot examples are left out of the spread.")
@click.option("--seed-sd", type=float, default=None,
              help="Training randomness (SD over seeds) of a mean, replacing the pilot's estimate (needed for a "
                   "one-seed pilot).")
@click.option("--seed-group-sd", type=float, default=None,
              help="Seed x group SD of a group's mean, replacing the pilot's estimate.")
@click.option("--preset", default="quick", show_default=True,
              help="The design to scale (chains, strategies, training): a preset name.")
@click.option("--suite", "suite_path", type=click.Path(), default=None, help="The design to scale as a YAML suite "
              "file (overrides --preset).")
@click.option("--write-suite", type=click.Path(), default=None, metavar="FILE",
              help="Write the planned study as a suite file for `chainforget leaderboard --suite FILE`.")
@click.option("--no-cost", is_flag=True, help="Skip the dry-run cost estimate (no model is loaded).")
@click.option("--gpu-train-tps", type=float, default=5000.0, show_default=True,
              help="ASSUMED GPU training throughput (token positions/s) for the GPU cost line.")
@click.option("--gpu-score-tps", type=float, default=12500.0, show_default=True,
              help="ASSUMED GPU scoring throughput (token positions/s) for the GPU cost line.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
def power_cmd(paths, effects, target_power, alpha, baseline, max_seeds, seeds, min_group_size, seed_sd,
              seed_group_sd, preset, suite_path, write_suite, no_cost, gpu_train_tps, gpu_score_tps, fmt):
    """Plan a study from pilot runs: the evaluation examples per group and the seeds each of the paper's three
    questions needs to detect a stated effect at a stated power, and the study's cost (dry-run estimate here; a
    GPU's is an assumption until measured).

    \b
    Examples:
      chainforget power runs-quick-seeds --effect spread=0.05 mitigation=0.03 asymmetry=0.5
      chainforget power runs-quick-seeds --seeds 5 --write-suite planned.yaml --format json
    """
    from chainforget.commands.power import power_command

    text, warnings = power_command(paths, effects=effects, power=target_power, alpha=alpha, baseline=baseline,
                                   max_seeds=max_seeds, seeds=seeds, min_group_size=min_group_size,
                                   seed_sd=seed_sd, seed_group_sd=seed_group_sd, base=suite_path or preset,
                                   write_suite=write_suite, cost=not no_cost, gpu_train_tps=gpu_train_tps,
                                   gpu_score_tps=gpu_score_tps, fmt=fmt)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(text, nl=False)


@main.command("sharpness")
@click.argument("run_dir", type=click.Path())
@click.option("--probe-size", type=int, default=SHARPNESS_DEFAULTS["batch_size"], show_default=True,
              help="Examples in the seeded probe batch.")
@click.option("--max-iter", type=int, default=SHARPNESS_DEFAULTS["max_iter"], show_default=True,
              help="Power-iteration cap.")
@click.option("--tol", type=float, default=SHARPNESS_DEFAULTS["tol"], show_default=True, help="Relative tolerance.")
def sharpness_cmd(run_dir, probe_size, max_iter, tol):
    """Compute the Hessian lambda_max after every stage of a finished run from its checkpoints."""
    from chainforget.commands.sharpness import sharpness_command

    click.echo(sharpness_command(run_dir, probe_size=probe_size, max_iter=max_iter, tol=tol))


def run_main() -> None:  # pragma: no cover - console entry point convenience
    sys.exit(main())
