"""The ``chainforget`` command line. Commands parse options, call one library function and render its result.

Heavy libraries (torch, transformers, avalanche) are imported inside commands only, so ``--help`` and ``list``
stay fast.
"""

from __future__ import annotations

import sys

import click

from chainforget import __version__
from chainforget.errors import ChainforgetError

KIND_CHOICES = ["tasks", "strategies", "metrics", "models", "presets"]


class _Group(click.Group):
    """Turns ChainforgetError into one line and exit status 2 (``--debug`` shows the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ChainforgetError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command (with --resume for `run`) to continue", err=True)
            ctx.exit(130)


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
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@main.command("list")
@click.argument("kind", required=False, type=click.Choice(KIND_CHOICES))
@click.option("--verbose", "-v", is_flag=True, help="Also show hyper-parameters (strategies) and details.")
def list_cmd(kind: str | None, verbose: bool) -> None:
    """List registered tasks, strategies, metrics, models and presets (all kinds when KIND is omitted)."""
    from chainforget.report.listing import render_registry

    kinds = [kind] if kind else KIND_CHOICES
    for i, k in enumerate(kinds):
        if i:
            click.echo()
        click.echo(render_registry(k, verbose=verbose))


def run_main() -> None:  # pragma: no cover - console entry point convenience
    sys.exit(main())
