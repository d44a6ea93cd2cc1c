"""--dtype: the precision plan, bf16 loading, LoRA adapters in float32 on a bf16 base, full fine-tuning with float32
master weights under bf16 autocast, and scoring that does not depend on the batch size in bf16 (CPU, tiny model)."""

import dataclasses

import pytest
import torch
from test_scoring import mc_examples, mc_spec
from test_template import make, stream, toy_examples, weights

from chainforget.engine.precision import choose_precision, resolve, train_config
from chainforget.errors import ConfigError


def test_auto_is_float32_on_cpu_and_plans_follow_the_method():
    assert resolve("auto", "cpu") == "float32"
    assert choose_precision("auto", "full", device="cpu") == choose_precision("float32", "full", device="cpu")
    full = choose_precision("bfloat16", "full", device="cpu")
    assert (full.weights, full.autocast, full.compute, full.trainable) == ("float32", "bf16", "bfloat16", "float32")
    lora = choose_precision("bfloat16", "lora", device="cpu")
    assert (lora.weights, lora.autocast, lora.compute) == ("bfloat16", "no", "bfloat16")
    old_way = choose_precision("float32", "full", mixed_precision="bf16", device="cpu")
    assert (old_way.weights, old_way.autocast, old_way.compute) == ("float32", "bf16", "bfloat16")


@pytest.mark.parametrize("args, message", [
    (("float16", "full"), "float16 needs a CUDA GPU"),
    (("bf16", "full"), "dtype must be one of auto|float32|bfloat16|float16"),
])
def test_bad_dtypes_are_one_line_errors(args, message):
    with pytest.raises(ConfigError, match=message) as info:
        choose_precision(*args, device="cpu")
    assert "\n" not in str(info.value)


def test_mixed_precision_that_contradicts_the_dtype_is_refused():
    with pytest.raises(ConfigError, match="contradicts --dtype bfloat16"):
        choose_precision("bfloat16", "full", mixed_precision="fp16", device="cpu")


def test_model_loads_in_the_planned_dtype():
    from chainforget.engine.models import load_model, resolve_model

    model, _ = load_model(resolve_model("tiny"), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "sdpa"


def test_lora_on_a_bf16_base_trains_float32_adapters():
    from chainforget.engine.models import load_model, resolve_model

    model, tok = load_model(resolve_model("tiny"), dtype=choose_precision("bfloat16", "lora", device="cpu").torch_weights)
    cfg = dict(finetune="lora", learning_rate=1e-2, max_steps=2, batch_size=4, micro_batch_size=2)
    tpl = make(model, tok, **cfg)
    trainable = {n: p for n, p in tpl.model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in tpl.model.named_parameters() if not p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())
    assert {p.dtype for p in frozen.values()} == {torch.bfloat16}
    before = weights(tpl.model)
    tpl.train(stream(toy_examples(8))[0])
    after = weights(tpl.model)
    assert all(not torch.equal(before[n], after[n]) for n in trainable if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(after[n].dtype == torch.float32 for n in trainable)
    assert all(torch.isfinite(torch.tensor(x)) for x in tpl.step_losses)


def test_full_finetuning_keeps_float32_master_weights_under_bf16_autocast(tiny_model):
    from chainforget.engine.training import TrainConfig

    model, tok = tiny_model
    precision = choose_precision("bfloat16", "full", device="cpu")
    cfg = train_config(TrainConfig(learning_rate=1e-3, batch_size=4, micro_batch_size=4, warmup_ratio=0.0,
                                   max_steps=1), precision)
    assert cfg.mixed_precision == "bf16"
    tpl = make(model, tok, **{k: v for k, v in dataclasses.asdict(cfg).items()
                              if k in ("mixed_precision", "learning_rate", "batch_size", "micro_batch_size")})
    before = weights(tpl.model)
    tpl.train(stream(toy_examples(4))[0])
    assert {p.dtype for p in tpl.model.parameters()} == {torch.float32}
    moved = [n for n, p in tpl.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(moved) == len(before)  # every weight learned, and below bf16's resolution for some of them
    small = min(float((p.detach() - before[n]).abs().max() / before[n].abs().max().clamp(min=1e-12))
                for n, p in tpl.model.named_parameters())
    assert small < 2 ** -8  # an update bf16 weights could not have represented
    seen = []
    hook = tpl.model.model.layers[0].mlp.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    tpl._train_model(input_ids=torch.tensor([[1, 2, 3]]))  # the prepared model autocasts by itself
    hook.remove()
    assert seen == [torch.bfloat16]


def test_bf16_scores_do_not_depend_on_the_eval_batch_size():
    """Predictions and every score are identical for batch sizes 1, 7 and 32 in bf16; log-likelihoods differ only
    by bf16 rounding of different batch shapes (well below the gaps that decide predictions here)."""
    from chainforget.engine.models import load_model, resolve_model
    from chainforget.engine.scoring import score_examples

    model, tok = load_model(resolve_model("tiny"), dtype=torch.bfloat16)
    exs = mc_examples(48, seed=2)
    runs = {bs: score_examples(model, tok, mc_spec(), exs, batch_size=bs, progress=False) for bs in (1, 7, 32)}
    one = runs[1]
    for bs, recs in runs.items():
        assert [r["pred"] for r in recs] == [r["pred"] for r in one], bs
        assert [r["scores"] for r in recs] == [r["scores"] for r in one], bs
        assert [r["correct"] for r in recs] == [r["correct"] for r in one], bs
        for a, b in zip(one, recs):
            assert a["option_logliks"] == pytest.approx(b["option_logliks"], abs=2e-2)
    assert len({r["pred"] for r in one}) > 1
    fp32, _ = load_model(resolve_model("tiny"), dtype=torch.float32)
    ref = score_examples(fp32, tok, mc_spec(), exs, batch_size=32, progress=False)
    same = sum(a["pred"] == b["pred"] for a, b in zip(ref, one))
    assert same >= 0.9 * len(exs)  # bf16 is an approximation of the same model, not a different one
