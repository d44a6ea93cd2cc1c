"""The device check behind ``bench/gpu_check.sh``: correctness on CUDA, throughput, and a slice of the paper preset.

Steps (each timed and bounded; a failing step is recorded and the others still run, so the JSON always appears):

1. ``pytest -m gpu tests/engine/test_gpu.py``: CUDA vs CPU agreement of MC scoring and of a training step in float32 and
   bf16, and a SIGKILL + ``--resume`` on CUDA (skipped, and recorded as skipped, without CUDA).
2. Training throughput for full fine-tuning and LoRA through ``CausalLMTemplate`` (``--dtype auto``): tokens/s over
   timed optimizer steps after a warm-up experience, model FLOPs utilisation (MFU) = tokens/s x FLOPs per token /
   the device's peak dense bf16 FLOP/s, and peak CUDA memory next to ``engine.memory``'s estimate.
   FLOPs per token: ``6N`` (full) or ``4N`` (LoRA: no weight gradients of the frozen base) plus attention
   ``12 * layers * hidden * mean length`` (full) / ``8 * ...`` (LoRA); ``N`` counts every parameter.
3. Multiple-choice scoring: BBQ examples/s with an evaluation batch sized to fill the device.
4. A small slice of the paper preset (its first chain, naive, full fine-tuning, its middle learning rate, its
   evaluation tasks and sharpness), run end to end through ``chainforget leaderboard``; wall time recorded.
5. GPU mode only: ``chainforget leaderboard --preset paper --dry-run`` (the cost estimate from a probe of this device),
   when this version of the CLI has ``--dry-run``.

``--cpu-smoke`` runs the same steps on CPU with the tiny model and tiny sizes (< 1 minute): it proves the script,
not the figures. Writes one JSON file (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent

# Peak dense bf16 tensor-core FLOP/s by device name (vendor data sheets); CHAINFORGET_PEAK_TFLOPS overrides.
PEAK_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
               ("L4", 121.0), ("A10", 125.0)]

SIZES = {  # mode -> sizes of every step
    "gpu": dict(model="smollm2-135m", batch_size=32, micro_batch_size=16, max_length=256, warmup_steps=3,
                steps=12, score_examples=600, slice_train=64, slice_eval=64, slice_new_tokens=None,
                slice_sharpness=True, step_timeout=240),
    # smoke: generation bounded to 8 new tokens (the tiny random model never stops on its own) and no sharpness
    # (Hessian-vector products over a 49k vocabulary take minutes on a CPU; on a GPU they take seconds)
    "cpu-smoke": dict(model="tiny", batch_size=4, micro_batch_size=4, max_length=96, warmup_steps=1, steps=2,
                      score_examples=8, slice_train=4, slice_eval=4, slice_new_tokens=8, slice_sharpness=False,
                      step_timeout=90),
}


def peak_flops(name: str) -> float | None:
    env = os.environ.get("CHAINFORGET_PEAK_TFLOPS")
    if env:
        return float(env) * 1e12
    for key, tflops in PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def bbq(split: str, n: int, seed: int = 0):
    from chainforget.tasks import resolve_task

    task = resolve_task("bbq")
    pool = task.train_examples() if split == "train" else task.eval_examples()
    return random.Random(seed).sample(list(pool), min(n, len(pool)))


def experience_of(examples):
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    from chainforget.benchmark.streams import experience_dataset

    return benchmark_from_datasets(train=[experience_dataset(examples)]).train_stream[0]


# ------------------------------------------------------------------------------------------------------ steps
def step_pytest(mode: str, work: Path, timeout: int) -> dict:
    junit = work / "pytest-gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/engine/test_gpu.py", "-p", "no:cacheprovider",
           f"--junitxml={junit}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None
              or c.find("error") is not None]
    ok = out.returncode == 0 and counts["tests"] > 0
    return {"ok": ok, **counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed, "tail": out.stdout.strip().splitlines()[-1:] if out.stdout.strip() else []}


def step_train(size: dict, finetune: str) -> dict:
    import torch

    from chainforget.engine.memory import estimate_for, shape_of_model
    from chainforget.engine.models import load_model, resolve_model
    from chainforget.engine.precision import choose_precision, train_config
    from chainforget.engine.template import CausalLMTemplate
    from chainforget.engine.training import TrainConfig

    spec = resolve_model(size["model"])
    cfg = TrainConfig(finetune=finetune, batch_size=size["batch_size"], micro_batch_size=size["micro_batch_size"],
                      max_length=size["max_length"], learning_rate=5e-5 if finetune == "full" else 2e-4,
                      warmup_ratio=0.0, max_steps=size["steps"])
    prec = choose_precision("auto", finetune, cfg.mixed_precision)
    model, tok = load_model(spec, dtype=prec.torch_weights)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tpl = CausalLMTemplate(model, tok, train_config(cfg, prec), progress=False)
    examples = bbq("train", (size["warmup_steps"] + size["steps"]) * size["batch_size"])
    warm = size["warmup_steps"] * size["batch_size"]
    tpl.train_cfg = train_config(TrainConfig(**{**cfg.to_dict(), "max_steps": size["warmup_steps"]}), prec)
    tpl.train(experience_of(examples[:warm]))
    tpl.train_cfg = train_config(cfg, prec)
    if cuda:
        torch.cuda.synchronize()
    tpl.train(experience_of(examples[warm:] or examples))
    if cuda:
        torch.cuda.synchronize()
    stats = tpl.train_stats
    shape = shape_of_model(spec)
    mean_len = stats["tokens"] / max(1, stats["steps"] * size["batch_size"])
    attn = (12 if finetune == "full" else 8) * shape.layers * shape.hidden * mean_len
    per_token = (6 if finetune == "full" else 4) * shape.params + attn
    device = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    peak = peak_flops(device) if cuda else None
    est = estimate_for(spec, cfg, prec)
    out = {"ok": stats["steps"] == size["steps"], "model": size["model"], "dtype": prec.dtype,
           "weights_dtype": prec.weights, "autocast": prec.autocast, "steps": stats["steps"],
           "tokens": stats["tokens"], "seconds": round(stats["seconds"], 3),
           "tokens_per_s": round(stats["tokens_per_s"], 1), "flops_per_token": per_token,
           "achieved_tflops": round(stats["tokens_per_s"] * per_token / 1e12, 3),
           "mfu": round(stats["tokens_per_s"] * per_token / peak, 4) if peak else None,
           "peak_tflops_assumed": peak / 1e12 if peak else None, "final_loss": tpl.last_loss,
           "memory_estimate_gib": round(est.total / 2**30, 3)}
    if cuda:
        out["memory_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def step_score(size: dict) -> dict:
    import torch

    from chainforget.engine.memory import eval_batch_size_for, shape_of_model, visible_device
    from chainforget.engine.models import load_model, resolve_model
    from chainforget.engine.precision import choose_precision
    from chainforget.engine.scoring import score_examples
    from chainforget.tasks import resolve_task

    spec = resolve_model(size["model"])
    prec = choose_precision("auto", "lora")  # scoring only: the weights in the compute dtype
    model, tok = load_model(spec, dtype=prec.torch_weights)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    model.to(device)
    batch = eval_batch_size_for(shape_of_model(spec), prec, visible_device(device).free, 512) if cuda else 4
    examples = bbq("eval", size["score_examples"], seed=1)
    task_spec = resolve_task("bbq").spec
    score_examples(model, tok, task_spec, examples[:batch], batch_size=batch, progress=False, device=device)
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    records = score_examples(model, tok, task_spec, examples, batch_size=batch, progress=False, device=device)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    return {"ok": len(records) == len(examples), "examples": len(examples), "batch_size": batch,
            "dtype": prec.dtype, "seconds": round(seconds, 3), "examples_per_s": round(len(examples) / seconds, 2),
            "acc": round(sum(bool(r["correct"]) for r in records) / len(records), 4)}


def step_slice(size: dict, work: Path, timeout: int) -> dict:
    from chainforget.config.presets import PAPER

    suite = {"description": "gpu_check: a slice of the paper preset", "model": size["model"],
             "chains": PAPER["chains"][:1], "strategies": ["naive"], "seeds": [0], "finetune": ["full"],
             "learning_rate": [sorted(PAPER["learning_rate"])[len(PAPER["learning_rate"]) // 2]],
             "eval_tasks": PAPER["eval_tasks"], "limit_train": size["slice_train"], "limit_eval": size["slice_eval"],
             "sharpness": PAPER["sharpness"] and size["slice_sharpness"]}
    if size["slice_new_tokens"]:
        suite["task_options"] = {"gsm8k": {"max_new_tokens": size["slice_new_tokens"]}}
    path = work / "paper-slice.json"  # JSON is YAML
    path.write_text(json.dumps(suite))
    cmd = [sys.executable, "-m", "chainforget", "leaderboard", "--suite", str(path), "--out", str(work / "runs"),
           "-q", "--format", "json"]
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t
    results = sorted((work / "runs").glob("*/result.json"))
    res = json.loads(results[0].read_text()) if results else {}
    return {"ok": out.returncode == 0 and bool(results), "seconds": round(seconds, 2), "suite": suite,
            "run_id": res.get("run_id"), "dtype": (res.get("spec") or {}).get("dtype"),
            "timings": res.get("timings"), "score_matrix": res.get("score_matrix"),
            "error": out.stderr.strip().splitlines()[-1] if out.returncode else None}


def step_paper_estimate(work: Path, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "chainforget", "leaderboard", "--preset", "paper", "--dry-run",
           "--out", str(work / "paper-runs")]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0 and "no such option" in out.stderr:
        return {"ok": True, "skipped": "this CLI has no --dry-run"}
    return {"ok": out.returncode == 0, "output": out.stdout.strip().splitlines()[-40:],
            "error": out.stderr.strip().splitlines()[-1] if out.returncode else None}


def write(figures: dict, path: Path) -> None:
    """Atomically (re)write the figures: after every step, so a check cut short still leaves what it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + ".tmp")
    shown = {k: v for k, v in figures.items() if k != "_path"}
    tmp_path.write_text(json.dumps(shown, indent=2, default=str) + "\n")
    os.replace(tmp_path, path)


