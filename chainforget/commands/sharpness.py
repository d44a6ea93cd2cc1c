"""``chainforget sharpness RUN_DIR``: lambda_max after every stage of a finished run, from its checkpoints."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from chainforget.benchmark.plan import plan_stages, resolve_run
from chainforget.config.defaults import SHARPNESS_DEFAULTS
from chainforget.config.spec import RunSpec
from chainforget.engine.training import apply_finetune
from chainforget.errors import DataError
from chainforget.metrics.sharpness import model_sharpness
from chainforget.store.atomic import read_json
from chainforget.store.prefix import PrefixStore
from chainforget.store.results import load_result


def stage_sharpness(run_dir: str | Path, *, probe_size: int = SHARPNESS_DEFAULTS["batch_size"],
                    max_iter: int = SHARPNESS_DEFAULTS["max_iter"], tol: float = SHARPNESS_DEFAULTS["tol"]) -> list[dict]:
    """One row per trained stage: the stage's weights (from the prefix store) on a probe of its own training data."""
    run_dir = Path(run_dir)
    result = load_result(run_dir)
    resolved = resolve_run(RunSpec.from_dict(result["spec"]))
    train_examples = {n: resolved.tasks[n].train_examples(resolved.spec.limit_train_for(n)) for n in resolved.spec.chain}
    stages, _ = plan_stages(resolved, train_examples)
    model, tokenizer = resolved.model_spec.load()
    model = apply_finetune(model, resolved.train_cfg)
    store = PrefixStore(run_dir.parent)
    rows = []
    for k, stage in enumerate(stages, start=1):
        state_file = run_dir / "checkpoints" / f"step-{k}" / "state.json"
        if not state_file.exists():
            raise DataError(f"{state_file} is missing; the run's checkpoints were deleted, rerun it to recreate them")
        key = read_json(state_file)["prefix"]
        if not store.complete(key):
            raise DataError(f"the checkpoint {store.path(key)} of stage {k} is missing; rerun the run to recreate it")
        store.load_weights(key, model)
        value, iters, converged = model_sharpness(model, tokenizer, stage.examples, batch_size=probe_size,
                                                  seed=resolved.spec.seed, max_iter=max_iter, tol=tol)
        rows.append({"step": k, "stage": stage.label, "lambda_max": value, "iterations": iters,
                     "converged": converged})
    return rows


def sharpness_command(run_dir: str, **kw) -> str:
    rows = stage_sharpness(run_dir, **kw)
    return tabulate([[r["step"], r["stage"], f"{r['lambda_max']:.4g}", r["iterations"], r["converged"]] for r in rows],
                    headers=["step", "stage", "lambda_max", "iterations", "converged"], tablefmt="simple")
