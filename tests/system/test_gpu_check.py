"""bench/gpu_check.sh works: its --cpu-smoke run goes through every step on CPU and writes one complete JSON file.

The figures of a smoke run mean nothing (tiny model, a handful of steps); what is tested is that the script a GPU
session will run has no broken step. Its speed target (< 1 minute on an idle machine) lives in the script's own
time limit, not here.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


@pytest.mark.process
def test_cpu_smoke_runs_every_step_and_writes_the_figures(tmp_path):
    out = tmp_path / "figures" / "gpu_check.json"
    res = subprocess.run([str(SCRIPT), "--cpu-smoke", "--json", str(out)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path, env={**os.environ, "PYTHON": str(ROOT / ".venv/bin/python")})
    assert res.returncode == 0, res.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["mode"] == "cpu-smoke" and figures["device"] == "cpu"
    assert figures["ok"] is True and figures["complete"] is True
    steps = ("pytest_gpu", "train_full", "train_lora", "mc_scoring", "paper_slice")
    assert all(figures[s]["ok"] for s in steps)
    gpu_tests = figures["pytest_gpu"]
    assert gpu_tests["tests"] == gpu_tests["skipped"] >= 6  # every CUDA test skips cleanly without CUDA
    for name in ("train_full", "train_lora"):
        t = figures[name]
        assert t["steps"] == figures["sizes"]["steps"] and t["tokens_per_s"] > 0 and t["mfu"] is None
        assert t["flops_per_token"] > 0 and t["memory_estimate_gib"] > 0
    assert figures["train_lora"]["weights_dtype"] == "float32"  # auto = float32 on CPU
    assert figures["mc_scoring"]["examples"] == figures["sizes"]["score_examples"]
    assert figures["mc_scoring"]["examples_per_s"] > 0
    slice_ = figures["paper_slice"]
    assert slice_["run_id"] and len(slice_["score_matrix"]) == 3  # base + both chain steps
    assert slice_["suite"]["chains"] == [["bbq", "gsm8k"]] and slice_["dtype"] == "float32"
    assert [line for line in res.stderr.splitlines() if line.startswith("gpu_check: ")][-1].startswith(
        f"gpu_check: wrote {out} (all steps ok")


def test_bad_usage_and_gpu_mode_without_a_gpu_are_one_line_errors(tmp_path):
    bad = subprocess.run([str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: unknown option --bogus; use --cpu-smoke and/or --json PATH"]
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: GPU mode would run the real check")
    res = subprocess.run([str(SCRIPT), "--json", str(tmp_path / "x.json")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHON": str(ROOT / ".venv/bin/python")})
    assert res.returncode == 2 and "no CUDA device is visible; run with --cpu-smoke" in res.stderr
    assert not (tmp_path / "x.json").exists()
