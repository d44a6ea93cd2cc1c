import os
import subprocess
import sys

import pytest

from chainforget.errors import ModelError


def test_tiny_is_seeded_and_small(tiny_model):
    import torch

    from chainforget.engine.models import load_tiny

    model, tok = tiny_model
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 10_000_000
    assert model.config.vocab_size == len(tok)
    other, _ = load_tiny(seed=0)
    different, _ = load_tiny(seed=1)
    a = model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(a, other.model.layers[0].mlp.up_proj.weight)
    assert not torch.equal(a, different.model.layers[0].mlp.up_proj.weight)


def test_local_model_errors(tmp_path):
    from chainforget.engine.models import load_local, resolve_model

    with pytest.raises(ModelError, match="does not exist"):
        load_local(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="no config.json"):
        load_local(str(tmp_path))
    with pytest.raises(Exception, match="did you mean 'tiny'"):
        resolve_model("tiyn")


def test_local_model_round_trip(tmp_path, tiny_model):
    import torch

    from chainforget.engine.models import resolve_model

    model, tok = tiny_model
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    tok.save_pretrained(str(tmp_path))
    spec = resolve_model(str(tmp_path))
    loaded, _ = spec.load()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert len(spec.fingerprint()) == 16


@pytest.mark.slow
def test_smollm2_converts_once_and_loads_fast(tmp_path):
    """Converts the embedded GGUF into a fresh CHAINFORGET_HOME, then a second load reads the safetensors cache."""
    code = (
        "import time, torch\n"
        "from chainforget.engine.models import load_smollm2, smollm2_dir\n"
        "m, tok = load_smollm2()\n"
        "t = time.time(); m2, _ = load_smollm2(); dt = time.time() - t\n"
        "ids = tok('The capital of France is', return_tensors='pt')\n"
        "out = m2.generate(**ids, max_new_tokens=3, do_sample=False)\n"
        "print(tok.decode(out[0][ids['input_ids'].shape[1]:]).strip(), dt, ','.join(sorted(p.name for p in smollm2_dir().iterdir())), sep='|')\n"
    )
    env = dict(os.environ, CHAINFORGET_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    answer, seconds, files = out.stdout.strip().splitlines()[-1].split("|")
    assert "Paris" in answer
    assert "model.safetensors" in files.split(",") and ".complete" in files.split(",")
    assert float(seconds) < 10  # the second load reads the cache instead of converting again
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
