"""One run across two processes with `accelerate launch` (gloo DDP on CPU: the code path of a multi-GPU launch).

Rank 0 owns locks, decisions and files; every rank trains its share of each optimizer batch and scores its share of
the evaluation set. The launched run must equal a single-process run up to float rounding, print once, refuse a
held lock with one error line on every rank, and resume after a planted fault.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import records_by_key

from chainforget.engine.distributed import Ranks, shard, unshard
from chainforget.errors import ConfigError

RUN_ARGS = ["run", "--chain", "bbq,gsm8k", "--model", "tiny", "--strategy", "ewc", "--limit-train", "13",
            "--limit-eval", "20", "--batch-size", "4", "--micro-batch-size", "1", "--lr", "3e-3", "-q"]


# ------------------------------------------------------------------------------------------- in-process pieces
def test_shard_and_unshard_are_inverse():
    items = list(range(11))
    for size in (1, 2, 3, 5, 13):
        parts = [shard(items, r, size) for r in range(size)]
        assert sorted(x for p in parts for x in p) == items
        assert unshard(parts) == items


def test_single_process_ranks_are_plain_calls():
    ranks = Ranks()
    assert ranks.is_main and not ranks.distributed
    assert ranks.on_main(lambda: 41 + 1) == 42
    assert ranks.broadcast("x") == "x"
    with pytest.raises(ConfigError, match="boom"):
        ranks.on_main(lambda: (_ for _ in ()).throw(ConfigError("boom")))
    ranks.barrier()  # no process group: must not touch torch.distributed


def test_a_process_without_examples_gets_a_zero_gradient_micro_batch(tiny_model):
    """A last batch smaller than the process count: the empty rank still runs forward/backward (DDP needs it), on
    a micro-batch whose labels are all masked, so it adds exactly nothing."""
    import torch

    from chainforget.engine.collate import TrainBatches, encode_examples
    from chainforget.engine.training import target_token_loss
    from chainforget.tasks import resolve_task

    model, tok = tiny_model
    examples = resolve_task("bbq").examples()[:5]
    encoded = encode_examples(tok, examples, 256)
    kwargs = dict(batch_size=4, micro_batch_size=1, seed=0, sort_by_length=False, pad_id=tok.eos_token_id)
    rank0 = list(TrainBatches(encoded, process_index=0, num_processes=2, **kwargs))
    rank1 = list(TrainBatches(encoded, process_index=1, num_processes=2, **kwargs))
    last0, last1 = rank0[-1], rank1[-1]
    assert last0.n_examples == last1.n_examples == 1 and last0.n_target == last1.n_target > 0
    assert [mb["n_target"] for mb in last1.micro_batches] == [0]
    mb = last1.micro_batches[0]
    assert (mb["labels"] == -100).all()
    loss = target_token_loss(model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits,
                             mb["labels"], "sum")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert float(loss.detach()) == 0.0 and grads and all(torch.count_nonzero(g) == 0 for g in grads)


# ------------------------------------------------------------------------------------------- launched processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1", **extra}
    env.pop("CHAINFORGET_CRASH_AT", None)
    return env


def _launch(tmp_path: Path, args: list[str], **env) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "chainforget", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path, **env), timeout=600,
                          cwd=tmp_path)


def _single(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chainforget", *args], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=600, cwd=tmp_path)


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith("_")]
    return run_dir


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One two-process run and the same run in one process (separate --out: nothing shared)."""
    tmp = tmp_path_factory.mktemp("dist")
    multi = _launch(tmp, [*RUN_ARGS, "--out", str(tmp / "multi")])
    single = _single(tmp, [*RUN_ARGS, "--out", str(tmp / "single")])
    return tmp, multi, single


def test_two_process_run_equals_one_process_run(launched):
    tmp, multi, single = launched
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    # the summary, printed once (by rank 0 only); the runs differ only in the folder printed last (their own --out)
    assert multi.stdout.replace(str(tmp / "multi"), "OUT") == single.stdout.replace(str(tmp / "single"), "OUT")
    assert multi.stdout.count("score matrix") == 1
    a, b = records_by_key(tmp / "multi"), records_by_key(tmp / "single")
    assert a.keys() == b.keys() and len(a) == 3 * 2 * 20  # rows base, bbq, gsm8k x 2 tasks x 20 examples
    worst = 0.0
    for key, ra in a.items():
        rb = b[key]
        if rb["option_logliks"]:
            worst = max(worst, max(abs(x - y) for x, y in zip(ra["option_logliks"], rb["option_logliks"])))
            ranked = sorted(rb["option_logliks"], reverse=True)
            if ranked[0] - ranked[1] > 1e-3:  # a clear winner cannot flip through float rounding
                assert ra["pred"] == rb["pred"], key
    assert 0 < worst < 1e-3 or worst == 0
    trained = [k for k in a if k[0] == 2 and a[k]["option_logliks"]]
    assert any(a[k]["option_logliks"] != a[(0, k[1], k[2])]["option_logliks"] for k in trained)  # it did train
    result = json.loads((_run_dir(tmp / "multi") / "result.json").read_text())
    assert result["timings"]["processes"] == 2
    assert json.loads((_run_dir(tmp / "single") / "result.json").read_text())["timings"]["processes"] == 1
    single_result = json.loads((_run_dir(tmp / "single") / "result.json").read_text())
    assert result["run_id"] == single_result["run_id"]  # the process count is not part of the config


