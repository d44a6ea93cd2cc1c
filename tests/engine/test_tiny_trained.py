"""The shipped `tiny-trained` checkpoint: small, safetensors only, rebuilt from tiny's seed, and it has learned."""

import dataclasses

import pytest
import torch

from chainforget.engine import models
from chainforget.engine.probe import example_batches, example_loss
from chainforget.errors import ModelError
from chainforget.plugins import registries


def test_file_is_small_safetensors_of_what_training_changed():
    path = models.tiny_trained_path()
    assert path.is_file() and path.stat().st_size < 4_000_000
    assert path.read_bytes()[:8] != b"\x80\x04\x95"[:8]  # not a pickle
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    tiny, _ = models.load_tiny(seed=0)
    assert keys == set(models.block_state(tiny)) | {models.ROWS_INDEX, models.ROWS_VALUES}
    assert meta["recipe"].startswith("scripts/train_tiny.py")


def test_registered_and_differs_from_tiny_only_where_trained():
    spec = registries("models").get("tiny-trained")
    assert spec.fingerprint().startswith("tiny-trained-") and spec.fingerprint() != "tiny-trained-missing"
    trained, tok = models.load_model(spec)
    tiny, _ = models.load_tiny(seed=0)
    from safetensors import safe_open

    with safe_open(str(models.tiny_trained_path()), framework="pt") as f:
        index = f.get_tensor(models.ROWS_INDEX)
    frozen = torch.ones(tiny.config.vocab_size, dtype=torch.bool)
    frozen[index] = False
    a, b = trained.get_input_embeddings().weight, tiny.get_input_embeddings().weight
    assert torch.equal(a[frozen], b[frozen]) and not torch.equal(a[~frozen], b[~frozen])
    assert trained.lm_head.weight.data_ptr() == a.data_ptr()  # still tied
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, tiny.model.layers[0].mlp.up_proj.weight)


def test_it_has_learned_the_tasks_inputs(tokenizer):
    """Language-modelling loss on held-out BBQ and GSM8K prompts: far below the random tiny model's ~10.8."""
    trained, _ = models.load_tiny_trained()
    tiny, _ = models.load_tiny(seed=0)
    tasks = registries("tasks")
    exs = [ex for name in ("bbq", "gsm8k") for ex in tasks.get(name).eval_examples(6)]
    prompts = [dataclasses.replace(ex, prompt="", target=ex.prompt) for ex in exs]  # language modelling of prompts
    with torch.no_grad():
        (batch,) = example_batches(tokenizer, prompts, max_length=128, batch_size=len(prompts))
        assert example_loss(tiny, batch).item() > 10.0
        assert example_loss(trained, batch).item() < 8.0


def test_a_file_for_another_embedding_is_refused(tmp_path, monkeypatch):
    other, _ = models.load_tiny(seed=1)
    path = models.save_tiny_trained(other, [1, 2, 3], other.get_input_embeddings().weight, tmp_path / "t.safetensors",
                                    {"recipe": "test"})
    monkeypatch.setattr(models, "tiny_trained_path", lambda: path)
    with pytest.raises(ModelError, match="another seed-0 embedding"):
        models.load_tiny_trained()
    path.write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        models.load_tiny_trained()
    path.unlink()
    with pytest.raises(ModelError, match="is missing"):
        models.load_tiny_trained()


def test_fingerprint_follows_the_weights_not_the_file_bytes(tmp_path, monkeypatch):
    """Retraining gives the same tensors but safetensors may order its metadata differently: same run ids."""
    model, _ = models.load_tiny(seed=0)
    seed = model.get_input_embeddings().weight
    paths = [models.save_tiny_trained(model, [5], seed, tmp_path / f"{i}.safetensors", meta)
             for i, meta in enumerate(({"recipe": "a", "x": "1"}, {"x": "2", "recipe": "b"}))]
    with torch.no_grad():
        model.model.norm.weight.add_(1e-3)
    paths.append(models.save_tiny_trained(model, [5], seed, tmp_path / "2.safetensors", {"recipe": "a", "x": "1"}))
    prints = []
    for path in paths:
        monkeypatch.setattr(models, "tiny_trained_path", lambda path=path: path)
        prints.append(models.tiny_trained_fingerprint())
    assert prints[0] == prints[1] != prints[2]
    assert paths[0].read_bytes() != paths[1].read_bytes()
