"""``--dry-run``: what a run or a leaderboard would train, reuse and score, and about how long it would take.

A mode of the one pipeline, not a second model of it: each run is resolved and prepared by the runner's own
``benchmark.plan.prepare_run`` (tasks as the model reads them, chat template included; the benchmark; the stages and
their prefix keys), the scorer's own requests come from ``engine.scoring.loglik_requests``, the training batches
from ``engine.collate.TrainBatches``, and what a strategy adds to a stage from its ``StrategySpec.stage_work``. The
estimate only prices that: a short throughput probe of this machine (one micro-batch of training and one batch of
scoring per task, timed after a small warm-up) turns padded positions into seconds. Nothing is trained and nothing
is written under ``--out`` (``PrefixStore.complete`` only reads). Stages that an earlier run of the same plan trains
count as reused by the later ones, as they are in a real leaderboard. Generation (``exact_match``) is counted at its
``max_new_tokens`` bound. A real run records the tokens it processed in result.json (``timings.tokens``); they equal
the dry run's counts (tests/benchmark/test_dryrun.py).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from chainforget.benchmark.plan import PreparedRun, ResolvedRun, prepare_run, resolve_run
from chainforget.config.spec import RunSpec
from chainforget.engine.collate import TrainBatches, collate, data_seed, encode_examples
from chainforget.engine.counts import pad_token_id
from chainforget.engine.generation import greedy_generate
from chainforget.engine.loglik import pack_batches
from chainforget.engine.lora_merge import merged_lora
from chainforget.engine.memory import estimate_run
from chainforget.engine.scoring import context_limit, generates, generation_settings, loglik_requests, score_examples
from chainforget.engine.training import (
    apply_finetune,
    make_optimizer,
    target_logits,
    target_logits_loss,
    target_mask,
    target_tokens,
)
from chainforget.store import results as store
from chainforget.store.prefix import PrefixStore
from chainforget.store.provenance import cpu_model

GENERATE = " (generate)"  # work key suffix of a task's generation
PROBE_NEW_TOKENS = 16  # tokens generated per prompt by the probe
PROBE_TRAIN_EXAMPLES = 4  # examples in the probe's training micro-batch (at most the run's micro-batch)
PROBE_SCORE_EXAMPLES = 16  # examples in the probe's scoring batch (at most the run's batch)
RUN_OVERHEAD_S = 3.0  # per run not yet complete: template set-up, metrics with their bootstrap, writing files


@dataclass
class Work:
    """Examples and tokens of one kind of work on one task; ``padded`` counts the positions the forward passes
    compute, padding included (a batch is as long as its longest row): what the wall time follows."""

    examples: int = 0
    tokens: int = 0
    steps: int = 0
    padded: int = 0

    def add(self, other: "Work") -> None:
        self.examples += other.examples
        self.tokens += other.tokens
        self.steps += other.steps
        self.padded += other.padded


@dataclass
class StageEstimate:
    label: str
    key: str
    reused: bool
    train: dict[str, Work] = field(default_factory=dict)  # task -> work, every pass (replay adds earlier tasks)
    passes: int = 1  # training passes over every batch (SAM: 2)
    cost: float = 1.0  # the strategy's multiple of the training time for work that is no training pass (LwF)
    unique: int = 0  # distinct training examples (``train`` counts every epoch's passes)
    after_tokens: int = 0  # forward+backward tokens after the stage, even a reused one (EWC's Fisher)


@dataclass
class RunEstimate:
    run_id: str
    title: str
    complete: bool
    base_reused: bool = True
    stages: list[StageEstimate] = field(default_factory=list)
    score: dict[str, Work] = field(default_factory=dict)  # one evaluation: task -> work
    bounded: bool = False  # generation counted at its max_new_tokens bound

    @property
    def evaluations(self) -> int:
        """Evaluations to run: the base model unless reused, and every stage that is trained."""
        if self.complete:
            return 0
        return int(not self.base_reused) + sum(not s.reused for s in self.stages)

    def tokens(self) -> dict[str, dict[str, dict[str, int]]]:
        """What the run will record in result.json's ``timings.tokens``: per trained stage, the training passes' tokens and
        padded positions; per evaluation (0 = base), the log-likelihood passes' (generation is bounded apart)."""
        if self.complete:
            return {"train": {}, "score": {}}
        score = Work()
        for key, work in self.score.items():
            if not key.endswith(GENERATE):
                score.add(work)
        one = {"tokens": score.tokens, "padded": score.padded}
        trained = [k for k, sp in enumerate(self.stages, start=1) if not sp.reused]
        train = {}
        for k in trained:
            total = Work()
            for work in self.stages[k - 1].train.values():
                total.add(work)
            train[str(k)] = {"tokens": total.tokens, "padded": total.padded}
        evaluated = ([0] if not self.base_reused else []) + trained
        return {"train": train, "score": {str(k): dict(one) for k in evaluated}}