def run_step(figures: dict, name: str, fn, *args) -> None:
    t = time.perf_counter()
    try:
        figures[name] = fn(*args)
    except Exception as exc:  # noqa: BLE001 - a device check reports every failure and goes on
        figures[name] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}
    figures[name]["step_seconds"] = round(time.perf_counter() - t, 2)
    print(f"gpu_check: {name}: {'ok' if figures[name]['ok'] else 'FAILED'} ({figures[name]['step_seconds']} s)",
          file=sys.stderr, flush=True)
    figures["ok"] = all(v.get("ok") for v in figures.values() if isinstance(v, dict) and "ok" in v)
    write(figures, figures["_path"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="CPU, tiny model, tiny sizes (proves the script)")
    ap.add_argument("--json", required=True, help="where to write the figures")
    args = ap.parse_args(argv)
    import torch

    mode = "cpu-smoke" if args.cpu_smoke else "gpu"
    if mode == "gpu" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; run with --cpu-smoke to test the script on CPU", file=sys.stderr)
        return 2
    size = SIZES[mode]
    t0 = time.time()
    figures = {"schema": 1, "mode": mode, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "host": platform.node(), "torch": torch.__version__, "sizes": size, "_path": Path(args.json),
               "ok": False, "complete": False}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        run_step(figures, "pytest_gpu", step_pytest, mode, work, size["step_timeout"])
        run_step(figures, "train_full", step_train, size, "full")
        run_step(figures, "train_lora", step_train, size, "lora")
        run_step(figures, "mc_scoring", step_score, size)
        run_step(figures, "paper_slice", step_slice, size, work, size["step_timeout"])
        if mode == "gpu":
            run_step(figures, "paper_estimate", step_paper_estimate, work, 120)
    figures["total_seconds"] = round(time.time() - t0, 1)
    figures["complete"] = True
    path = figures.pop("_path")
    figures["ok"] = all(v.get("ok") for v in figures.values() if isinstance(v, dict) and "ok" in v)
    write({**figures}, path)
    print(f"gpu_check: wrote {path} ({'all steps ok' if figures['ok'] else 'SOME STEPS FAILED'}, "
          f"{figures['total_seconds']} s)", file=sys.stderr)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
