"""Train the ``tiny-trained`` checkpoint once, reproducibly: ``python scripts/train_tiny.py``.

Why: the ``tiny`` test model is random (loss ~10.7), so no task's own stage raises that task's score and every
gain-based metric (``relative_forgetting``, findings' question 1) is missing in tiny runs. ``tiny-trained`` is the
same ~3M-parameter Llama after language modelling on the shipped tasks' training *inputs*: it has read the
contexts and questions of BBQ, BoolQ, ToxiGen and GSM8K, but never an answer or a solution, so a run's own stage
on a task still has that task's answers to learn, and its score rises.

How: start from ``tiny`` (seed 0: the random model, no Hub) and train, with AdamW on packed 64-token sequences of
those prompts (CPU, one thread, seeded), its two blocks, its final norm and the embedding rows of the corpus's 8192
most frequent tokens (the embedding is tied to the LM head; the other 41k rows get no gradient and stay as drawn).
The file holds only what was trained (~600k float32 numbers, ~2.4 MB, safetensors); the loader rebuilds the rest
from the seed and checks its checksum (``engine.models.load_tiny_trained``). Same torch build and the same command
give the same tensors (checked: two runs, torch.equal on every tensor); the file's bytes may differ only in the
order safetensors writes its metadata, which the model's fingerprint ignores (it hashes the tensors).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "chainforget" / "data" / "models" / "tiny-trained.safetensors"
TASKS = ("bbq", "boolq", "toxigen", "gsm8k")


def corpus(seed: int) -> list[str]:
    """Every training prompt of the tasks (inputs only, no targets), shuffled with the seed."""
    from chainforget.plugins import registries

    tasks = registries("tasks")
    texts = [ex.prompt for name in TASKS for ex in tasks.get(name).train_examples()]
    random.Random(seed).shuffle(texts)
    return texts


def packed(tokenizer, texts: list[str], length: int):
    """One long stream of token ids (texts separated by EOS), cut into rows of ``length``: an int64 tensor."""
    import torch

    ids: list[int] = []
    for row in tokenizer(texts)["input_ids"]:
        ids.extend(row)
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // length
    return torch.tensor(ids[: n * length], dtype=torch.long).view(n, length)


def frequent_tokens(rows, k: int) -> list[int]:
    """The ``k`` most frequent token ids of the corpus (ties by id): the embedding rows training may change."""
    import torch

    counts = torch.bincount(rows.flatten())
    order = sorted(range(len(counts)), key=lambda i: (-int(counts[i]), i))
    return sorted(i for i in order[:k] if counts[i] > 0)


def train(steps: int, batch: int, length: int, lr: float, seed: int, rows_k: int, log_every: int = 50):
    """The trained model, the embedding rows it trained, the seed-0 embedding and a few numbers about the run."""
    import torch

    from chainforget.engine.models import block_state, load_tiny

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    model, tok = load_tiny(seed=0)
    data = packed(tok, corpus(seed), length)
    embedding = model.get_input_embeddings().weight
    seed_embedding = embedding.detach().clone()
    rows = frequent_tokens(data, rows_k)
    keep = torch.zeros(embedding.shape[0], 1)
    keep[rows] = 1.0
    embedding.register_hook(lambda grad: grad * keep)  # other rows get no gradient, so AdamW leaves them as drawn
    model.train()
    params = [p for p in model.parameters()]
    assert len(params) == len(block_state(model)) + 1  # blocks + the tied embedding
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / steps))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(steps):
        x = data[torch.randint(len(data), (batch,), generator=gen)]
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - t0:.0f}s", flush=True)
    model.eval()
    changed = (embedding.detach() != seed_embedding).any(dim=1).nonzero().flatten().tolist()
    assert set(changed) <= set(rows), "an embedding row outside the trained set changed"
    return model, rows, seed_embedding, {"sequences": len(data), "final_loss": float(loss.item())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--rows", type=int, default=8192, help="embedding rows trained (the most frequent tokens)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    import torch

    from chainforget.engine.models import save_tiny_trained

    model, rows, seed_embedding, stats = train(args.steps, args.batch, args.length, args.lr, args.seed, args.rows)
    save_tiny_trained(model, rows, seed_embedding, args.out, {
        "recipe": f"scripts/train_tiny.py --steps {args.steps} --batch {args.batch} --length {args.length} "
                  f"--lr {args.lr} --rows {args.rows} --seed {args.seed}", "final_loss": f"{stats['final_loss']:.4f}",
        "sequences": str(stats["sequences"]), "torch": torch.__version__})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