def train_work(tokenizer, examples: Sequence[Any], cfg) -> Work:
    """Examples, tokens and optimizer steps that the template processes for these examples (one process, one
    pass)."""
    encoded = encode_examples(tokenizer, list(examples), cfg.max_length)
    if not encoded:
        return Work()
    batches = TrainBatches(encoded, batch_size=cfg.batch_size, micro_batch_size=cfg.micro_batch_size,
                           seed=data_seed(cfg.seed, encoded), sort_by_length=cfg.sort_by_length, pad_id=0)
    total = len(batches) * cfg.epochs if cfg.max_steps is None else min(len(batches) * cfg.epochs, cfg.max_steps)
    work, steps = Work(), 0
    micro = batches.micro
    for epoch in range(cfg.epochs):
        for batch in batches.epoch_batches(epoch):
            if steps >= total:
                return work
            steps += 1
            lengths = [len(encoded[i].input_ids) for i in batch]
            padded = sum(len(lengths[k:k + micro]) * max(lengths[k:k + micro]) for k in range(0, len(lengths), micro))
            work.add(Work(len(batch), sum(lengths), 1, padded))
    return work


def by_task(examples: Sequence[Any], default: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for ex in examples:
        out.setdefault(getattr(ex, "task", "") or default, []).append(ex)
    return out


def score_work(tokenizer, task_spec, examples: Sequence[Any], max_length: int | None,
               batch_size: int | None = None) -> dict[str, Work]:
    """Tokens the scorer runs for one evaluation of a task: ``{task: its log-likelihood requests packed}`` (the
    scorer's own requests and batches; with ``batch_size``, ``padded`` counts the rows padded into them) and, when
    it generates, ``{task + GENERATE: prompts + max_new_tokens}`` (generation counted at its bound)."""
    out: dict[str, Work] = {}
    requests = loglik_requests(tokenizer, task_spec, examples, max_length)
    if requests:
        _, rows, planned = pack_batches(requests, batch_size or 1, len(tokenizer))
        tokens = sum(r.length for r in rows)
        padded = sum(len(b) * max(rows[i].length for i in b) for b in planned) if batch_size else tokens
        out[task_spec.name] = Work(len(examples), tokens, 0, padded)
    if generates(task_spec):
        max_new = generation_settings(task_spec)[0]
        prompts = tokenizer([ex.prompt for ex in examples])["input_ids"] if examples else []
        bound = sum(len(p) for p in prompts) + max_new * len(examples)
        out[task_spec.name + GENERATE] = Work(0 if requests else len(examples),  # examples counted once
                                              bound, 0, bound)
    return out


class Estimator:
    """Prices runs against one ``--out``; stages estimated for training count as reused by later runs."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.prefix = PrefixStore(self.out)
        self.planned: set[str] = set()
        self._models: dict[str, tuple[Any, Any, float]] = {}

    def _available(self, key: str) -> bool:
        return key in self.planned or self.prefix.complete(key)

    def model(self, resolved: ResolvedRun) -> tuple[Any, Any, float]:
        """``(model, tokenizer, load seconds)`` of the run's model, loaded once per model name."""
        name = resolved.model_spec.name
        if name not in self._models:
            start = time.perf_counter()
            model, tok = resolved.model_spec.load()
            self._models[name] = (model, tok, time.perf_counter() - start)
        return self._models[name]

    def estimate(self, spec: RunSpec) -> tuple[RunEstimate, PreparedRun | None]:
        """The run's estimate and the prepared run it prices (None for a complete run: nothing to price)."""
        resolved = resolve_run(spec)
        spec = resolved.spec
        run_id = spec.run_id()
        title = f"{spec.strategy} on {' -> '.join(spec.chain)} (seed {spec.seed})"
        est = RunEstimate(run_id, title, store.is_complete(self.out / run_id))
        if est.complete:
            return est, None
        model, tok, _ = self.model(resolved)
        prepared = prepare_run(resolved, tok)
        tasks, bench, cfg = prepared.resolved.tasks, prepared.bench, resolved.train_cfg
        for name, exp in zip(bench.eval_task_names, bench.test_stream):
            est.score.update(score_work(tok, tasks[name].spec, list(exp.dataset), context_limit(model),
                                        spec.eval_batch_size))
        est.bounded = any(key.endswith(GENERATE) for key in est.score)
        est.base_reused = self._available(prepared.base_key)
        self.planned.add(prepared.base_key)
        plugins = prepared.plugins()
        for k, (stage, key) in enumerate(zip(prepared.stages, prepared.stage_keys), start=1):
            current = stage.trained_tasks[0] if len(stage.trained_tasks) == 1 else stage.label
            extra = resolved.strategy.work(plugins, k - 1, current)
            sp = StageEstimate(stage.label, key, self._available(key), passes=1 + extra.extra_passes,
                               cost=extra.cost_factor)
            self.planned.add(key)
            examples = list(stage.examples) + list(extra.added)
            sp.unique = len(examples)
            if extra.after:
                sp.after_tokens = sum(len(e.input_ids) for e in encode_examples(tok, list(extra.after),
                                                                                cfg.max_length))
            total = train_work(tok, examples, cfg)
            for task, exs in by_task(examples, current).items():
                work = train_work(tok, exs, cfg)
                work.steps = total.steps  # steps are shared; tokens split per task for the per-task throughput
                # the stage's batches mix its tasks: split their padded positions in proportion to the tokens
                work.padded = round(total.padded * work.tokens / max(total.tokens, 1))
                work.tokens, work.padded = sp.passes * work.tokens, sp.passes * work.padded
                sp.train[task] = work
            est.stages.append(sp)
        return est, prepared


@dataclass
class Throughput:
    train: dict[str, float]  # task -> tokens/s
    score: dict[str, float]  # task -> tokens/s
    load_s: float
    seconds: float


def probe(prepared: PreparedRun, model, tokenizer, load_s: float, train_tasks: Sequence[str],
          score_tasks: Sequence[str]) -> Throughput:
    """Tokens/s of one training micro-batch and one scoring batch per task on this machine (after a warm-up); the
    model is made trainable as the run would (LoRA adapters added in place) but never updated."""
    import torch

    t0 = time.perf_counter()
    resolved, bench = prepared.resolved, prepared.bench
    cfg = resolved.train_cfg
    model = apply_finetune(model, cfg)
    opt = make_optimizer(model, cfg)
    pad = pad_token_id(tokenizer)
    train_sets = {n: list(exp.dataset) for n, exp in zip(bench.train_task_names, bench.train_stream)}
    test_sets = {n: list(exp.dataset) for n, exp in zip(bench.eval_task_names, bench.test_stream)}

    def step(examples) -> tuple[float, int]:
        batch = collate(encode_examples(tokenizer, examples, cfg.max_length), pad)
        start = time.perf_counter()
        keep = target_mask(batch["labels"])
        loss = target_logits_loss(target_logits(model, batch, keep), target_tokens(batch["labels"], keep))
        loss.backward()
        opt.zero_grad(set_to_none=True)  # no update: the probe leaves the weights as they were
        return time.perf_counter() - start, int(batch["input_ids"].numel())  # positions computed, padding included

    train_tps, score_tps = {}, {}
    model.train()
    size = min(cfg.micro_batch_size, PROBE_TRAIN_EXAMPLES)
    first = next((train_sets[t] for t in train_tasks if train_sets.get(t)), None)
    if first:
        step(first[:size])  # warm-up: thread pool, allocator
    for task in train_tasks:
        exs = train_sets.get(task) or []
        if exs:
            seconds, tokens = step(exs[:size])
            train_tps[task] = tokens / max(seconds, 1e-6)
    eval_bs = resolved.spec.eval_batch_size
    model.eval()
    # merged once for the whole probe: a run merges LoRA once per task per evaluation (engine.lora_merge), which a
    # probe of one small batch per task would otherwise count against its few tokens
    with torch.no_grad(), merged_lora(model, next(model.parameters()).device):
        for i, key in enumerate(score_tasks):
            task = key[:-len(GENERATE)] if key.endswith(GENERATE) else key
            sample = _score_sample(test_sets.get(task) or [], min(eval_bs, PROBE_SCORE_EXAMPLES))
            if not sample:
                continue
            if key.endswith(GENERATE):  # decode speed from a short generation; the run's is max_new_tokens long
                start = time.perf_counter()
                greedy_generate(model, tokenizer, [ex.prompt for ex in sample], max_new_tokens=PROBE_NEW_TOKENS,
                                stop=[], batch_size=eval_bs)
                tokens = sum(len(p) for p in tokenizer([ex.prompt for ex in sample])["input_ids"])
                score_tps[key] = (tokens + PROBE_NEW_TOKENS * len(sample)) / max(time.perf_counter() - start, 1e-6)
                continue
            tspec = resolved.tasks[task].spec
            if i == 0:
                score_examples(model, tokenizer, _loglik_only(tspec), sample[:4], batch_size=eval_bs)  # warm-up
            work = score_work(tokenizer, tspec, sample, None, eval_bs)[task]
            start = time.perf_counter()
            score_examples(model, tokenizer, _loglik_only(tspec), sample, batch_size=eval_bs)
            score_tps[key] = work.padded / max(time.perf_counter() - start, 1e-6)
    return Throughput(train_tps, score_tps, load_s, load_s + time.perf_counter() - t0)


def _score_sample(examples: Sequence[Any], n: int) -> list[Any]:
    """``n`` neighbouring examples from the middle of the set in prompt order: examples that share a context (BBQ's
    two questions) sit side by side there, so the probe packs shared prefixes as the run's scoring does."""
    ordered = sorted(examples, key=lambda ex: (ex.prompt, str(ex.id)))
    start = max(0, (len(ordered) - n) // 2)
    return ordered[start:start + n]


def _loglik_only(task_spec):
    """The task without ``exact_match``: its log-likelihood scoring alone (generation is probed apart)."""
    metrics = tuple(m for m in task_spec.metrics if m.name != "exact_match")
    if len(metrics) == len(task_spec.metrics):
        return task_spec
    return dataclasses.replace(task_spec, metrics=metrics, primary_metric=metrics[0].name)


def memory_estimate(resolved: ResolvedRun) -> list[str]:
    """The device-memory estimate (``engine.memory``) for the run's model and training settings, as lines;
    none for a plugin model that cannot be sized before loading."""
    est = estimate_run(resolved.model_spec, resolved.train_cfg, getattr(resolved.spec, "dtype", "auto"))
    return [] if est is None else ["memory estimate (training, per device):", *("  " + x for x in est.lines())]


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@dataclass
class DryRun:
    runs: list[RunEstimate]
    estimate_s: float
    parts: dict[str, float]
    throughput: Throughput | None
    lines: list[str]
    # the positions the estimate prices, per kind and task: training passes (times the strategy's cost factor, after-
    # stage work included) and scoring passes of every run not complete; a cost model for another device reuses them
    positions: dict[str, dict[str, int]] = field(default_factory=dict)


def dry_run(specs: Sequence[RunSpec], out_dir: str | Path, *, probe_machine: bool = True,
            echo: Callable[[str], None] | None = None) -> DryRun:
    """Plan ``specs`` against ``out_dir``, probe this machine and estimate the wall time; trains and writes nothing."""
    import torch

    estimator = Estimator(out_dir)
    estimated = [estimator.estimate(spec) for spec in specs]
    runs = [est for est, _ in estimated]
    lines: list[str] = []
    for est in runs:
        lines.append(f"{est.title} [{est.run_id}]")
        if est.complete:
            lines.append("  complete: nothing to train or score")
            continue
        lines.append(f"  base model evaluation: {'reused from the prefix store' if est.base_reused else 'to score'}")
        for k, sp in enumerate(est.stages, start=1):
            if sp.reused:
                lines.append(f"  stage {k} {sp.label}: reused ({sp.key})")
            else:
                w = Work()
                for work in sp.train.values():
                    w.add(work)
                epochs = f" ({w.examples} with every epoch)" if w.examples != sp.unique else ""
                passes = f" in {sp.passes} passes" if sp.passes > 1 else ""
                lines.append(f"  stage {k} {sp.label}: train {sp.unique} examples{epochs}, {w.tokens:,} tokens"
                             f"{passes}, {max(work.steps for work in sp.train.values()) if sp.train else 0} "
                             f"optimizer steps")
        one = Work()
        for work in est.score.values():
            one.add(work)
        lines.append(f"  each evaluation: {one.examples} examples, {one.tokens:,} tokens; evaluations to run: "
                     f"{est.evaluations}")
    todo = [(est, prepared) for est, prepared in estimated if not est.complete]
    train_tot, score_tot = Work(), Work()
    train_by_task: dict[str, int] = {}
    score_by_task: dict[str, int] = {}
    trained = reused = 0
    for est, _ in todo:
        for sp in est.stages:
            if sp.after_tokens:
                task = next(iter(sp.train), "")
                train_by_task[task] = train_by_task.get(task, 0) + sp.after_tokens
            if sp.reused:
                reused += 1
                continue
            trained += 1
            for task, work in sp.train.items():
                train_tot.add(work)
                train_by_task[task] = train_by_task.get(task, 0) + int(work.padded * sp.cost)
        for task, work in est.score.items():
            for _ in range(est.evaluations):
                score_tot.add(Work(work.examples, work.tokens))
                score_by_task[task] = score_by_task.get(task, 0) + work.padded
    lines.append(f"runs: {len(runs)} ({len(runs) - len(todo)} complete); stages to train: {trained}, reused from "
                 f"the prefix store: {reused}")
    lines.append(f"to train: {train_tot.examples:,} examples, {train_tot.tokens:,} tokens; to score: "
                 f"{score_tot.examples:,} examples, {score_tot.tokens:,} tokens"
                 + (" (generation counted at max_new_tokens)" if any(est.bounded for est, _ in todo) else ""))
    throughput, parts = None, {}
    if probe_machine and todo:
        prepared = todo[0][1]
        model, tok, load_s = estimator.model(prepared.resolved)
        throughput = probe(prepared, model, tok, load_s, sorted(train_by_task), sorted(score_by_task))

        def rate(table: dict[str, float], task: str) -> float:
            return table.get(task) or (sum(table.values()) / len(table) if table else 1.0)

        parts = {"train": sum(t / rate(throughput.train, k) for k, t in train_by_task.items()),
                 "score": sum(t / rate(throughput.score, k) for k, t in score_by_task.items()),
                 "setup": len(todo) * (throughput.load_s + RUN_OVERHEAD_S)}
        lines.append(f"throughput probe ({throughput.seconds:.1f} s; {cpu_model()}, {torch.get_num_threads()} "
                     f"threads): train " + ", ".join(f"{k} {v:.0f} tok/s" for k, v in throughput.train.items())
                     + "; score " + ", ".join(f"{k} {v:.0f} tok/s" for k, v in throughput.score.items()))
    estimate = sum(parts.values())
    if parts:
        lines.append(f"estimated wall time: {_fmt_time(estimate)} (train {_fmt_time(parts['train'])}, score "
                     f"{_fmt_time(parts['score'])}, model loads and set-up {_fmt_time(parts['setup'])})")
    if todo:
        lines += memory_estimate(todo[0][1].resolved)
    lines.append("dry run: nothing was trained or written")
    if echo:
        for line in lines:
            echo(line)
    return DryRun(runs, estimate, parts, throughput, lines, {"train": train_by_task, "score": score_by_task})
