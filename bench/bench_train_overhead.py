"""Framework overhead of training: one experience through ``CausalLMTemplate`` vs a minimal hand-written loop.

Both sides fine-tune a fresh copy of the same in-memory smollm2-135m for the same optimizer steps on the same
optimizer batches (the same tokenisation, batch plan and seed), with the same AdamW, schedule, clipping and masked
token loss. The template side is ``template.train(experience)`` (Avalanche hooks, dataset adaptation, dataloader,
optimizer set-up, NaN guard, progress bookkeeping all included); the loop side is about twenty lines of PyTorch
including its own tokenisation and optimizer set-up. Runs alternate (template, loop, template, loop, ...) so background
load on a shared machine slows both alike. The headline ratio is of each side's fastest run (the least disturbed by
other jobs, the usual timing statistic on a noisy machine; target: <= 1.05); the ratio of summed times and the
per-pair ratios are reported too. Because both sides do the same arithmetic, their final weights must agree: the
largest absolute weight difference is reported as a correctness check.

    .venv/bin/python bench/bench_train_overhead.py [--steps 8] [--batch-size 8] [--micro-batch-size 4] \\
        [--repeats 3] [--threads N] [--max-length 128]
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


def bbq_examples(n: int, seed: int):
    """``n`` BBQ training examples (the registered task), or BBQ-shaped synthetic ones if the task is missing."""
    from chainforget.tasks.base import Example

    try:
        from chainforget.plugins import registries

        pool = list(registries("tasks").get("bbq").train_examples())
    except Exception:  # noqa: BLE001 - the bench still measures overhead without the shipped data
        pool = [Example(id=f"bbq/syn/{i}", group="Age", task="bbq", gold=0, options=(" the old man", " unknown"),
                        target=" the old man",
                        prompt=f"Context: Example {i}: " + "an old man and a young woman talked. " * (1 + i % 4)
                        + "\nQuestion: Who was forgetful?\nAnswer:") for i in range(4 * n)]
    return random.Random(seed).sample(pool, n)


def experience_of(examples):
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    from chainforget.benchmark.streams import experience_dataset

    return benchmark_from_datasets(train=[experience_dataset(examples)]).train_stream[0]


def run_template(model, tok, cfg, experience) -> tuple[float, dict]:
    from chainforget.engine.template import CausalLMTemplate

    strategy = CausalLMTemplate(model, tok, cfg, progress=False)
    start = time.perf_counter()
    strategy.train(experience)
    seconds = time.perf_counter() - start
    return seconds, dict(strategy.train_stats, loss=strategy.last_loss)


def run_loop(model, tok, cfg, examples) -> tuple[float, dict]:
    """The minimal PyTorch loop: tokenise, batch, AdamW + schedule, forward/backward per micro-batch, clip, step."""
    import torch

    from chainforget.engine.collate import TrainBatches, data_seed, encode_examples
    from chainforget.engine.training import (
        make_optimizer,
        make_scheduler,
        target_logits,
        target_logits_loss,
        target_mask,
        target_tokens,
    )

    start = time.perf_counter()
    encoded = encode_examples(tok, examples, cfg.max_length)
    batches = TrainBatches(encoded, batch_size=cfg.batch_size, micro_batch_size=cfg.micro_batch_size,
                           seed=data_seed(cfg.seed, encoded), sort_by_length=cfg.sort_by_length, pad_id=tok.pad_token_id)
    total = min(len(batches) * cfg.epochs, cfg.max_steps or 10**9)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, total)
    model.train()
    steps = tokens = 0
    loss_value = float("nan")
    for batch in batches:
        if steps >= total:
            break
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for mb in batch.micro_batches:
            keep = target_mask(mb["labels"])  # the LM head at target positions only, as the template does
            logits = target_logits(model, mb, keep)
            loss = target_logits_loss(logits, target_tokens(mb["labels"], keep), "sum") / batch.n_target
            loss.backward()
            step_loss += loss.item()
            tokens += mb["n_tokens"]
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        steps += 1
        loss_value = step_loss
    seconds = time.perf_counter() - start
    return seconds, {"steps": steps, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                     "loss": loss_value}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per experience")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--micro-batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side (alternating)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from chainforget.engine.training import TrainConfig

    base, tok = smollm2_with_threads(args.threads)
    cfg = TrainConfig(learning_rate=1e-4, batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
                      max_length=args.max_length, max_steps=args.steps, seed=args.seed)
    examples = bbq_examples(args.steps * args.batch_size, args.seed)
    experience = experience_of(examples)

    # untimed warm-up of both code paths (imports, allocator, kernels) on one step
    warm = TrainConfig(**{**cfg.to_dict(), "max_steps": 1})
    run_template(copy.deepcopy(base), tok, warm, experience)
    run_loop(copy.deepcopy(base), tok, warm, examples)

    rows, final = [], {}
    for r in range(args.repeats):
        for side in ("template", "loop"):
            model = copy.deepcopy(base)
            if side == "template":
                seconds, stats = run_template(model, tok, cfg, experience)
            else:
                seconds, stats = run_loop(model, tok, cfg, examples)
            rows.append({"side": side, "repeat": r, "seconds": seconds, **{k: stats[k] for k in
                                                                          ("steps", "tokens", "loss")}})
            if r == 0:
                final[side] = {n: p.detach().clone() for n, p in model.named_parameters()}
            del model
    diff = max(float((final["template"][n] - final["loop"][n]).abs().max()) for n in final["loop"])
    t_times = [r["seconds"] for r in rows if r["side"] == "template"]
    l_times = [r["seconds"] for r in rows if r["side"] == "loop"]
    t_sum, l_sum = sum(t_times), sum(l_times)
    tokens = rows[0]["tokens"]
    ratio = min(t_times) / min(l_times)
    pair_ratios = [rows[2 * i]["seconds"] / rows[2 * i + 1]["seconds"] for i in range(args.repeats)]

    from tabulate import tabulate

    print(tabulate([[r["side"], r["repeat"], f"{r['seconds']:.2f}", r["steps"], r["tokens"],
                     f"{r['tokens'] / r['seconds']:.0f}", f"{r['loss']:.4f}"] for r in rows],
                   headers=["side", "run", "seconds", "steps", "tokens", "tokens/s", "last loss"]))
    print(f"\ntemplate / loop time ratio (fastest runs): {ratio:.3f} (target <= 1.05); summed times: "
          f"{t_sum / l_sum:.3f}; per pair: {', '.join(f'{x:.3f}' for x in pair_ratios)}; "
          f"max |weight difference| {diff:.2e}")
    out = {"bench": "train_overhead", "model": "smollm2-135m", "steps": args.steps, "batch_size": args.batch_size,
           "micro_batch_size": args.micro_batch_size, "repeats": args.repeats, "threads": torch.get_num_threads(),
           "tokens_per_run": tokens, "template_seconds": [round(x, 3) for x in t_times],
           "loop_seconds": [round(x, 3) for x in l_times], "ratio": round(ratio, 4),
           "ratio_summed": round(t_sum / l_sum, 4), "pair_ratios": [round(x, 4) for x in pair_ratios],
           "template_tokens_per_s": round(tokens / min(t_times), 1),
           "loop_tokens_per_s": round(tokens / min(l_times), 1), "max_weight_diff": diff,
           "target_met": ratio <= 1.05}
    print(json.dumps(out))
    return 0 if ratio <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
