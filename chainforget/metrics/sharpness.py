"""Sharpness: the top Hessian eigenvalue of the training loss, by power iteration on Hessian-vector products.

The paper finds that the Hessian spectral radius at the end of a training stage correlates with how much the next
stage makes the model forget. ``lambda_max`` needs only a loss closure and the parameters to differentiate (the
trainable ones: full fine-tuning or LoRA adapters); ``model_sharpness`` builds that closure on a fixed, seeded probe
batch of (prompt, target) examples with the loss on target tokens only. torch is imported lazily.
"""

from __future__ import annotations

import inspect
import math
import random
from typing import Any, Callable, Sequence

from chainforget.errors import ConfigError, DataError, TrainingError


def lambda_max(loss_fn: Callable[[], Any], params: Sequence[Any], *, tol: float = 1e-3, max_iter: int = 100,
               seed: int = 0) -> tuple[float, int, bool]:
    """Largest Hessian eigenvalue of ``loss_fn()`` w.r.t. ``params``: ``(value, iterations, converged)``.

    Power iteration from a seeded Gaussian vector; each step is one Hessian-vector product by double backward, the
    estimate is the Rayleigh quotient ``v.Hv``; converged when successive estimates differ by at most
    ``tol * |estimate|``. Power iteration finds the eigenvalue of largest magnitude; when that one is negative (far
    from a minimum) a second pass on ``H - lambda_1 I`` finds the largest one, so ``iterations`` may reach
    ``2 * max_iter``. Attention runs on PyTorch's math kernel here: the fused ones have no double backward.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if tol <= 0 or max_iter < 1:
        raise ConfigError(f"sharpness needs tol > 0 and max_iter >= 1, got tol={tol} and max_iter={max_iter}")
    with sdpa_kernel([SDPBackend.MATH]):
        params, hvp = _hessian_vector_product(loss_fn, list(params))
        if not params:
            return 0.0, 0, True
        dominant, used, converged = _power_iteration(hvp, params, 0.0, tol, max_iter, seed)
        if dominant >= 0:
            return dominant, used, converged
        top, more, converged_too = _power_iteration(hvp, params, dominant, tol, max_iter, seed + 1)
        return top, used + more, converged and converged_too


def _hessian_vector_product(loss_fn, params):
    """The trainable parameters the loss depends on, and ``v -> H v`` for them (one graph, reused)."""
    import torch

    if not params:
        raise ConfigError("sharpness needs trainable parameters, and the model has none requiring gradients")
    loss = loss_fn()
    if not torch.isfinite(loss):
        raise TrainingError(f"the probe loss is {loss.item()}; the model diverged, lower the learning rate")
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    # A parameter whose gradient is constant (unused, or the loss is linear in it) has an all-zero Hessian row and
    # column, so leaving it out changes no eigenvalue but the trailing zeros.
    kept = [(p, g) for p, g in zip(params, grads) if g is not None and g.requires_grad]
    params, grads = [p for p, _ in kept], [g for _, g in kept]

    def hvp(vec):
        out = torch.autograd.grad(grads, params, grad_outputs=vec, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, out)]

    return params, hvp


def _power_iteration(hvp, params, shift: float, tol: float, max_iter: int, seed: int) -> tuple[float, int, bool]:
    """Iterate ``v <- (H - shift I) v / |.|``; track the Rayleigh quotient ``v.Hv`` of H itself.

    With ``shift`` = the (negative) dominant eigenvalue, the iterates converge to the top eigenvector of H, and the
    tracked quotient to the largest eigenvalue; dot products accumulate in float64.
    """
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    vec = _normalised([torch.randn(p.shape, generator=gen, dtype=torch.float32).to(device=p.device, dtype=p.dtype)
                       for p in params])
    previous, value = None, 0.0
    for iteration in range(1, max_iter + 1):
        hv = hvp(vec)
        value = _dot(vec, hv)
        if not math.isfinite(value):
            raise TrainingError("a Hessian-vector product is not finite; the model diverged, lower the learning rate")
        out = [h - shift * v for h, v in zip(hv, vec)] if shift else hv
        norm = math.sqrt(_dot(out, out))
        if norm == 0.0:
            return value, iteration, True  # the operator vanishes along every direction tried
        vec = [h / norm for h in out]
        if previous is not None and abs(value - previous) <= tol * abs(value):
            return value, iteration, True
        previous = value
    return value, max_iter, False


def _dot(a: list, b: list) -> float:
    import torch

    return float(sum(torch.sum(x * y, dtype=torch.float64) for x, y in zip(a, b)))


def _normalised(vec: list) -> list:
    norm = math.sqrt(_dot(vec, vec))
    return [v / norm for v in vec]


def probe_batch(examples: Sequence[Any], tokenizer: Any, max_length: int = 256) -> dict[str, Any]:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` for prompt + target (+ EOS); labels -100 on prompt.

    Sequences longer than ``max_length`` lose prompt tokens from the left first, so the target is kept.
    """
    import torch

    eos = getattr(tokenizer, "eos_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else (eos if eos is not None else 0)
    rows = []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(ex.target, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        target = target[:max_length]
        prompt = prompt[max(0, len(prompt) + len(target) - max_length):]
        rows.append((prompt + target, [-100] * len(prompt) + target))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def model_sharpness(model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 8, seed: int = 0,
                    max_length: int = 256, collate: Callable[..., dict] | None = None, **kw: Any
                    ) -> tuple[float, int, bool]:
    """``lambda_max`` of the mean target-token cross-entropy on a seeded probe batch, w.r.t. trainable parameters.

    The probe is ``batch_size`` examples drawn with ``random.Random(seed)`` from ``examples`` sorted by id, so the
    same stage data gives the same batch. ``collate(examples, tokenizer, max_length)`` may replace
    :func:`probe_batch` (the engine's collation). Dropout is off while measuring; the model's mode is restored.
    Extra keywords (``tol``, ``max_iter``) go to :func:`lambda_max`.
    """
    import torch.nn.functional as F

    examples = sorted(examples, key=lambda e: str(e.id))
    if not examples:
        raise DataError("sharpness needs at least one example of the just-trained task; the stage has none")
    probe = random.Random(seed).sample(examples, min(int(batch_size), len(examples)))
    batch = (collate or probe_batch)(probe, tokenizer, max_length)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    n_target = int((targets != -100).sum())
    if n_target == 0:
        raise DataError("the sharpness probe batch has no target tokens; the examples' targets are empty")
    # Only positions that predict a target token need vocabulary-sized logits (the bulk of the memory and time).
    positions = (targets != -100).any(dim=0).nonzero().flatten()
    targets = targets[:, positions]
    params = [p for p in model.parameters() if p.requires_grad]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft passes kwargs through
    keep = "logits_to_keep" in inspect.signature(base.forward).parameters

    def loss_fn():
        if keep:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           logits_to_keep=positions).logits
        else:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, positions]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100,
                               reduction="sum") / n_target

    was_training = model.training
    model.eval()
    try:
        return lambda_max(loss_fn, params, seed=seed, **kw)
    finally:
        model.train(was_training)
