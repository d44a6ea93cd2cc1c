"""Multiple-choice scoring speed and agreement: chainforget's scorer vs lm-evaluation-harness 0.4 on BBQ.

Both score the same N BBQ examples (3 options each) with the same in-memory smollm2-135m and the same torch thread
count. lm-eval gets the identical (context, continuation) requests our scorer builds (prompt, option text) through
``HFLM.loglikelihood``; both tokenise the same way (lm-eval's causal ``_encode_pair``). Reports wall time of each,
the speed ratio and the fraction of examples with the same argmax prediction (target >= 99.9%), as a table and one
JSON line. The two scorers run in alternating chunks of examples and their times are summed, so a machine shared
with other jobs slows both alike.

The sample (``--sample``): ``contexts`` (default) draws whole BBQ contexts with every question asked about them (two
questions on the ambiguous context, two on its disambiguated extension), as a full BBQ evaluation scores them; our
scorer then runs each shared context once (target: >= 4x). ``examples`` draws independent examples, as a small
random subsample sees them, where only the options of one example share their context (target: >= 2x).

    .venv/bin/python bench/bench_mc_scoring.py [--n 200] [--sample contexts|examples] [--batch-size 16] \
        [--lm-eval-batch-size 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

from benchlib import package_version, set_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CATEGORIES = ("Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance",
              "Race_ethnicity", "Religion", "SES", "Sexual_orientation")
REGENERATED = ("Gender_identity", "Race_ethnicity", "SES")
DATA_DIRS = (Path(__file__).resolve().parents[1] / "chainforget" / "data" / "bbq", Path("/work/shared/data/bbq"))


def _bbq_from_registry():
    from chainforget.plugins import registries

    task = registries("tasks").get("bbq")
    return task.spec, list(task.examples())


def _bbq_from_files():
    """Build Examples straight from the BBQ jsonl files, with the task's prompt/option shape."""
    from chainforget.tasks.base import Example, TaskMetric, TaskSpec

    data_dir = next((d for d in DATA_DIRS if d.is_dir()), None)
    if data_dir is None:
        raise SystemExit(f"no BBQ data found in {', '.join(map(str, DATA_DIRS))}")
    examples = []
    for cat in CATEGORIES:
        path = data_dir / (f"{cat}.regenerated.jsonl.gz" if cat in REGENERATED else f"{cat}.jsonl.gz")
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                options = tuple(" " + row[f"ans{i}"].strip() for i in range(3))
                gold = int(row["label"])
                examples.append(Example(
                    id=f"bbq/{cat}/{row['example_id']}", group=cat, target=options[gold], gold=gold, options=options,
                    prompt=f"Context: {row['context'].strip()}\nQuestion: {row['question'].strip()}\nAnswer:"))
    spec = TaskSpec(name="bbq", kind="safety", format="multiple_choice", description="BBQ", prompt_template="",
                    metrics=(TaskMetric("acc"), TaskMetric("acc_norm")), primary_metric="acc")
    return spec, examples


def context_of(ex) -> str:
    return ex.prompt.split("\nQuestion:", 1)[0]


def context_groups(examples) -> list[list]:
    """Examples grouped by the BBQ context they ask about; a disambiguated context (the ambiguous one plus a
    sentence) joins the group of its ambiguous context, so a group is one context with every question on it."""
    contexts = {context_of(ex) for ex in examples}

    def root(ctx: str) -> str:
        for i in range(len(ctx)):
            if ctx[i] == "." and ctx[:i + 1] in contexts and i + 1 < len(ctx):
                return ctx[:i + 1]
        return ctx

    groups: dict[str, list] = {}
    for ex in examples:
        groups.setdefault(root(context_of(ex)), []).append(ex)
    return list(groups.values())


def load_bbq(n: int, seed: int, sample: str):
    """``n`` BBQ examples: whole contexts with all their questions (``contexts``, as in a full BBQ evaluation) or
    independently drawn examples (``examples``, as a small stratified subsample sees them); as timing chunks."""
    try:
        spec, examples = _bbq_from_registry()
        source = "registry"
    except Exception as exc:  # the tasks room may not be installed yet: read the files directly
        print(f"[bench] bbq task unavailable ({type(exc).__name__}: {exc}); reading the jsonl files", file=sys.stderr)
        spec, examples = _bbq_from_files()
        source = "files"
    rng = random.Random(seed)
    if sample == "examples":
        return spec, [[ex] for ex in rng.sample(examples, min(n, len(examples)))], source
    groups = context_groups(examples)
    rng.shuffle(groups)
    picked, total = [], 0
    for group in groups:
        if total >= n:
            break
        picked.append(group)
        total += len(group)
    return spec, picked, source


def run_ours(model, tok, spec, examples, batch_size):
    from chainforget.engine.scoring import score_examples

    t0 = time.perf_counter()
    records = score_examples(model, tok, spec, examples, batch_size=batch_size)
    return time.perf_counter() - t0, records


