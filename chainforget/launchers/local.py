"""The default launcher: the runs of a suite one after another, in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from chainforget.benchmark.runner import run
from chainforget.launchers.base import Echo


class LocalLauncher:
    description = "one run after another in this process (or across the processes of `accelerate launch`)"

    def check(self) -> None:
        return None

    def launch(self, specs: Sequence[Any], out_dir: str | Path, *, metric_options: Mapping[str, Any],
               progress: bool, echo: Echo) -> None:
        for i, spec in enumerate(specs, 1):
            echo(f"[{i}/{len(specs)}] {spec.strategy} on {' -> '.join(spec.chain)} (seed {spec.seed})")
            run(spec, out_dir, resume=True, progress=progress, echo=echo, metric_options=dict(metric_options),
                wait=True)
