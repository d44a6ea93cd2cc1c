"""``leaderboard --launcher ray``: one run per Ray task, results landing in the same runs directory.

Ray does the scheduling (a local instance, or the cluster named by ``RAY_ADDRESS``); chainforget only submits runs.
Shared chain prefixes stay safe because the prefix store and each run directory are guarded by file locks, so two
workers never train the same prefix or run at once (the runs directory must be on a shared filesystem for a
multi-node cluster).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from chainforget.benchmark.runner import run
from chainforget.config.spec import RunSpec
from chainforget.engine.distributed import launched_world_size
from chainforget.errors import ChainforgetError, ConfigError
from chainforget.launchers.base import Echo


def _run_one(spec_dict: dict, out_dir: str, metric_options: dict, threads: int) -> str:
    import torch

    torch.set_num_threads(threads)  # as many as Ray gave this task: oversubscribed cores slow torch ~10x

    result = run(RunSpec.from_dict(spec_dict), out_dir, resume=True, progress=False, metric_options=metric_options,
                 wait=True)
    return result["run_id"]


def run_on_ray(specs: Sequence[Any], out_dir: str | Path, *, metric_options: Mapping[str, Any] | None = None,
               echo: Echo | None = None, num_cpus_per_run: float = 1.0) -> list[str]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--launcher ray needs Ray: pip install 'chainforget[ray]' (or use --launcher local)") from None
    echo = echo or (lambda msg: None)
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    try:
        task = ray.remote(num_cpus=num_cpus_per_run)(_run_one)
        out = str(Path(out_dir).resolve())
        threads = max(1, int(num_cpus_per_run))
        pending = {task.remote(spec.to_dict(), out, dict(metric_options or {}), threads): spec for spec in specs}
        echo(f"submitted {len(pending)} runs to Ray ({ray.cluster_resources().get('CPU', 0):.0f} CPUs)")
        done_ids = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            try:
                done_ids.append(ray.get(ready[0]))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.as_instanceof_cause()
                if isinstance(cause, ChainforgetError):  # a one-line user error raised in the worker
                    raise type(cause)(str(cause)) from None
                raise
            echo(f"[ray] finished {spec.strategy} on {' -> '.join(spec.chain)} (seed {spec.seed})")
        return done_ids
    finally:
        if started_here:
            ray.shutdown()


class RayLauncher:
    description = "one run per Ray task on a local instance or the cluster in RAY_ADDRESS (chainforget[ray])"

    def check(self) -> None:
        if launched_world_size() > 1:
            raise ConfigError("--launcher ray starts its own workers; run it as a single process, not under "
                              "`accelerate launch` (each Ray worker can use its GPUs)")

    def launch(self, specs: Sequence[Any], out_dir: str | Path, *, metric_options: Mapping[str, Any],
               progress: bool, echo: Echo) -> None:
        run_on_ray(specs, out_dir, metric_options=metric_options, echo=echo)
