"""The launcher protocol: how the runs of a suite get executed. A new launcher (Slurm, Kubernetes...) is one file
that implements it plus one registration line (hook ``chainforget_register_launchers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

Echo = Callable[[str], None]


class Launcher(Protocol):
    """Executes runs; ``launch`` returns when every given run is complete, or raises a one-line error.

    Runs are idempotent and locked (a complete run costs nothing, an interrupted one resumes, two processes never
    train the same run or prefix), so a launcher only has to start ``chainforget.benchmark.runner.run`` for each spec
    with ``resume=True, wait=True`` somewhere that sees ``out_dir``.
    """

    description: str

    def check(self) -> None:
        """Refuse, before any work, a context this launcher cannot work in (a one-line ``ConfigError``)."""

    def launch(self, specs: Sequence[Any], out_dir: str | Path, *, metric_options: Mapping[str, Any],
               progress: bool, echo: Echo) -> None:
        """Run every spec (complete runs are skipped by the runner itself)."""
