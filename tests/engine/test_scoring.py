"""Scoring on the tiny model: MC against a naive reference, batch-size invariance, generation, records."""

import json
import random
from types import MappingProxyType

import pytest
import torch

from chainforget.engine.generation import cut_at_stop, greedy_generate, parse_final_number
from chainforget.engine.scoring import score_examples
from chainforget.errors import ConfigError, DataError
from chainforget.tasks.base import Example, TaskMetric, TaskSpec

CONTRACT_FIELDS = {"task", "step", "id", "group", "subgroup", "gold", "pred", "correct", "scores", "primary",
                   "option_logliks", "option_lengths", "generated", "parsed", "meta"}
WORDS = ("the cat dog old young man woman grandfather grandson doctor nurse can't be determined who was "
         "not comfortable using phone answer because it is unknown 12 apples $3 twenty").split()


def mc_spec(metrics=("acc", "acc_norm"), primary="acc"):
    return TaskSpec(name="mc", kind="safety", format="multiple_choice", description="d", prompt_template="",
                    metrics=tuple(TaskMetric(m) for m in metrics), primary_metric=primary)


def gen_spec(metrics=("exact_match", "gold_logprob"), **generation):
    return TaskSpec(name="math", kind="capability", format="generation", description="d", prompt_template="",
                    metrics=tuple(TaskMetric(m, higher_is_better=True) for m in metrics),
                    primary_metric=metrics[0], generation=MappingProxyType(generation))


