"""Sharpness: power iteration on Hessian-vector products against known spectra, and on the tiny model."""

import math
import random
from dataclasses import dataclass

import pytest
import torch

from chainforget.errors import ConfigError
from chainforget.metrics.sharpness import lambda_max, model_sharpness, probe_batch


@dataclass(frozen=True)
class Ex:
    id: str
    prompt: str
    target: str


EXAMPLES = [Ex(f"q{i:02d}", f"Question: what is {i} plus {i}?\nAnswer:", f" {2 * i}") for i in range(12)]


def quadratic(eigenvalues, seed=0):
    """A parameter x and the loss 0.5 x^T A x with A = Q diag(eigenvalues) Q^T for a random rotation Q."""
    gen = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    x = torch.nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64))
    return x, a


@pytest.mark.parametrize("eigenvalues", [
    [5.0, 3.0, 1.0, 0.5, 0.1, 0.01],
    [0.02 * k for k in range(1, 40)] + [7.5],
    [2.0, -1.0, 0.3, 1.2],
])
def test_power_iteration_recovers_the_top_eigenvalue_of_a_quadratic(eigenvalues):
    x, a = quadratic(eigenvalues)
    value, iterations, converged = lambda_max(lambda: 0.5 * x @ a @ x, [x])
    top = max(eigenvalues, key=abs)
    assert converged and 1 < iterations < 100
    assert abs(value - top) / abs(top) < 1e-3


def test_parameters_split_over_several_tensors_form_one_hessian():
    # loss = 0.5 [u, w]^T A [u, w]: the cross terms couple the two tensors, so the top eigenvalue is A's, not a block's
    x, a = quadratic([4.0, 2.5, 1.0, 0.2])
    u = torch.nn.Parameter(x.detach()[:2].clone())
    w = torch.nn.Parameter(x.detach()[2:].clone())
    value, _, converged = lambda_max(lambda: 0.5 * torch.cat([u, w]) @ a @ torch.cat([u, w]), [u, w])
    assert converged and value == pytest.approx(4.0, rel=1e-3)


def test_iteration_cap_reports_not_converged_and_seed_is_reproducible():
    x, a = quadratic([1.0, 0.99, 0.98, 0.5])  # tiny eigengap: slow convergence
    assert lambda_max(lambda: 0.5 * x @ a @ x, [x], max_iter=3) [1:] == (3, False)
    assert lambda_max(lambda: 0.5 * x @ a @ x, [x], seed=4) == lambda_max(lambda: 0.5 * x @ a @ x, [x], seed=4)
    with pytest.raises(ConfigError, match="trainable parameters"):
        lambda_max(lambda: x.sum(), [])


def test_probe_batch_masks_prompt_tokens(tokenizer):
    batch = probe_batch(EXAMPLES[:3], tokenizer, max_length=256)
    for row, ex in enumerate(EXAMPLES[:3]):
        n_prompt = len(tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
        target = tokenizer(ex.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        labels = batch["labels"][row]
        assert (labels[:n_prompt] == -100).all()
        assert labels[n_prompt:n_prompt + len(target)].tolist() == target
        assert int(batch["attention_mask"][row].sum()) == n_prompt + len(target)
    short = probe_batch(EXAMPLES[:1], tokenizer, max_length=4)
    assert short["input_ids"].shape[1] <= 4 and (short["labels"] != -100).any()  # the target survives truncation


def test_tiny_model_sharpness_matches_the_exact_hessian_of_its_trainable_parameters(tiny_model):
    model, tokenizer = tiny_model
    for name, param in model.named_parameters():
        param.requires_grad_(name == "model.norm.weight")  # 64 trainable numbers: the exact Hessian is cheap
    model.train()
    value, _, converged = model_sharpness(model, tokenizer, EXAMPLES, batch_size=2, seed=1, max_length=12,
                                          tol=1e-5, max_iter=500)
    assert converged and model.training  # the mode is restored
    # the same probe batch and loss, Hessian built column by column
    probe = random.Random(1).sample(sorted(EXAMPLES, key=lambda e: e.id), 2)
    batch = probe_batch(probe, tokenizer, 12)
    weight = model.model.norm.weight
    model.eval()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != -100  # the loss on target tokens only: prompt and padding positions do not count
    loss = torch.nn.functional.cross_entropy(logits[mask], labels[mask], reduction="mean")
    (grad,) = torch.autograd.grad(loss, weight, create_graph=True)
    (hessian,) = torch.autograd.grad(grad, weight, grad_outputs=torch.eye(grad.numel()), is_grads_batched=True)
    spectrum = torch.linalg.eigvalsh((0.5 * (hessian + hessian.T)).double())
    top = float(spectrum[spectrum.abs().argmax()])
    assert top > 0 and value == pytest.approx(top, rel=1e-3)


def test_tiny_model_full_sharpness_is_finite_and_positive(tiny_model):
    model, tokenizer = tiny_model
    value, iterations, _ = model_sharpness(model, tokenizer, EXAMPLES, batch_size=1, max_length=12, max_iter=5)
    assert math.isfinite(value) and value > 0 and 2 <= iterations <= 10
    assert all(p.grad is None for p in model.parameters())  # measuring does not leave gradients behind


def test_negative_dominant_eigenvalue_still_gives_the_largest_one():
    # power iteration alone would return -6 (largest magnitude); lambda_max is the largest eigenvalue, 4
    x, a = quadratic([-6.0, 4.0, 1.0, 0.5])
    value, iterations, converged = lambda_max(lambda: 0.5 * x @ a @ x, [x], tol=1e-6)
    assert converged and value == pytest.approx(4.0, rel=1e-4)
    x, a = quadratic([-3.0, -1.0, -0.5])  # a maximum: every eigenvalue negative
    assert lambda_max(lambda: 0.5 * x @ a @ x, [x], tol=1e-6)[0] == pytest.approx(-0.5, rel=1e-4)
