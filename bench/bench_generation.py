"""Greedy generation speed and agreement: chainforget's batched generator vs lm-evaluation-harness 0.4 on GSM8K.

Both generate for the same N GSM8K test prompts (``Question: ...\\nAnswer:``) with the same in-memory smollm2-135m,
the same stop sequences and ``max_new_tokens`` (the gsm8k task's: ``\\n\\n``, ``\\nQuestion:``, 256), greedy, the same
batch size and torch thread count. Ours is ``engine.generation.greedy_generate``; the reference is lm-eval's
``HFLM.generate_until`` (``model.generate`` with its stop-sequence criteria). Reports wall time of each, the speed
ratio (target: ours >= 2x faster), how many generated texts are identical and how many parsed answers
(``exact_match``'s final number) agree, as a table and one JSON line. The two run in alternating chunks of prompts
and their times are summed, so a machine shared with other jobs slows both alike.

    .venv/bin/python bench/bench_generation.py [--n 64] [--batch-size 16] [--threads 2] [--chunk 32]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from benchlib import package_version, set_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_ours(model, tok, prompts, max_new, stop, batch_size):
    import torch

    from chainforget.engine.generation import greedy_generate

    t0 = time.perf_counter()
    with torch.no_grad():
        outs = greedy_generate(model, tok, prompts, max_new_tokens=max_new, stop=stop, batch_size=batch_size)
    return time.perf_counter() - t0, [o.text for o in outs], sum(len(o.token_ids) for o in outs)


def run_lm_eval(lm, prompts, max_new, stop):
    from lm_eval.api.instance import Instance

    kwargs = {"until": list(stop), "max_gen_toks": max_new, "do_sample": False}
    requests = [Instance(request_type="generate_until", doc={}, arguments=(p, dict(kwargs)), idx=0) for p in prompts]
    t0 = time.perf_counter()
    out = lm.generate_until(requests, disable_tqdm=True)
    return time.perf_counter() - t0, list(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="GSM8K test prompts (default 64)")
    ap.add_argument("--batch-size", type=int, default=16, help="batch size of both (default 16)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt sample (default 0)")
    ap.add_argument("--chunk", type=int, default=32,
                    help="prompts per interleaved timing chunk (default 32: a chunk of several batches lets waiting "
                         "prompts fill the slots of stopped rows, as in a whole evaluation)")
    args = ap.parse_args(argv)

    import torch
    from lm_eval.models.huggingface import HFLM
    from tabulate import tabulate

    from chainforget.engine.generation import parse_final_number
    from chainforget.engine.models import load_smollm2
    from chainforget.engine.scoring import generation_settings
    from chainforget.plugins import registries

    threads = set_threads(args.threads)
    task = registries("tasks").get("gsm8k")
    examples = random.Random(args.seed).sample(list(task.eval_examples()), args.n)
    max_new, stop, pattern, fallback = generation_settings(task.spec)
    model, tok = load_smollm2()
    model.eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size)

    warm = [ex.prompt for ex in examples[:2]]  # first-call costs are paid outside the timed runs
    run_ours(model, tok, warm, 8, stop, args.batch_size)
    run_lm_eval(lm, warm, 8, stop)
    ours_s = ref_s = 0.0
    ours, ref, new_tokens = [], [], 0
    for start in range(0, len(examples), args.chunk):
        prompts = [ex.prompt for ex in examples[start:start + args.chunk]]
        t, texts, n_tok = run_ours(model, tok, prompts, max_new, stop, args.batch_size)
        ours_s += t
        ours += texts
        new_tokens += n_tok
        t, texts = run_lm_eval(lm, prompts, max_new, stop)
        ref_s += t
        ref += texts

    n = len(examples)
    same_text = sum(a == b for a, b in zip(ours, ref))
    same_answer = sum(parse_final_number(a, pattern, fallback) == parse_final_number(b, pattern, fallback)
                      for a, b in zip(ours, ref))
    result = {"bench": "generation", "model": "smollm2-135m", "task": "gsm8k", "n": n, "threads": threads,
              "batch_size": args.batch_size, "chunk": args.chunk, "max_new_tokens": max_new, "stop": stop,
              "ours_s": round(ours_s, 3), "lm_eval_s": round(ref_s, 3), "speedup": round(ref_s / ours_s, 3),
              "identical_texts": same_text, "identical_answers": same_answer, "new_tokens_ours": new_tokens,
              "torch": torch.__version__, "lm_eval": package_version("lm_eval")}
    result["pass"] = result["speedup"] >= 2.0 and same_text == n
    rows = [["chainforget greedy_generate", f"{ours_s:.2f}", f"{n / ours_s:.2f}", "1.00x"],
            ["lm-eval HFLM.generate_until", f"{ref_s:.2f}", f"{n / ref_s:.2f}", f"{ref_s / ours_s:.2f}x slower"]]
    print(tabulate(rows, headers=["generator", "wall s", "prompts/s", "vs ours"]))
    print(f"prompts {n}, threads {threads}, {new_tokens} tokens generated by ours; identical texts {same_text}/{n}, "
          f"identical parsed answers {same_answer}/{n}")
    for a, b in zip(ours, ref):
        if a != b:
            print(f"first difference:\n  ours: {a!r}\n  ref:  {b!r}")
            break
    print(f"targets: speedup >= 2x -> {result['speedup']:.2f}x; identical outputs -> {same_text}/{n}; "
          f"{'PASS' if result['pass'] else 'FAIL'}")
    print(json.dumps(result))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