def mc_examples(n, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
        k = rng.randint(2, 5)
        opts = tuple(" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in range(k))
        out.append(Example(id=f"mc/{i}", group=rng.choice("AB"), prompt=f"Context: {ctx}\nQuestion: who?\nAnswer:",
                           target=opts[0], gold=rng.randrange(k), options=opts, subgroup="s",
                           meta=MappingProxyType({"category": "Age", "tags": ("x", "y")})))
    return out


def sharpen(model, factor=4.0):
    """Scale the random weights so greedy paths vary instead of repeating one token."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(factor)
    return model


def naive_logliks(model, tok, prompt, options):
    """One plain forward per option on encode(prompt + option), split at the prompt's token boundary."""
    ctx = tok(prompt)["input_ids"]
    out = []
    for opt in options:
        cont = tok(prompt + opt)["input_ids"][len(ctx):]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
        out.append(sum(lp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)))
    return out


def test_mc_matches_naive_reference(tiny_model):
    model, tok = tiny_model
    exs = mc_examples(12, seed=1)
    recs = score_examples(model, tok, mc_spec(), exs, stage=3, batch_size=5)
    for ex, rec in zip(exs, recs):
        ref = naive_logliks(model, tok, ex.prompt, ex.options)
        assert rec["option_logliks"] == pytest.approx(ref, abs=1e-4)
        assert rec["pred"] == max(range(len(ref)), key=lambda i: ref[i])
        assert rec["option_lengths"] == [len(tok(ex.prompt + o)["input_ids"]) - len(tok(ex.prompt)["input_ids"])
                                         for o in ex.options]


def test_mc_batch_size_invariance(tiny_model):
    model, tok = tiny_model
    exs = mc_examples(64, seed=2)
    one = score_examples(model, tok, mc_spec(), exs, batch_size=1)
    many = score_examples(model, tok, mc_spec(), exs, batch_size=32)
    assert [r["pred"] for r in one] == [r["pred"] for r in many]
    assert [r["scores"] for r in one] == [r["scores"] for r in many]
    for a, b in zip(one, many):
        assert a["option_logliks"] == pytest.approx(b["option_logliks"], abs=1e-4)
    assert len({r["pred"] for r in one}) > 1  # not a degenerate constant prediction


def test_acc_norm_divides_by_characters(tiny_model):
    model, tok = tiny_model
    exs = mc_examples(60, seed=3)
    recs = score_examples(model, tok, mc_spec(("acc", "acc_norm"), "acc_norm"), exs)
    differ = 0
    for ex, rec in zip(exs, recs):
        assert rec["option_chars"] == [len(o) - 1 for o in ex.options]  # without the leading space delimiter
        norm = [ll / c for ll, c in zip(rec["option_logliks"], rec["option_chars"])]
        by_tokens = [ll / n for ll, n in zip(rec["option_logliks"], rec["option_lengths"])]
        assert rec["scores"]["acc_norm"] == float(norm.index(max(norm)) == ex.gold)
        differ += norm.index(max(norm)) != by_tokens.index(max(by_tokens))
        assert rec["primary"] == "acc_norm" and rec["correct"] == rec["scores"]["acc"]
    assert differ > 0  # the character normalisation is distinguishable from a token one on this data


def test_records_have_contract_fields_and_are_json(tiny_model, capsys):
    model, tok = tiny_model
    mc = score_examples(model, tok, mc_spec(("acc",)), mc_examples(3), stage=2, progress=True)
    assert "3/3" in capsys.readouterr().err  # the tqdm bar counts examples
    gen = score_examples(model, tok, gen_spec(max_new_tokens=4), [
        Example(id="g/0", group="all", prompt="Question: 1+1?\nAnswer:", target=" 2\n#### 2", gold="2")], stage=2)
    for rec in mc + gen:
        assert CONTRACT_FIELDS <= set(rec)
        assert rec["step"] == 2
        json.dumps(rec)
    assert set(mc[0]["scores"]) == {"acc"} and mc[0]["generated"] is None
    assert mc[0]["meta"] == {"category": "Age", "tags": ["x", "y"]}
    assert set(gen[0]["scores"]) == {"exact_match", "gold_logprob"} and gen[0]["option_logliks"] is None
    assert gen[0]["correct"] == gen[0]["scores"]["exact_match"] and gen[0]["primary"] == "exact_match"


def test_model_modes_restored_and_peft_model_scored(tiny_model):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model
    exs = mc_examples(6, seed=4)
    base = score_examples(model, tok, mc_spec(), exs)
    model.train()
    model.model.layers[0].eval()  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    score_examples(model, tok, mc_spec(), exs[:2])
    assert [m.training for m in model.modules()] == before
    model(torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss.backward()  # still trainable
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.train()
    lora = score_examples(peft_model, tok, mc_spec(), exs)  # fresh LoRA B = 0: same outputs as the base model
    assert peft_model.training
    for a, b in zip(base, lora):
        assert a["option_logliks"] == pytest.approx(b["option_logliks"], abs=1e-4)


def test_batched_left_padded_generation_equals_unbatched(tiny_model):
    model, tok = tiny_model
    sharpen(model)
    prompts = ["Question: what is 2+2?\nAnswer:", "Hi", "x = 5; y =", "Natalia sold clips to 48 of her friends in "
               "April, and then she sold half as many clips in May. How many clips did she sell?", "A"]
    with torch.inference_mode():
        batched = greedy_generate(model, tok, prompts, max_new_tokens=12, stop=[], batch_size=5)
        single = [greedy_generate(model, tok, [p], max_new_tokens=12, stop=[], batch_size=1)[0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert len({g.token_ids for g in batched}) == len(prompts)
    assert all(len(g.token_ids) == 12 for g in batched)  # no stop: exactly max_new_tokens


def test_generation_stops_at_stop_sequence(tiny_model):
    model, tok = tiny_model
    sharpen(model)
    prompt = ["Question: what is 2+2?\nAnswer:"]
    with torch.inference_mode():
        full = greedy_generate(model, tok, prompt, max_new_tokens=16, stop=[])[0]
        k = len(full.token_ids) // 2
        head = tok.decode(full.token_ids[:k])
        stop_word = tok.decode(full.token_ids[k:k + 2])
        assert stop_word and head.find(stop_word) == -1
        cut = greedy_generate(model, tok, prompt, max_new_tokens=16, stop=["never-seen", stop_word])[0]
        short = greedy_generate(model, tok, prompt, max_new_tokens=5, stop=[])[0]
    assert cut.text == full.text[:full.text.index(stop_word)]
    assert len(cut.token_ids) < len(full.token_ids)
    assert short.token_ids == full.token_ids[:5]


def test_generation_uses_spec_settings(tiny_model):
    model, tok = tiny_model
    sharpen(model)
    ex = Example(id="g/0", group="all", prompt="Question: 1+1?\nAnswer:", target=" 2\n#### 2", gold="2")
    rec = score_examples(model, tok, gen_spec(("exact_match",), max_new_tokens=3, stop=[]), [ex])[0]
    assert len(tok(rec["generated"], add_special_tokens=False)["input_ids"]) <= 3
    assert rec["parsed"] == parse_final_number(rec["generated"])
    with pytest.raises(ConfigError, match="max_new_tokens"):
        score_examples(model, tok, gen_spec(("exact_match",), max_new_tokens=0), [ex])


@pytest.mark.parametrize("text,expected", [
    ("She sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("#### 1,000", "1000"),
    ("The answer is $18.00.", "18"),
    ("so -3.50 dollars", "-3.5"),
    ("first 5 then 7.0", "7"),
    ("#### 12 and later 99", "12"),
    ("no number here", None),
    ("costs $ 1,234,567.", "1234567"),
])
def test_parse_final_number(text, expected):
    assert parse_final_number(text) == expected


def test_exact_match_against_gold(tiny_model, monkeypatch):
    from chainforget.engine import generation
    from chainforget.engine.generation import Generation

    model, tok = tiny_model
    fake = ["Natalia sold 48/2 = 24 clips.\n#### 72", "The answer is 1,000.", "maybe 5"]
    monkeypatch.setattr(generation, "greedy_generate",
                        lambda *a, **k: [Generation(t, ()) for t in fake])
    exs = [Example(id=f"g/{i}", group="all", prompt="Q", target="x", gold=g) for i, g in enumerate(["72", "1000", "6"])]
    recs = score_examples(model, tok, gen_spec(("exact_match",)), exs)
    assert [r["scores"]["exact_match"] for r in recs] == [1.0, 1.0, 0.0]
    assert [r["parsed"] for r in recs] == ["72", "1000", "5"]


def test_cut_at_stop_takes_earliest():
    assert cut_at_stop("a Question: b\n\nQuestion: c", ["\n\nQuestion:", "Question:"]) == ("a ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)


def test_gold_logprob_equals_hand_computation(tiny_model, monkeypatch):
    from chainforget.engine import loglik

    monkeypatch.setattr(loglik, "MAX_LOGIT_ELEMENTS", 1)  # the logit budget splits the batch: same results
    model, tok = tiny_model
    exs = [Example(id="g/0", group="a", prompt="Question: 3+4?\nAnswer:", target=" 3+4 = 7\n#### 7", gold="7"),
           Example(id="g/1", group="b", prompt="Question: a much longer question about apples and pears?\nAnswer: ",
                   target="They have 12 apples.\n#### 12", gold="12")]
    recs = score_examples(model, tok, gen_spec(("gold_logprob",)), exs, batch_size=2)
    for ex, rec in zip(exs, recs):
        prompt, target = ex.prompt.rstrip(), ex.prompt[len(ex.prompt.rstrip()):] + ex.target
        ctx = tok(prompt)["input_ids"]
        cont = tok(prompt + target)["input_ids"][len(ctx):]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
        hand = sum(lp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)) / len(cont)
        assert rec["scores"] == {"gold_logprob": pytest.approx(hand, abs=1e-5)}
        assert rec["generated"] is None and rec["pred"] is None  # only gold_logprob listed: nothing generated


def test_bad_inputs_raise_one_line_errors(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ConfigError, match="batch size"):
        score_examples(model, tok, mc_spec(), mc_examples(1), batch_size=0)
    with pytest.raises(ConfigError, match="cannot compute"):
        score_examples(model, tok, mc_spec(("acc", "bleu")), mc_examples(1))
    with pytest.raises(ConfigError, match="answer_pattern"):
        score_examples(model, tok, gen_spec(("exact_match",), answer_pattern="(unclosed"), [
            Example(id="g", group="g", prompt="p", target="t", gold="1")])
    bad = Example(id="x", group="g", prompt="p", target=" a", gold=3, options=(" a", " b"))
    with pytest.raises(DataError, match="gold index"):
        score_examples(model, tok, mc_spec(), [bad])


def test_parse_with_task_answer_pattern():
    pattern = r"####\s*(-?\$?\d[\d,]*(?:\.\d+)?)"
    assert parse_final_number("so 4 then #### $1,080.00", pattern) == "1080"
    assert parse_final_number("no marker, 5 then 6", pattern) == "6"
    assert parse_final_number("no marker, 5 then 6", pattern, fallback="none") is None


def test_lora_is_merged_for_scoring_and_the_base_weights_restored_exactly(tiny_model, monkeypatch):
    import contextlib
    import copy

    from chainforget.engine import lora_merge, scoring
    from chainforget.engine.training import TrainConfig, apply_finetune

    model, tok = tiny_model
    model = apply_finetune(copy.deepcopy(model), TrainConfig(finetune="lora", lora_r=4, lora_alpha=8.0))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.2)  # adapters that change the scores
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = []
    real = lora_merge.merged_lora

    @contextlib.contextmanager
    def spy(m, device):
        with real(m, device):
            seen.append(sum(bool(getattr(x, "merged", False)) for x in m.modules()))
            yield

    monkeypatch.setattr(scoring, "merged_lora", spy)
    exs, spec = mc_examples(12, seed=3), mc_spec(("acc", "acc_norm", "gold_logprob"))
    merged = score_examples(model, tok, spec, exs, batch_size=5)
    assert seen and seen[0] == 4 * model.config.num_hidden_layers  # q/k/v/o of every layer merged meanwhile
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n  # bit for bit, not base + delta - delta
    assert not any(getattr(x, "merged", False) for x in model.modules())  # adapters live again
    monkeypatch.setattr(scoring, "merged_lora", lambda m, d: contextlib.nullcontext())
    plain = score_examples(model, tok, spec, exs, batch_size=5)
    for a, b in zip(merged, plain):
        assert a["pred"] == b["pred"]
        assert a["option_logliks"] == pytest.approx(b["option_logliks"], abs=1e-4)
    reference = score_examples(apply_finetune(copy.deepcopy(tiny_model[0]), TrainConfig()), tok, spec, exs)
    assert any(a["option_logliks"] != pytest.approx(r["option_logliks"], abs=1e-3) for a, r in zip(merged, reference))
