"""--dtype, --chat-template and the fit check through whole runs on the tiny model; default run ids unchanged."""

import gzip
import json
import struct
import subprocess
import sys

import pytest

from chainforget.benchmark.plan import resolve_run
from chainforget.benchmark.runner import run
from chainforget.config.spec import SPEC_VERSION, RunSpec, short_hash
from chainforget.errors import ConfigError

SMALL = dict(model="tiny", limit_train={"bbq": 8}, limit_eval={"bbq": 12},
             train={"batch_size": 4, "micro_batch_size": 2, "max_length": 256, "learning_rate": 1e-3,
                    "finetune": "lora"}, eval_batch_size=8)
FAST = {"n_boot": 20}


def _records(run_dir):
    out = []
    for f in sorted(run_dir.glob("records/*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            out += [json.loads(line) for line in fh]
    return out


def test_default_run_ids_are_the_ids_before_the_new_settings():
    spec = resolve_run(RunSpec(chain=("bbq", "gsm8k"), model="tiny")).spec
    assert spec.dtype == "float32"  # auto on this CPU
    old = {k: v for k, v in spec.to_dict().items() if k not in ("dtype", "chat_template", "trust_remote_code")}
    assert spec.run_id().endswith("_" + short_hash({"v": SPEC_VERSION, **old}, 10))
    ids = {resolve_run(RunSpec(chain=("bbq",), model="tiny", **kw)).spec.run_id()
           for kw in ({}, {"dtype": "float32"}, {"dtype": "auto"}, {"dtype": "bfloat16"}, {"chat_template": True},
                      {"trust_remote_code": True})}
    assert len(ids) == 4  # the first three are one run; bf16, chat and remote code each a new id


def test_bf16_lora_run_and_a_chat_template_run(tmp_path):
    bf16 = run(RunSpec(chain=("bbq",), dtype="bfloat16", **SMALL), tmp_path, progress=False, metric_options=FAST)
    chat = run(RunSpec(chain=("bbq",), chat_template=True, **SMALL), tmp_path, progress=False, metric_options=FAST)
    plain = run(RunSpec(chain=("bbq",), **SMALL), tmp_path, progress=False, metric_options=FAST)
    assert bf16["spec"]["dtype"] == "bfloat16" and plain["spec"]["dtype"] == "float32"
    assert chat["spec"]["chat_template"] is True
    assert len({bf16["run_id"], chat["run_id"], plain["run_id"]}) == 3
    # nothing was reused across them: each evaluated its own base model
    for result in (bf16, chat, plain):
        assert result["timings"]["reused"] == {}, result["run_id"]
    rb, rc, rp = (_records(tmp_path / r["run_id"]) for r in (bf16, chat, plain))
    assert len(rb) == len(rp) == len(rc) == 2 * 12
    assert [r["id"] for r in rb] == [r["id"] for r in rp]
    assert any(a["option_logliks"] != b["option_logliks"] for a, b in zip(rb, rp))  # bf16 rounding shows
    assert any(a["option_logliks"] != b["option_logliks"] for a, b in zip(rc, rp))  # so does the chat wrapping


def _fake_huge_model(path):
    """A Llama-70B-shaped directory whose safetensors header declares the weights (the data is absent: the fit
    check must stop before anything reads it)."""
    path.mkdir()
    cfg = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=8192, intermediate_size=28672,
               num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, vocab_size=128256)
    (path / "config.json").write_text(json.dumps(cfg))
    header = {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [128256, 8192], "data_offsets": [0, 0]},
              "lm_head.weight": {"dtype": "BF16", "shape": [128256, 8192], "data_offsets": [0, 0]}}
    for i in range(80):
        for name, shape in (("self_attn.q_proj", [8192, 8192]), ("self_attn.k_proj", [1024, 8192]),
                            ("self_attn.v_proj", [1024, 8192]), ("self_attn.o_proj", [8192, 8192]),
                            ("mlp.gate_proj", [28672, 8192]), ("mlp.up_proj", [28672, 8192]),
                            ("mlp.down_proj", [8192, 28672])):
            header[f"model.layers.{i}.{name}.weight"] = {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]}
    blob = json.dumps(header).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob)


def test_a_run_that_cannot_fit_stops_before_loading_with_one_line(tmp_path):
    model = tmp_path / "llama-70b"
    _fake_huge_model(model)
    spec = RunSpec(chain=("bbq",), **{**SMALL, "model": str(model), "train": {**SMALL["train"], "finetune": "full"}})
    with pytest.raises(ConfigError) as info:
        run(spec, tmp_path / "runs", progress=False)
    msg = str(info.value)
    assert msg.startswith("this run needs about ") and " on cpu but " in msg and "\n" not in msg
    assert "--finetune lora" in msg or "sharded over" in msg or "combine --finetune lora" in msg
    out = subprocess.run([sys.executable, "-m", "chainforget", "run", "--chain", "bbq", "--model", str(model),
                          "--limit-train", "4", "--limit-eval", "4", "--out", str(tmp_path / "cli"), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: this run needs")
    assert "Traceback" not in out.stderr
