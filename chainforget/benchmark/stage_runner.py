"""Train or restore one stage of a run: the model, the template and the prefix store meet here."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from chainforget.benchmark.plan import prepare_run, seed_everything
from chainforget.benchmark.streams import experience_from_examples
from chainforget.config.defaults import SHARPNESS_DEFAULTS
from chainforget.engine import precision
from chainforget.engine.distributed import Ranks
from chainforget.engine.models import load_model
from chainforget.metrics.sharpness import model_sharpness
from chainforget.store.checkpoint import checkpoint_problem, write_checkpoint
from chainforget.store.layout import RunLayout
from chainforget.store.prefix import PrefixStore
from chainforget.store.state import load_plugin_states, save_plugin_states
from chainforget.strategies.base import check_callbacks
from chainforget.testing import faults


class StageRunner:
    """Holds the live model and template of one run and advances it stage by stage."""

    def __init__(self, resolved, run_dir: Path, prefix: PrefixStore, *, progress: bool, echo, loggers=(), ranks=None):
        from chainforget.engine.template import CausalLMTemplate, make_loggers

        self.resolved, self.run_dir, self.prefix, self.echo, self.progress = resolved, run_dir, prefix, echo, progress
        self.layout = RunLayout(run_dir)
        # Under a launch every rank trains and scores its share; the main rank alone locks, decides and writes
        # (decisions reach the others through ranks.on_main), non-main ranks return no records.
        self.ranks = ranks or Ranks()
        spec = resolved.spec
        # what this process did: seconds, reused stages and the tokens its passes processed per stage
        # (engine.counts; the dry run plans these same numbers)
        self.tokens: dict[str, dict[str, dict[str, int]]] = {"train": {}, "score": {}}
        self.timings: dict[str, Any] = {"train_seconds": {}, "eval_seconds": {}, "reused": {}, "tokens": self.tokens}
        self.sharpness: list[dict[str, Any] | None] = [None]
        prec = precision.choose_precision(spec.dtype, resolved.train_cfg.finetune, resolved.train_cfg.mixed_precision)
        with self.ranks.main_first():  # a first use converts the model into the cache once
            model, self.tokenizer = load_model(resolved.model_spec, dtype=prec.torch_weights,
                                               trust_remote_code=spec.trust_remote_code)
        self.prepared = prepare_run(resolved, self.tokenizer)  # the run's tasks, benchmark, stages and keys, once
        resolved = self.resolved = self.prepared.resolved
        self.bench, self.stages = self.prepared.bench, self.prepared.stages
        self.plugins = self.prepared.plugins()
        check_callbacks(self.plugins, resolved.strategy.name)  # before*/after* names Avalanche would misread
        seed_everything(spec.seed, 0)  # LoRA adapters are initialised inside the template
        self.template = CausalLMTemplate(
            model, self.tokenizer, precision.train_config(resolved.train_cfg, prec), plugins=self.plugins,
            eval_batch_size=spec.eval_batch_size,
            progress=progress, task_specs={n: t.spec for n, t in resolved.tasks.items()},
            loggers=make_loggers(loggers, self.layout.logs) if loggers else ())
        self.template.use_benchmark(self.bench)
        self.model = self.template.model

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, stage: int) -> list[dict]:
        """Records of every eval task after stage ``stage`` (0 = the base model); stored under their ``step`` key."""
        faults.point("eval", str(stage))
        t = time.time()
        self.template.eval(self.bench.test_stream, stage=stage)
        self.tokens["score"][str(stage)] = self.template.eval_count.to_dict()
        records = []
        for name in self.bench.eval_task_names:
            for rec in self.template.eval_records[name]:
                records.append({**rec, "step": stage})
        self.timings["eval_seconds"][str(stage)] = round(time.time() - t, 3)
        return records

    def base_records(self, key: str) -> list[dict]:
        ranks = self.ranks
        with ranks.main_holds(self.prefix.lock(key)):
            if ranks.on_main(lambda: self.prefix.usable(key, self.echo)):  # verified; a damaged entry is removed
                self.timings["reused"]["0"] = key
                return self.prefix.load_records(key) if ranks.is_main else []
            self.echo(f"evaluating the base model on {', '.join(self.bench.eval_task_names)}")
            records = self.evaluate(0)
            if ranks.is_main:
                self.prefix.save(key, self.model, records, {"stage": "base"}, with_weights=False)
            return records

    # -- training ---------------------------------------------------------------------------------------------
    def run_stage(self, k: int, stage, key: str, *, resume: bool) -> list[dict]:
        """Restore (``--resume``), reuse (identical prefix) or train stage ``k``; its evaluation records."""
        ranks = self.ranks
        ckpt = self.layout.checkpoint(k)
        exp = self._experience(k, stage)
        if ranks.on_main(lambda: resume and self._checkpoint_usable(k, key)):
            self.echo(f"stage {k} ({stage.label}): resumed from {ckpt.root}")
            self.prefix.load_weights(key, self.model)
            load_plugin_states(self.plugins, ckpt.root)
            self.template.clock.train_exp_counter = k  # as after a walked stage: errors name the right experience
            self.timings["reused"][str(k)] = key
            return self._finish_restored(k, key)
        seed_everything(self.resolved.spec.seed, k)
        with ranks.main_holds(self.prefix.lock(key)):
            if ranks.on_main(lambda: self.prefix.usable(key, self.echo)):  # verified; a damaged entry is removed
                self.echo(f"stage {k} ({stage.label}): identical prefix already trained, reusing {key}")
                # the hooks see what training would show them: the starting weights at before_training_exp, the
                # stored ones at after_training_exp; weight edits made during the walk are undone (docs/plugins.md)
                self.template.skip_training(exp, restore=lambda: self.prefix.load_weights(key, self.model))
                self.timings["reused"][str(k)] = key
                records = self._finish_restored(k, key)
            else:
                self.echo(f"stage {k} ({stage.label}): training on {len(stage.examples)} examples")
                t = time.time()
                faults.point("train", str(k))
                if faults.nan_requested("train", str(k)):
                    self._poison()
                self.template.train(exp)
                self.timings["train_seconds"][str(k)] = round(time.time() - t, 3)
                self.tokens["train"][str(k)] = self.template.train_count.to_dict()
                records = self.evaluate(k)
                if ranks.is_main:
                    meta = {"stage": stage.label, "step": k}
                    if self.resolved.spec.sharpness:
                        meta["sharpness"] = self._sharpness(stage)
                        self.sharpness.append(meta["sharpness"])
                    self.prefix.save(key, self.model, records, meta)
        if ranks.is_main:
            self._checkpoint(k, stage, key)
        return records

    def _checkpoint(self, k: int, stage, key: str) -> None:
        """The run's own marker that stage ``k`` is done (weights live in the prefix store), plugin states with it;
        the DONE marker, written last, holds the sha256 of each file."""
        write_checkpoint(self.layout.checkpoint(k), key, stage.label,
                         lambda directory: save_plugin_states(self.plugins, directory))

    def _checkpoint_usable(self, k: int, key: str) -> bool:
        """``--resume`` restores stage ``k`` only from an intact checkpoint of this very prefix entry (checksums
        verified); a damaged one is said and ignored, and the stage is reused or retrained instead."""
        ckpt = self.layout.checkpoint(k)
        if not ckpt.done.exists():
            return False
        problem = checkpoint_problem(ckpt, key)
        if problem is not None:
            self.echo(f"checkpoint {ckpt.root} is damaged ({problem}); not resuming from it")
            return False
        return self.prefix.complete(key)

    def _poison(self) -> None:
        """A planted numerical fault (CHAINFORGET_NAN_AT): NaN in the trainable weights, so the first loss is NaN."""
        import torch

        with torch.no_grad():
            for p in self.model.parameters():
                if p.requires_grad:
                    p.fill_(float("nan"))

    def _finish_restored(self, k: int, key: str) -> list[dict]:
        """Sharpness and records of a restored stage, as stored (main process; the others need neither)."""
        if not self.ranks.is_main:
            return []
        if self.resolved.spec.sharpness:
            self.sharpness.append(self.prefix.load_meta(key).get("sharpness"))
        return self.prefix.load_records(key)

    def _experience(self, k: int, stage):
        if not self.resolved.strategy.joint and k <= len(self.bench.train_stream) and stage.trained_tasks == (
                self.bench.train_task_names[k - 1],):
            return self.bench.train_stream[k - 1]
        return experience_from_examples(stage.examples, k - 1, stage.label)

    def _sharpness(self, stage) -> dict[str, Any]:
        t = time.time()
        value, iters, converged = model_sharpness(self.model, self.tokenizer, stage.examples, seed=self.resolved.spec.seed,
                                                  **SHARPNESS_DEFAULTS)
        return {"lambda_max": value, "iterations": iters, "converged": converged, "seconds": round(time.time() - t, 2)}
