"""Memory estimate: exact parameter counts without loading, activations close to what autograd really saves, and
a fit check that names the changes which would make a run fit."""

import pytest
import torch

from chainforget.engine.memory import (
    GIB,
    DeviceMemory,
    check_fit,
    estimate,
    meta_shapes,
    shape_of,
    shape_of_dir,
    shape_of_model,
    visible_device,
)
from chainforget.engine.precision import choose_precision
from chainforget.errors import ConfigError

LLAMA_8B = dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)


def test_parameter_counts_are_exact_without_loading(tmp_path, tiny_model):
    from chainforget.engine.models import resolve_model
    from chainforget.engine.training import TrainConfig, apply_finetune

    model, tok = tiny_model
    n = sum(p.numel() for p in model.parameters())
    assert shape_of_model(resolve_model("tiny")).params == n
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    assert shape_of_dir(tmp_path).params == n  # read from the safetensors header only
    assert shape_of_model(resolve_model(str(tmp_path))).params == n
    cfg = TrainConfig(finetune="lora", lora_r=4, lora_targets="q_proj,v_proj,down_proj")
    lora = apply_finetune(model, cfg)
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert shape_of_model(resolve_model("tiny")).lora_params(4, cfg.lora_target_list) == trainable


def test_llama_8b_is_sized_like_llama_3_8b():
    shape = shape_of(LLAMA_8B, meta_shapes(LLAMA_8B))
    assert shape.params == 8_030_261_248  # Llama-3-8B's published parameter count
    est = estimate(shape, choose_precision("bfloat16", "full", device="cpu"), finetune="full", micro_batch_size=1,
                   max_length=2048)
    assert est.gradients == shape.params * 4 and est.optimizer == shape.params * 8
    assert est.weights == shape.params * (4 + 2)  # float32 masters + autocast's bf16 copies
    lora = estimate(shape, choose_precision("bfloat16", "lora", device="cpu"), finetune="lora", micro_batch_size=1,
                    max_length=2048, lora_targets=["q_proj", "v_proj"], lora_r=8)
    assert lora.weights < shape.params * 2.01 and lora.trainable == 32 * 8 * (4096 + 4096 + 4096 + 1024)


def _saved_bytes(model, ids, autocast: bool) -> int:
    """Bytes of every distinct tensor storage autograd saves for backward (parameters excluded)."""
    from chainforget.engine.training import target_token_loss

    seen = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
        target_token_loss(model(input_ids=ids, use_cache=False).logits, ids)
    return sum(v for k, v in seen.items() if k not in params)


@pytest.mark.parametrize("finetune, dtype", [("full", "float32"), ("full", "bfloat16"), ("lora", "float32"),
                                             ("lora", "bfloat16")])
def test_activation_estimate_is_within_25_percent_of_what_autograd_saves(finetune, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    from chainforget.engine.training import TrainConfig, apply_finetune

    cfg = dict(hidden_size=320, intermediate_size=864, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=2000)
    precision = choose_precision(dtype, finetune, device="cpu")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).to(precision.torch_weights)
    tc = TrainConfig(finetune=finetune)
    model = apply_finetune(model, tc).train()
    B, L = 4, 96
    measured = _saved_bytes(model, torch.randint(0, 2000, (B, L)), precision.autocast == "bf16")
    shape = shape_of({"model_type": "llama", **cfg}, meta_shapes({"model_type": "llama", **cfg}))
    est = estimate(shape, precision, finetune=finetune, micro_batch_size=B, max_length=L,
                   lora_targets=tc.lora_target_list)
    predicted = est.activations + est.logits
    if precision.autocast != "no":
        predicted += shape.params * 2  # autocast's weight copies: counted under weights, saved by autograd
    assert 0.75 < predicted / measured < 1.25, (predicted, measured)


def test_gradient_checkpointing_and_smaller_micro_batches_shrink_activations():
    shape = shape_of(LLAMA_8B, meta_shapes(LLAMA_8B))
    p = choose_precision("bfloat16", "full", device="cpu")
    base = estimate(shape, p, finetune="full", micro_batch_size=8, max_length=2048)
    ckpt = estimate(shape, p, finetune="full", micro_batch_size=8, max_length=2048, gradient_checkpointing=True)
    small = estimate(shape, p, finetune="full", micro_batch_size=1, max_length=2048)
    sharded = estimate(shape, p, finetune="full", micro_batch_size=8, max_length=2048, processes=8, sharded=True)
    assert ckpt.activations < base.activations / 5 and small.activations * 8 == base.activations
    assert sharded.optimizer * 8 == base.optimizer and sharded.activations == base.activations


def test_fit_check_names_what_would_fit():
    shape = shape_of(LLAMA_8B, meta_shapes(LLAMA_8B))
    p = choose_precision("bfloat16", "full", device="cpu")
    h100 = DeviceMemory("cuda:0 (NVIDIA H100 80GB HBM3)", 79 * GIB, 80 * GIB, 1)
    est = estimate(shape, p, finetune="full", micro_batch_size=4, max_length=1024)
    with pytest.raises(ConfigError) as info:
        check_fit(est, h100, shape=shape, precision=p, lora_targets=["q_proj", "v_proj"])
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("this run needs about ")
    assert "on cuda:0 (NVIDIA H100 80GB HBM3) but 79.00 GiB is free" in msg
    assert "--finetune lora" in msg and "full fine-tuning sharded over 4 GPUs (FSDP; not supported" in msg
    assert "--gradient-checkpointing" not in msg  # 8B full fine-tuning does not fit by checkpointing alone
    # a LoRA run whose only problem is a big micro-batch: checkpointing or a smaller micro-batch fixes it
    lora_p = choose_precision("bfloat16", "lora", device="cpu")
    est = estimate(shape, lora_p, finetune="lora", micro_batch_size=16, max_length=1024,
                   lora_targets=["q_proj", "v_proj"])
    with pytest.raises(ConfigError) as info:
        check_fit(est, h100, shape=shape, precision=lora_p, lora_targets=["q_proj", "v_proj"])
    assert "--gradient-checkpointing or --micro-batch-size" in str(info.value)
    small = estimate(shape, lora_p, finetune="lora", micro_batch_size=1, max_length=512, lora_targets=["q_proj"])
    check_fit(small, h100, shape=shape, precision=lora_p)  # fits: no error


def test_visible_device_on_cpu_reports_host_memory():
    dev = visible_device("cpu")
    assert dev.name == "cpu" and 0 < dev.free <= dev.total
