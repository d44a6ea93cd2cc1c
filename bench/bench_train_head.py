"""Training speed of logits at target positions only vs every position (the LM head over the whole sequence).

Both sides are ``CausalLMTemplate.train(experience)`` on a fresh copy of the same in-memory smollm2-135m with the
quick preset's training settings (LoRA r=16, batch 8, micro-batch 8, max length 256), on the same examples and
optimizer batches; the only difference is ``strategy.full_logits`` (True: today's path before issue 16, every
position projected onto the vocabulary). Runs alternate (target, full, target, full, ...) so background load slows
both alike; the headline per task is the ratio of each side's fastest run. The per-step losses of both sides are
compared as a check that they do the same arithmetic (float rounding apart).

    .venv/bin/python bench/bench_train_head.py [--tasks bbq,gsm8k] [--steps 3] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time

from benchlib import smollm2_with_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUICK_TRAIN = {"finetune": "lora", "lora_r": 16, "lora_alpha": 32.0, "learning_rate": 3.0e-3, "batch_size": 8,
               "micro_batch_size": 8, "max_length": 256}


def task_examples(name: str, n: int, seed: int):
    from chainforget.plugins import registries

    pool = list(registries("tasks").get(name).train_examples())
    return random.Random(seed).sample(pool, n)


def experience_of(examples):
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    from chainforget.benchmark.streams import experience_dataset

    return benchmark_from_datasets(train=[experience_dataset(examples)]).train_stream[0]


class StepLosses:
    """Records each optimizer step's loss (a plugin; every other hook does nothing)."""

    def __init__(self):
        self.losses = []

    def after_training_iteration(self, strategy, **kwargs):
        self.losses.append(strategy.last_loss)

    def __getattr__(self, name):
        if name.startswith(("before_", "after_")):
            return lambda strategy, **kwargs: None
        raise AttributeError(name)


def run(model, tok, cfg, experience, full: bool) -> tuple[float, dict]:
    from chainforget.engine.template import CausalLMTemplate

    rec = StepLosses()
    strategy = CausalLMTemplate(model, tok, cfg, plugins=[rec], progress=False)
    strategy.full_logits = full
    start = time.perf_counter()
    strategy.train(experience)
    seconds = time.perf_counter() - start
    return seconds, {"tokens": strategy.train_stats["tokens"], "losses": rec.losses}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="bbq,gsm8k", help="comma-separated training tasks (default bbq,gsm8k)")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per run (default 3)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per side, alternating (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from tabulate import tabulate

    from chainforget.engine.training import TrainConfig

    base, tok = smollm2_with_threads(args.threads)
    cfg = TrainConfig(**QUICK_TRAIN, max_steps=args.steps, seed=args.seed)
    rows, summary = [], {}
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        examples = task_examples(task, args.steps * cfg.batch_size, args.seed)
        experience = experience_of(examples)
        warm = TrainConfig(**{**cfg.to_dict(), "max_steps": 1})
        for full in (False, True):  # untimed warm-up of both paths
            run(copy.deepcopy(base), tok, warm, experience, full)
        times, losses = {False: [], True: []}, {}
        for r in range(args.repeats):
            for full in (False, True):
                seconds, stats = run(copy.deepcopy(base), tok, cfg, experience, full)
                times[full].append(seconds)
                losses[full] = stats["losses"]
                rows.append([task, "every position" if full else "target positions", r, f"{seconds:.2f}",
                             stats["tokens"], f"{stats['tokens'] / seconds:.0f}"])
        diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses[False], losses[True]))
        summary[task] = {"target_s": [round(x, 3) for x in times[False]], "full_s": [round(x, 3) for x in times[True]],
                         "speedup": round(min(times[True]) / min(times[False]), 3), "tokens": stats["tokens"],
                         "max_rel_loss_diff": diff}
    print(tabulate(rows, headers=["task", "logits at", "run", "seconds", "tokens", "tokens/s"]))
    for task, s in summary.items():
        print(f"{task}: target-position logits {s['speedup']:.2f}x faster (fastest runs); largest relative "
              f"step-loss difference {s['max_rel_loss_diff']:.1e}")
    print(json.dumps({"bench": "train_head", "model": "smollm2-135m", "steps": args.steps, "repeats": args.repeats,
                      "threads": torch.get_num_threads(), "train": QUICK_TRAIN, "tasks": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
