"""``chainforget sharpness RUN_DIR``: lambda_max after every stage of a finished run, from its checkpoints."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from chainforget.errors import DataError


def stage_sharpness(run_dir: str | Path, *, probe_size: int = 8, max_iter: int = 50, tol: float = 1e-3) -> list[dict]:
    """One row per trained stage: the stage's weights (from the prefix store) on a probe of its own training data."""
    from chainforget.benchmark.atomic import read_json
    from chainforget.benchmark.prefix import PrefixStore
    from chainforget.benchmark.results import load_result
    from chainforget.benchmark.runner import plan_stages, prepare
    from chainforget.benchmark.spec import RunSpec
    from chainforget.engine.training import apply_finetune
    from chainforget.metrics.sharpness import model_sharpness

    run_dir = Path(run_dir)
    result = load_result(run_dir)
    prep = prepare(RunSpec.from_dict(result["spec"]))
    train_examples = {n: prep.tasks[n].train_examples(prep.spec.limit_train_for(n)) for n in prep.spec.chain}
    stages, _ = plan_stages(prep, train_examples)
    model, tokenizer = prep.model_spec.load()
    model = apply_finetune(model, prep.train_cfg)
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
                                                  seed=prep.spec.seed, max_iter=max_iter, tol=tol)
        rows.append({"step": k, "stage": stage.label, "lambda_max": value, "iterations": iters,
                     "converged": converged})
    return rows


def sharpness_command(run_dir: str, **kw) -> str:
    rows = stage_sharpness(run_dir, **kw)
    return tabulate([[r["step"], r["stage"], f"{r['lambda_max']:.4g}", r["iterations"], r["converged"]] for r in rows],
                    headers=["step", "stage", "lambda_max", "iterations", "converged"], tablefmt="simple")