def run_lm_eval(lm, examples):
    from lm_eval.api.instance import Instance

    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(ex.prompt, opt), idx=k)
                for ex in examples for k, opt in enumerate(ex.options)]
    t0 = time.perf_counter()
    out = lm.loglikelihood(requests, disable_tqdm=True)
    elapsed = time.perf_counter() - t0
    logliks, i = [], 0
    for ex in examples:
        logliks.append([ll for ll, _ in out[i:i + len(ex.options)]])
        i += len(ex.options)
    return elapsed, logliks


def argmax(xs):
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="BBQ examples to score (default 200)")
    ap.add_argument("--batch-size", type=int, default=16, help="our batch size, in examples (default 16)")
    ap.add_argument("--lm-eval-batch-size", type=int, default=16, help="lm-eval batch size, in requests (default 16)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the example sample (default 0)")
    ap.add_argument("--chunk", type=int, default=48,
                    help="examples per interleaved timing chunk (default 48; a value >= --n times each in one go); "
                         "a context's questions stay in one chunk")
    ap.add_argument("--sample", choices=("contexts", "examples"), default="contexts",
                    help="draw whole BBQ contexts with all their questions (default; what a full BBQ evaluation "
                         "scores) or independent examples (what a small random subsample scores)")
    args = ap.parse_args(argv)

    import torch
    from lm_eval.models.huggingface import HFLM
    from tabulate import tabulate

    from chainforget.engine.models import load_smollm2

    threads = set_threads(args.threads)
    spec, groups, source = load_bbq(args.n, args.seed, args.sample)
    examples = [ex for group in groups for ex in group]
    chunks, cur = [], []
    for group in groups:
        if cur and len(cur) + len(group) > args.chunk:
            chunks.append(cur)
            cur = []
        cur = cur + group
    chunks.append(cur)
    model, tok = load_smollm2()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.lm_eval_batch_size)

    warm = examples[:4]  # first-call costs (allocator, kernels) are paid outside the timed runs
    run_ours(model, tok, spec, warm, args.batch_size)
    run_lm_eval(lm, warm)
    # Timed in interleaved chunks (ours, lm-eval, ours, ...) so load from other processes hits both alike.
    ours_s = ref_s = 0.0
    records, ref_logliks = [], []
    for chunk in chunks:
        t, recs = run_ours(model, tok, spec, chunk, args.batch_size)
        ours_s += t
        records += recs
        t, lls = run_lm_eval(lm, chunk)
        ref_s += t
        ref_logliks += lls
    assert torch.get_num_threads() == threads

    same_acc = same_norm = 0
    max_diff = 0.0
    for rec, ref in zip(records, ref_logliks):
        same_acc += rec["pred"] == argmax(ref)
        chars = rec["option_chars"]
        same_norm += argmax([a / c for a, c in zip(rec["option_logliks"], chars)]) == \
            argmax([b / c for b, c in zip(ref, chars)])
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(rec["option_logliks"], ref)))
    n = len(examples)
    result = {
        "bench": "mc_scoring", "model": "smollm2-135m", "task": "bbq", "data": source, "sample": args.sample, "n": n,
        "contexts": len(groups),
        "requests": sum(len(ex.options) for ex in examples), "threads": threads, "batch_size": args.batch_size,
        "lm_eval_batch_size": args.lm_eval_batch_size, "chunk": args.chunk, "ours_s": round(ours_s, 3), "lm_eval_s": round(ref_s, 3),
        "speedup": round(ref_s / ours_s, 3), "agree_acc": same_acc / n, "agree_acc_norm": same_norm / n,
        "max_abs_loglik_diff": max_diff, "acc_ours": sum(r["scores"]["acc"] for r in records) / n,
        "torch": torch.__version__, "lm_eval": package_version("lm_eval"),
    }
    target = 4.0 if args.sample == "contexts" else 2.0
    result["target_speedup"] = target
    result["pass"] = result["speedup"] >= target and result["agree_acc"] >= 0.999
    rows = [["chainforget score_examples", f"{ours_s:.2f}", f"{n / ours_s:.1f}", "1.00x"],
            ["lm-eval HFLM.loglikelihood", f"{ref_s:.2f}", f"{n / ref_s:.1f}", f"{ref_s / ours_s:.2f}x slower"]]
    print(tabulate(rows, headers=["scorer", "wall s", "examples/s", "vs ours"]))
    print(f"examples {n} ({result['requests']} requests, {len(groups)} {args.sample}), threads {threads}; identical argmax: acc "
          f"{same_acc}/{n} ({same_acc / n:.2%}), acc_norm {same_norm}/{n}; max |loglik diff| {max_diff:.2e}")
    print(f"targets: speedup >= {target:g}x -> {result['speedup']:.2f}x; agreement >= 99.9% -> {same_acc / n:.2%}; "
          f"{'PASS' if result['pass'] else 'FAIL'}")
    print(json.dumps(result))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
