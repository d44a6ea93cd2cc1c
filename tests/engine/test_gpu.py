"""CUDA checks (``pytest -m gpu``, run by bench/gpu_check.sh): the GPU computes what the CPU computes.

- multiple-choice scoring on CUDA agrees with the CPU in float32 and in bfloat16;
- one training step (full fine-tuning with bf16 autocast, LoRA on a bf16 base, and float32) agrees;
- a run killed by SIGKILL on CUDA resumes and ends with the records of an uninterrupted CUDA run.

Every test skips when CUDA is absent, and only then.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from run_helpers import records_by_key
from test_scoring import mc_examples, mc_spec
from test_template import make, stream, toy_examples, weights

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh)")]

# Tolerances: float32 differs between devices only by summation order; bf16 by its 8-bit mantissa.
TOL = {"float32": 2e-3, "bfloat16": 0.15}


def _tiny(dtype):
    from chainforget.engine.models import load_model, resolve_model

    return load_model(resolve_model("tiny"), dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mc_scoring_on_cuda_agrees_with_cpu(dtype):
    from chainforget.engine.scoring import score_examples

    exs = mc_examples(64, seed=7)
    cpu_model, tok = _tiny(getattr(torch, dtype))
    gpu_model, _ = _tiny(getattr(torch, dtype))
    gpu_model.to("cuda")
    cpu = score_examples(cpu_model, tok, mc_spec(), exs, batch_size=16, progress=False, device="cpu")
    gpu = score_examples(gpu_model, tok, mc_spec(), exs, batch_size=16, progress=False, device="cuda")
    worst = 0.0
    for a, b in zip(cpu, gpu):
        worst = max(worst, max(abs(x - y) for x, y in zip(a["option_logliks"], b["option_logliks"])))
        ranked = sorted(a["option_logliks"], reverse=True)
        if ranked[0] - ranked[1] > 4 * TOL[dtype]:
            assert a["pred"] == b["pred"], a["id"]
    assert worst < TOL[dtype], worst


@pytest.mark.parametrize("dtype, finetune", [("float32", "full"), ("bfloat16", "full"), ("bfloat16", "lora")])
def test_a_training_step_on_cuda_agrees_with_cpu(dtype, finetune):
    from chainforget.engine.precision import choose_precision

    results = {}
    for device in ("cpu", "cuda"):
        prec = choose_precision(dtype, finetune, device=device)
        model, tok = _tiny(prec.torch_weights)
        tpl = make(model, tok, device=device, finetune=finetune, mixed_precision=prec.autocast, batch_size=4,
                   micro_batch_size=2, max_steps=2, learning_rate=1e-3)
        tpl.train(stream(toy_examples(8))[0])
        results[device] = (tpl.step_losses, {n: w.float().cpu() for n, w in weights(tpl.model).items()})
    (loss_c, w_c), (loss_g, w_g) = results["cpu"], results["cuda"]
    assert loss_c == pytest.approx(loss_g, abs=TOL[dtype] * 10, rel=TOL[dtype])
    for name in w_c:
        scale = float(w_c[name].abs().max()) or 1.0
        assert float((w_c[name] - w_g[name]).abs().max()) <= TOL[dtype] * scale, name


def test_kill_and_resume_on_cuda(tmp_path):
    args = [sys.executable, "-m", "chainforget", "run", "--chain", "bbq,gsm8k", "--model", "tiny", "--strategy",
            "replay", "--limit-train", "24", "--limit-eval", "24", "--batch-size", "4", "--lr", "1e-3", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("CHAINFORGET_CRASH_AT", None)
    whole = subprocess.run([*args, "--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = subprocess.run([*args, "--out", str(tmp_path / "killed")], capture_output=True, text=True, timeout=600,
                            env={**env, "CHAINFORGET_CRASH_AT": "train/2+0.5"})
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL in the middle of stage 2's training
    resumed = subprocess.run([*args, "--out", str(tmp_path / "killed"), "--resume"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = records_by_key(tmp_path / "whole"), records_by_key(tmp_path / "killed")
    assert a.keys() == b.keys() and len(a) == 3 * 2 * 24
    for key, ra in a.items():
        if ra["option_logliks"]:
            assert max(abs(x - y) for x, y in zip(ra["option_logliks"], b[key]["option_logliks"])) < 0.05, key
    result = json.loads(next((tmp_path / "killed").glob("*/result.json")).read_text())
    assert result["spec"]["dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
