"""What the checksummed DONE markers cost next to training (issue 19): sha256 of a prefix entry vs optimizer steps.

A prefix entry's marker holds the sha256 of its weights, records and meta; writing it reads the fresh files back
once, reusing the entry verifies them once more. This measures, in one process on the embedded smollm2-135m:

- ``write``: ``PrefixStore.save`` of the full fine-tuning weights (serialize, atomic write, checksum marker);
- ``verify``: ``PrefixStore.complete`` (every file's sha256 against the marker), the cost added to each reuse;
- ``sha256_mb_s``: raw hashing throughput;
- ``step``: one full fine-tuning optimizer step (batch 8, 128 tokens, AdamW), the unit training is made of;
- the same for LoRA (r=16) adapters, the quick preset's fine-tuning.

    .venv/bin/python bench/bench_checksum.py [--steps 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import hashlib

    import torch

    from chainforget.engine.models import load_smollm2
    from chainforget.engine.training import TrainConfig, apply_finetune
    from chainforget.store.prefix import PrefixStore

    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"cpu_threads": torch.get_num_threads()}
    buf = os.urandom(64 << 20)
    out["sha256_mb_s"] = round(64 / _best(lambda: hashlib.sha256(buf).hexdigest()), 1)

    def measure(finetune: str) -> dict:
        model, _ = load_smollm2()
        model = apply_finetune(model, TrainConfig(finetune=finetune, lora_r=16, lora_alpha=32.0))
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=1e-5)
        ids = torch.randint(0, 1000, (8, 128))

        def step():
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()

        step()  # warm-up (allocations, optimizer state)
        step_s = _best(step, args.steps)
        with tempfile.TemporaryDirectory() as tmp:
            store = PrefixStore(Path(tmp))
            write_s = _best(lambda: store.save("s1-0000000000000000", model, [{"x": 1}], {"stage": "x"}))
            verify_s = _best(lambda: store.complete("s1-0000000000000000"))
            size = (store.path("s1-0000000000000000") / "weights.safetensors").stat().st_size
        return {"weights_mb": round(size / 1e6, 1), "write_s": round(write_s, 3), "verify_s": round(verify_s, 3),
                "step_s": round(step_s, 3), "verify_in_steps": round(verify_s / step_s, 3)}

    out["full"] = measure("full")
    out["lora"] = measure("lora")
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
