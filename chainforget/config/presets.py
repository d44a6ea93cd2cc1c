"""Built-in leaderboard presets (suites), registered through the same hook a plugin would use.

``quick`` is the README's main job: SmolLM2-135M on 2 CPU cores in about 8 minutes, so its sizes are small and its
confidence intervals wide (docs/performance.md, "End to end", says what each size costs and why it was chosen). ``paper`` is the full study, meant for a GPU.
"""

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS
from chainforget.plugins.hookspecs import hookimpl

QUICK = {
    "description": "SmolLM2-135M + LoRA, bbq<->gsm8k both orders, 5 strategies, 1 seed; ~8 min on 2 CPU cores",
    "model": "smollm2-135m",
    "chains": [["bbq", "gsm8k"], ["gsm8k", "bbq"]],
    "strategies": ["naive", "replay", {"ewc": {"fisher_samples": 8}}, "lwf", "safety-retune"],
    "seeds": [0],
    # Sized for 2 CPU cores (docs/performance.md, "End to end": what each size costs and why): 20 BBQ eval examples
    # per category (the default min_group_size), drawn as both questions of 10 contexts so each context is encoded
    # once; 12 GSM8K examples scored by the cheap log-likelihood of the gold solution (paired differences stay
    # tight); each training example seen once, in batches of 4 (the optimizer steps of 2 epochs of batch 8, half
    # the tokens); EWC's Fisher from 8 examples.
    "limit_train": {"bbq": 48, "gsm8k": 24},
    "limit_eval": {"bbq": 180, "gsm8k": 12},
    "task_options": {"gsm8k": {"primary_metric": "gold_logprob"}},
    "train": {"finetune": "lora", "lora_r": 16, "lora_alpha": 32.0, "learning_rate": 3.0e-3, "epochs": 1,
              "batch_size": 4, "micro_batch_size": 4, "max_length": 256},
    "eval_batch_size": 16,
    "metric_options": {k: METRIC_OPTION_DEFAULTS[k] for k in ("min_group_size", "n_boot")},
}

# The quick preset over three seeds: every question answered with training randomness in its intervals (seed 0's
# runs are the quick preset's own, same run ids, so a quick --out folder is reused). ~3x quick's time.
# Seeds as the paper uses them, at a size two CPU cores finish: naive and one mitigation (replay, the cheapest), both
# orders, seeds 0-2 (12 runs; seed 0's run ids are quick's, so a quick run's folder is reused).
QUICK_SEEDS = {**QUICK, "seeds": [0, 1, 2], "strategies": ["naive", "replay"],
               "description": "quick's sizes with seeds 0, 1, 2 for naive and replay (seed-aware intervals; 12 runs)"}

PAPER = {
    "description": "the full study: both orders, BBQ and ToxiGen x GSM8K and BoolQ, full and LoRA, lr sweep, "
                   "3 seeds (GPU; see docs/results.md for the cost)",
    "model": "smollm2-135m",
    "chains": [["bbq", "gsm8k"], ["gsm8k", "bbq"], ["toxigen", "gsm8k"], ["gsm8k", "toxigen"],
               ["bbq", "boolq"], ["boolq", "bbq"], ["toxigen", "boolq"], ["boolq", "toxigen"]],
    "strategies": ["naive", "replay", "ewc", "lwf", "safety-retune", "sam", "joint"],
    "seeds": [0, 1, 2],
    "finetune": ["full", "lora"],
    "learning_rate": [1.0e-5, 5.0e-5, 2.0e-4],
    "eval_tasks": ["commonsenseqa", "openbookqa"],
    "limit_train": 2000,
    "limit_eval": 1000,
    "sharpness": True,
}


@hookimpl
def chainforget_register_presets(registry):
    registry.register("quick", QUICK, QUICK["description"])
    registry.register("quick-seeds", QUICK_SEEDS, QUICK_SEEDS["description"])
    registry.register("paper", PAPER, PAPER["description"])