def test_trained_weights_match_one_process(launched):
    from safetensors.torch import load_file

    tmp = launched[0]
    for key in sorted(p.name for p in (tmp / "single" / "_prefix").glob("s*") if p.is_dir()):
        w_single = load_file(tmp / "single" / "_prefix" / key / "weights.safetensors")
        w_multi = load_file(tmp / "multi" / "_prefix" / key / "weights.safetensors")
        assert w_single.keys() == w_multi.keys()
        assert max(float((w_single[n] - w_multi[n]).abs().max()) for n in w_single) < 1e-4


def test_rerun_under_launch_is_a_no_op(launched):
    tmp = launched[0]
    before = (_run_dir(tmp / "multi") / "result.json").read_bytes()
    again = _launch(tmp, [*RUN_ARGS[:-1], "--out", str(tmp / "multi")])
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("complete, nothing to do") == 1
    assert (_run_dir(tmp / "multi") / "result.json").read_bytes() == before


def test_held_lock_stops_every_rank_with_one_error_line(launched):
    from filelock import FileLock

    tmp = launched[0]
    out = tmp / "locked"
    run_dir = out / _run_dir(tmp / "multi").name
    run_dir.mkdir(parents=True)
    with FileLock(str(run_dir / ".lock")):
        res = _launch(tmp, [*RUN_ARGS, "--out", str(out)])
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: run {run_dir.name} is being computed by another process (lock {run_dir / '.lock'}); "
                     f"wait for it to finish or pass a different --out"]
    # rank 0 stops with the user-error status; rank 1 either does too or, when the launcher's SIGTERM (sent once
    # rank 0 failed) reaches it first, stops cleanly on that signal (143, see docs/reliability.md): none hangs or crashes
    codes = re.findall(r"exitcode\s+:\s*(-?\d+)", res.stderr)
    assert len(codes) == 2 and "2" in codes and set(codes) <= {"2", "143", "-15"}, codes
    assert "[rank" not in res.stderr  # no traceback from our processes (the launcher adds its own report)
    assert not (run_dir / "result.json").exists()


def test_nan_stops_every_rank_and_resume_under_launch_finishes_the_run(launched):
    tmp = launched[0]
    out = tmp / "nan"
    res = _launch(tmp, [*RUN_ARGS, "--out", str(out)], CHAINFORGET_NAN_AT="train/2")
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "non-finite loss" in errors[0] and "experience 2" in errors[0], res.stderr[-3000:]
    codes = re.findall(r"exitcode\s+:\s*(-?\d+)", res.stderr)  # the second rank may stop on the launcher's SIGTERM
    assert len(codes) == 2 and "2" in codes and set(codes) <= {"2", "143", "-15"}, codes
    run_dir = _run_dir(out)
    assert (run_dir / "checkpoints" / "step-1" / "DONE").exists() and not (run_dir / "result.json").exists()
    resumed = _launch(tmp, [*RUN_ARGS[:-1], "--resume", "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "stage 1 (bbq): resumed from" in resumed.stderr
    assert resumed.stderr.count("stage 2 (gsm8k): training") == 1  # status lines from rank 0 only
    a, b = records_by_key(out), records_by_key(tmp / "multi")
    assert a.keys() == b.keys()
    for key, ra in a.items():
        if ra["option_logliks"]:
            assert max(abs(x - y) for x, y in zip(ra["option_logliks"], b[key]["option_logliks"])) < 1e-4, key


def test_leaderboard_under_launch_runs_each_run_across_the_processes(launched):
    tmp = launched[0]
    suite = tmp / "suite.yaml"
    suite.write_text("model: tiny\nchains: [[gsm8k, bbq]]\nstrategies: [naive]\nseeds: [0]\n"
                     "limit_train: 9\nlimit_eval: 12\n")
    res = _launch(tmp, ["leaderboard", "--suite", str(suite), "--out", str(tmp / "lb"), "-q", "--format", "csv"])
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("strategy,chain,") and len(lines) == 2  # one table, printed by rank 0 only
    assert lines[1].startswith('naive,"gsm8k,bbq",1,')
    result = json.loads((_run_dir(tmp / "lb") / "result.json").read_text())
    assert result["timings"]["processes"] == 2 and result["timings"]["train_seconds"]


def test_an_fsdp_launch_is_refused_with_one_line(tmp_path):
    """accelerate launch --use_fsdp sets ACCELERATE_USE_FSDP: every process stops before any work."""
    res = subprocess.run([sys.executable, "-m", "chainforget", *RUN_ARGS, "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**_env(tmp_path), "ACCELERATE_USE_FSDP": "true"})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: sharded training (accelerate --use_fsdp) is not supported yet; launch without FSDP: every process "
        "then holds the whole model (DDP), and --finetune lora, --gradient-checkpointing or a smaller "
        "--micro-batch-size make a large model fit one GPU"]
    assert not (tmp_path / "out").exists()
