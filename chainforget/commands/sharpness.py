"""``chainforget sharpness RUN_DIR``: lambda_max after every stage of a finished run, from its checkpoints."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from chainforget.benchmark.plan import prepare_run, resolve_run
from chainforget.config.defaults import SHARPNESS_DEFAULTS
from chainforget.config.ranges import check_number
from chainforget.config.spec import RunSpec
from chainforget.engine import precision
from chainforget.engine.models import load_model
from chainforget.engine.training import apply_finetune
from chainforget.errors import DataError
from chainforget.metrics.sharpness import model_sharpness
from chainforget.store.checkpoint import read_checkpoint
from chainforget.store.layout import RunLayout
from chainforget.store.prefix import PrefixStore
from chainforget.store.results import REDO, load_result


def stage_sharpness(run_dir: str | Path, *, probe_size: int = SHARPNESS_DEFAULTS["batch_size"],
                    max_iter: int = SHARPNESS_DEFAULTS["max_iter"],
                    tol: float = SHARPNESS_DEFAULTS["tol"]) -> list[dict]:
    """One row per trained stage: the stage's weights (from the prefix store) on a probe of its own training data."""
    check_number("probe_size", probe_size)
    check_number("max_iter", max_iter)
    check_number("tol", tol)
    run_dir = Path(run_dir)
    result = load_result(run_dir)
    resolved = resolve_run(RunSpec.from_dict(result["spec"]))
    spec = resolved.spec
    prec = precision.choose_precision(spec.dtype, resolved.train_cfg.finetune, resolved.train_cfg.mixed_precision)
    model, tokenizer = load_model(resolved.model_spec, dtype=prec.torch_weights,
                                  trust_remote_code=spec.trust_remote_code)
    stages = prepare_run(resolved, tokenizer).stages  # the run's own stages: the probe reads what they trained on
    model = apply_finetune(model, resolved.train_cfg)
    store, layout = PrefixStore(run_dir.parent), RunLayout(run_dir)
    fix = f"{REDO} (damaged prefix entries are recomputed), then rerun sharpness"
    rows = []
    for k, stage in enumerate(stages, start=1):
        ckpt = layout.checkpoint(k)
        if not ckpt.state.exists():
            raise DataError(f"{ckpt.state} is missing; the run's checkpoints were deleted: {fix}")
        state, problem = read_checkpoint(ckpt)
        if problem is not None:
            raise DataError(f"checkpoint {ckpt.root} of stage {k} is damaged ({problem}); {fix}")
        key = state["prefix"]
        problem = store.damage(key)
        if problem is not None:
            raise DataError(f"the stored weights {store.path(key)} of stage {k} are damaged or missing ({problem}); "
                            f"{fix}")
        store.load_weights(key, model)
        value, iters, converged = model_sharpness(model, tokenizer, stage.examples, batch_size=probe_size,
                                                  seed=resolved.spec.seed, max_iter=max_iter, tol=tol)
        rows.append({"stage_index": k, "stage": stage.label, "lambda_max": value, "iterations": iters,
                     "converged": converged})
    return rows


def sharpness_command(run_dir: str, **kw) -> str:
    rows = stage_sharpness(run_dir, **kw)
    return tabulate([[r["stage_index"], r["stage"], f"{r['lambda_max']:.4g}", r["iterations"], r["converged"]] for r in rows],
                    headers=["#", "stage", "lambda_max", "iterations", "converged"], tablefmt="simple")
