"""``--dry-run``: what a run or a leaderboard would train, reuse and score, and about how long it would take.

Nothing is trained and nothing is written under ``--out``: the plan is read from the specs and the prefix store
(``PrefixStore.complete`` only reads), the token counts come from the same tokenisation and batch plan as a real run
(``engine.collate`` for training, ``engine.prefix_tree`` packing for scoring), and the time estimate from a short
throughput probe of this machine: one micro-batch of training and one batch of scoring per task, timed after a
small warm-up. Stages that an earlier run of the same plan trains count as reused by the later ones, as they are in
a real leaderboard. Generation (``exact_match``) is counted at its ``max_new_tokens`` bound.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from chainforget.benchmark.plan import ResolvedRun, common_key, plan_stages, resolve_run, stage_data_id
from chainforget.benchmark.streams import build_benchmark
from chainforget.config.spec import RunSpec
from chainforget.engine.collate import TrainBatches, collate, data_seed, encode_examples
from chainforget.engine.generation import greedy_generate
from chainforget.engine.loglik import encode_requests, plan_batches
from chainforget.engine.lora_merge import merged_lora
from chainforget.engine.memory import estimate_run
from chainforget.engine.scoring import generation_settings, score_examples
from chainforget.engine.training import (
    apply_finetune,
    make_optimizer,
    target_logits,
    target_logits_loss,
    target_mask,
    target_tokens,
)
from chainforget.store import results as store
from chainforget.store.prefix import PrefixStore, base_key, stage_key
from chainforget.store.provenance import cpu_model

# Work a strategy adds on top of plain training, as a multiple of its training cost (measured on smollm2-135m):
# LwF runs a teacher forward after the first chain step, SAM a second forward and backward every step.
STRATEGY_COST = {"lwf": 1.35, "sam": 2.0}
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
class StagePlan:
    label: str
    key: str
    reused: bool
    train: dict[str, Work] = field(default_factory=dict)  # task -> work (replay adds earlier tasks)
    cost: float = 1.0  # strategy multiplier of the training time
    unique: int = 0  # distinct training examples (``train`` counts every epoch's passes)
    extra_tokens: int = 0  # forward+backward tokens after the stage, even a reused one (EWC's Fisher)


@dataclass
class RunPlan:
    run_id: str
    title: str
    complete: bool
    base_reused: bool = True
    stages: list[StagePlan] = field(default_factory=list)
    score: dict[str, Work] = field(default_factory=dict)  # one evaluation: task -> work
    bounded: bool = False  # generation counted at its max_new_tokens bound

    @property
    def evaluations(self) -> int:
        """Evaluations to run: the base model unless reused, and every stage that is trained."""
        if self.complete:
            return 0
        return int(not self.base_reused) + sum(not s.reused for s in self.stages)


def train_work(tokenizer, examples: Sequence[Any], cfg) -> Work:
    """Examples, tokens and optimizer steps that the template processes for these examples (one process)."""
    encoded = encode_examples(tokenizer, list(examples), cfg.max_length)
    if not encoded:
        return Work()
    batches = TrainBatches(encoded, batch_size=cfg.batch_size, micro_batch_size=cfg.micro_batch_size,
                           seed=data_seed(cfg.seed, encoded), sort_by_length=cfg.sort_by_length, pad_id=0)
    total = len(batches) * cfg.epochs if cfg.max_steps is None else min(len(batches) * cfg.epochs, cfg.max_steps)
    work, steps = Work(), 0
    micro = batches.micro
    for epoch in range(cfg.epochs):
        for batch in batches.plan(epoch):
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
    """Tokens the scorer runs for one evaluation of a task: ``{task: packed log-likelihood rows}`` (as
    ``engine.prefix_tree`` packs them; with ``batch_size``, ``padded`` counts the rows padded into the scorer's
    batches) and, for ``exact_match``, ``{task + GENERATE: prompts + max_new_tokens}`` (generation counted at its
    bound)."""
    names = {m.name for m in task_spec.metrics}
    out: dict[str, Work] = {}
    if task_spec.format == "multiple_choice":
        conts = [list(ex.options) for ex in examples]
    elif "gold_logprob" in names:
        conts = [[ex.target] for ex in examples]
    else:
        conts = None
    if conts is not None:
        requests = encode_requests(tokenizer, [ex.prompt for ex in examples], conts, max_length)
        _, rows, planned = plan_batches(requests, batch_size or 1, len(tokenizer))
        tokens = sum(r.length for r in rows)
        padded = sum(len(b) * max(rows[i].length for i in b) for b in planned) if batch_size else tokens
        out[task_spec.name] = Work(len(examples), tokens, 0, padded)
    if task_spec.format == "generation" and "exact_match" in names:
        max_new = generation_settings(task_spec)[0]
        prompts = tokenizer([ex.prompt for ex in examples])["input_ids"] if examples else []
        bound = sum(len(p) for p in prompts) + max_new * len(examples)
        out[task_spec.name + GENERATE] = Work(0 if conts is not None else len(examples),  # examples counted once
                                              bound, 0, bound)
    return out


class Planner:
    """Plans runs against one ``--out``; stages planned for training count as reused by later runs."""

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

    def tokenizer(self, resolved: ResolvedRun):
        return self.model(resolved)[1]

    def plan(self, spec: RunSpec) -> tuple[RunPlan, ResolvedRun, Any]:
        resolved = resolve_run(spec)
        spec = resolved.spec
        run_id = spec.run_id()
        title = f"{spec.strategy} on {' -> '.join(spec.chain)} (seed {spec.seed})"
        plan = RunPlan(run_id, title, store.is_complete(self.out / run_id))
        bench = build_benchmark([resolved.tasks[n] for n in spec.chain],
                                [resolved.tasks[n] for n in spec.all_eval_tasks],
                                spec.limit_train_for, spec.limit_eval_for)
        train_examples = {n: list(exp.dataset) for n, exp in zip(bench.train_task_names, bench.train_stream)}
        stages, ctx = plan_stages(resolved, train_examples)
        tok = self.tokenizer(resolved)
        max_length = getattr(resolved.model_spec, "max_length", None)
        for name, exp in zip(bench.eval_task_names, bench.test_stream):
            plan.score.update(score_work(tok, resolved.tasks[name].spec, list(exp.dataset), max_length,
                                         resolved.spec.eval_batch_size))
        plan.bounded = any(key.endswith(GENERATE) for key in plan.score)
        if plan.complete:
            return plan, resolved, bench
        common = common_key(resolved)
        key = base_key(common)
        plan.base_reused = self._available(key)
        self.planned.add(key)
        plugins = list(resolved.strategy.make_plugins(resolved.params, ctx))
        steps: list[dict[str, Any]] = []
        for k, stage in enumerate(stages, start=1):
            steps.append({"data": stage_data_id(stage, resolved), "signature": stage.signature})
            key = stage_key(common, steps)
            sp = StagePlan(stage.label, key, self._available(key))
            self.planned.add(key)
            current = stage.trained_tasks[0] if len(stage.trained_tasks) == 1 else stage.label
            examples = list(stage.examples)
            for plugin in plugins:  # replay: its buffer joins the stage's training data
                if hasattr(plugin, "buffer_examples"):
                    examples += plugin.buffer_examples(min(k - 1, len(spec.chain)), current)
            sp.unique = len(examples)
            for plugin in plugins:  # EWC: a Fisher over fisher_examples at the end of every step but the last
                if hasattr(plugin, "fisher_examples") and k - 1 < len(spec.chain) - 1:
                    fisher = encode_examples(tok, plugin.fisher_examples(k - 1), resolved.train_cfg.max_length)
                    sp.extra_tokens += sum(len(e.input_ids) for e in fisher)
            total = train_work(tok, examples, resolved.train_cfg)
            for task, exs in by_task(examples, current).items():
                work = train_work(tok, exs, resolved.train_cfg)
                work.steps = total.steps  # steps are shared; tokens split per task for the per-task throughput
                # the stage's batches mix its tasks: split their padded positions in proportion to the tokens
                work.padded = round(total.padded * work.tokens / max(total.tokens, 1))
                sp.train[task] = work
            factor = STRATEGY_COST.get(spec.strategy, 1.0)
            sp.cost = factor if (spec.strategy != "lwf" or k > 1) else 1.0
            plan.stages.append(sp)
        return plan, resolved, bench


@dataclass
class Throughput:
    train: dict[str, float]  # task -> tokens/s
    score: dict[str, float]  # task -> tokens/s
    load_s: float
    seconds: float


def probe(resolved: ResolvedRun, bench, model, tokenizer, load_s: float, train_tasks: Sequence[str],
          score_tasks: Sequence[str]) -> Throughput:
    """Tokens/s of one training micro-batch and one scoring batch per task on this machine (after a warm-up); the
    model is made trainable as the run would (LoRA adapters added in place) but never updated."""
    import torch

    t0 = time.perf_counter()
    cfg = resolved.train_cfg
    model = apply_finetune(model, cfg)
    opt = make_optimizer(model, cfg)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
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
    """Issue 17's device-memory estimate (``engine.memory``) for the run's model and training settings, as lines;
    none for a plugin model that cannot be sized before loading."""
    est = estimate_run(resolved.model_spec, resolved.train_cfg, getattr(resolved.spec, "dtype", "auto"))
    return [] if est is None else ["memory estimate (training, per device):", *("  " + x for x in est.lines())]


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@dataclass
class DryRun:
    runs: list[RunPlan]
    estimate_s: float
    parts: dict[str, float]
    throughput: Throughput | None
    lines: list[str]


def dry_run(specs: Sequence[RunSpec], out_dir: str | Path, *, probe_machine: bool = True,
            echo: Callable[[str], None] | None = None) -> DryRun:
    """Plan ``specs`` against ``out_dir``, probe this machine and estimate the wall time; trains and writes nothing."""
    import torch

    planner = Planner(out_dir)
    planned = [planner.plan(spec) for spec in specs]
    runs = [p for p, _, _ in planned]
    lines: list[str] = []
    for plan in runs:
        lines.append(f"{plan.title} [{plan.run_id}]")
        if plan.complete:
            lines.append("  complete: nothing to train or score")
            continue
        lines.append(f"  base model evaluation: {'reused from the prefix store' if plan.base_reused else 'to score'}")
        for k, sp in enumerate(plan.stages, start=1):
            if sp.reused:
                lines.append(f"  stage {k} {sp.label}: reused ({sp.key})")
            else:
                w = Work()
                for work in sp.train.values():
                    w.add(work)
                passes = f" ({w.examples} with every epoch)" if w.examples != sp.unique else ""
                lines.append(f"  stage {k} {sp.label}: train {sp.unique} examples{passes}, {w.tokens:,} tokens, "
                             f"{max(work.steps for work in sp.train.values()) if sp.train else 0} optimizer steps")
        one = Work()
        for work in plan.score.values():
            one.add(work)
        lines.append(f"  each evaluation: {one.examples} examples, {one.tokens:,} tokens; evaluations to run: "
                     f"{plan.evaluations}")
    todo = [(p, r, b) for p, r, b in planned if not p.complete]
    train_tot, score_tot = Work(), Work()
    train_by_task: dict[str, int] = {}
    score_by_task: dict[str, int] = {}
    trained = reused = 0
    for plan, _, _ in todo:
        for sp in plan.stages:
            if sp.extra_tokens:
                task = next(iter(sp.train), "")
                train_by_task[task] = train_by_task.get(task, 0) + sp.extra_tokens
            if sp.reused:
                reused += 1
                continue
            trained += 1
            for task, work in sp.train.items():
                train_tot.add(work)
                train_by_task[task] = train_by_task.get(task, 0) + int(work.padded * sp.cost)
        for task, work in plan.score.items():
            for _ in range(plan.evaluations):
                score_tot.add(Work(work.examples, work.tokens))
                score_by_task[task] = score_by_task.get(task, 0) + work.padded
    lines.append(f"runs: {len(runs)} ({len(runs) - len(todo)} complete); stages to train: {trained}, reused from "
                 f"the prefix store: {reused}")
    lines.append(f"to train: {train_tot.examples:,} examples, {train_tot.tokens:,} tokens; to score: "
                 f"{score_tot.examples:,} examples, {score_tot.tokens:,} tokens"
                 + (" (generation counted at max_new_tokens)" if any(p.bounded for p, _, _ in todo) else ""))
    throughput, parts = None, {}
    if probe_machine and todo:
        plan, resolved, bench = todo[0]
        model, tok, load_s = planner.model(resolved)
        throughput = probe(resolved, bench, model, tok, load_s, sorted(train_by_task), sorted(score_by_task))

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
        lines += memory_estimate(todo[0][1])
    lines.append("dry run: nothing was trained or written")
    if echo:
        for line in lines:
            echo(line)
    return DryRun(runs, estimate, parts, throughput, lines)
