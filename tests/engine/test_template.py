"""CausalLMTemplate on the tiny model: loss masking, accumulation invariance, LoRA, hook order, NaN guard, skipping."""

import copy
import math

import pytest
import torch

from chainforget.errors import ConfigError, TrainingError
from chainforget.tasks.base import Example, TaskMetric, TaskSpec

SPEC = TaskSpec(name="toy", kind="safety", format="multiple_choice", description="toy", prompt_template="",
                metrics=(TaskMetric("acc"),), primary_metric="acc")


def toy_examples(n=8, task="toy"):
    """Prompts of different lengths (so micro-batches pad differently) with multi-token targets."""
    out = []
    for i in range(n):
        words = " ".join(["apple", "pear", "plum", "fig"][j % 4] for j in range(i % 5 + 1))
        target = [" yes", " no it is not", " maybe so"][i % 3]
        out.append(Example(id=f"{task}/{i}", group=f"g{i % 2}", prompt=f"Q: is {words} a fruit?\nA:",
                           target=target, gold=0, options=(target, " unknown"), task=task))
    return out


def stream(*datasets, name="train"):
    """A minimal Avalanche stream: one experience per list of Examples (items are the Examples)."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import DataAttribute
    from avalanche.benchmarks.utils.data import AvalancheDataset

    sets = [AvalancheDataset([list(d)], data_attributes=[DataAttribute([0] * len(d), "targets")]) for d in datasets]
    return getattr(benchmark_from_datasets(**{name: sets}), f"{name}_stream")


def make(model, tok, plugins=(), device=None, **cfg):
    from chainforget.engine.template import CausalLMTemplate
    from chainforget.engine.training import TrainConfig

    base = dict(learning_rate=1e-3, batch_size=8, micro_batch_size=8, warmup_ratio=0.0, max_steps=1)
    base.update(cfg)
    return CausalLMTemplate(model, tok, TrainConfig(**base), plugins=list(plugins), progress=False,
                            task_specs={"toy": SPEC}, device=device)


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


class Recorder:
    """Records every hook name, and the loss pieces at before_backward."""

    def __init__(self):
        self.events, self.seen = [], []

    def __getattr__(self, name):
        if not (name.startswith("before_") or name.startswith("after_")):
            raise AttributeError(name)

        def hook(strategy, **kwargs):
            self.events.append(name)
            if name == "before_backward":
                self.seen.append({"loss": float(strategy.loss.detach()), "weight": strategy.mb_weight,
                                  "batch": {k: (v.clone() if torch.is_tensor(v) else v)
                                            for k, v in strategy.mbatch.items()},
                                  "logits": strategy.mb_output.detach().clone(), "task": strategy.task_name})
        return hook


def test_loss_is_target_tokens_only(tiny_model):
    model, tok = tiny_model
    rec = Recorder()
    s = make(model, tok, [rec])
    before = copy.deepcopy(model)
    s.train(stream(toy_examples())[0])
    (seen,) = rec.seen
    batch = seen["batch"]
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert seen["task"] == "toy" and sorted(batch["ids"]) == sorted(e.id for e in toy_examples())
    with torch.no_grad():
        logits = before(input_ids=ids, attention_mask=mask).logits
    target_positions = labels[:, 1:] != -100  # mb_output: the logits at the positions that predict a target
    assert torch.allclose(logits[:, :-1][target_positions], seen["logits"], atol=1e-5)
    logp = torch.log_softmax(logits.double(), -1)
    total, count = 0.0, 0
    by_id = {e.id: e for e in toy_examples()}
    for row, ex_id in enumerate(batch["ids"]):
        n_target = len(tok(by_id[ex_id].target, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        length = int(mask[row].sum())
        for pos in range(length - n_target, length):  # target tokens: the last n_target real tokens
            assert labels[row, pos] == ids[row, pos]
            total -= float(logp[row, pos - 1, ids[row, pos]])
            count += 1
        assert (labels[row, :length - n_target] == -100).all() and (labels[row, length:] == -100).all()
        assert ids[row, length - 1] == tok.eos_token_id
    assert seen["loss"] == pytest.approx(total / count, rel=1e-5)
    assert s.last_loss == pytest.approx(total / count, rel=1e-5)


def test_accumulation_invariance(tiny_model):
    start, tok = tiny_model
    start = start.double()  # float64: the comparison tests the arithmetic, not float32 rounding
    results = []
    for micro in (1, 2, 8):
        model = copy.deepcopy(start)
        rec = Recorder()
        s = make(model, tok, [rec], micro_batch_size=micro)
        s.train(stream(toy_examples())[0])
        assert len(rec.seen) == math.ceil(8 / micro)
        assert sum(x["weight"] for x in rec.seen) == pytest.approx(1.0)
        results.append((weights(model), s.last_loss))
    (w1, l1), *others = results
    for w, loss in others:
        assert loss == pytest.approx(l1, rel=1e-9)
        for name in w1:
            assert torch.allclose(w[name], w1[name], rtol=0, atol=1e-6), name
    assert any(not torch.equal(w1[n], p) for n, p in weights(start).items())  # the step did change weights


def test_lora_trains_only_adapters(tiny_model):
    model, tok = tiny_model
    base = weights(model)
    s = make(model, tok, finetune="lora", lora_r=4, lora_targets="q_proj,v_proj", batch_size=4, max_steps=2)
    lora_before = {n: p.detach().clone() for n, p in s.model.named_parameters() if "lora_" in n}
    assert lora_before and all(p.requires_grad == ("lora_" in n) for n, p in s.model.named_parameters())
    s.train(stream(toy_examples())[0])
    after = dict(s.model.named_parameters())
    changed = [n for n in lora_before if not torch.equal(after[n], lora_before[n])]
    assert any("lora_B" in n for n in changed) and any("lora_A" in n for n in changed)
    for name, value in s.model.named_parameters():
        if "lora_" not in name:
            plain = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(value, base[plain]), name


def test_hook_order_and_counts(tiny_model):
    model, tok = tiny_model
    rec = Recorder()
    s = make(model, tok, [rec], batch_size=4, micro_batch_size=2, max_steps=None)
    s.train(stream(toy_examples(6))[0])  # 6 examples, batch 4: two optimizer steps (4 + 2 examples)
    micro = ["before_forward", "after_forward", "before_backward", "after_backward"]
    step_a = ["before_training_iteration"] + micro * 2 + ["before_update", "after_update", "after_training_iteration"]
    step_b = ["before_training_iteration"] + micro + ["before_update", "after_update", "after_training_iteration"]
    head = ["before_training", "before_train_dataset_adaptation", "after_train_dataset_adaptation",
            "before_training_exp", "before_training_epoch"]
    tail = ["after_training_epoch", "after_training_exp", "after_training"]
    assert rec.events in (head + step_a + step_b + tail, head + step_b + step_a + tail)  # batch order is shuffled
    assert s.exp_step == 2 and s.optimizer_steps_total == 2 and s.train_stats["tokens_per_s"] > 0


class PoisonAt:
    """Makes the loss or a gradient non-finite at optimizer step ``step`` of the second experience."""

    def __init__(self, step, where):
        self.step, self.where, self.snapshot = step, where, None

    def _now(self, strategy):
        return strategy.clock.train_exp_counter == 1 and strategy.exp_step + 1 == self.step

    def before_training_iteration(self, strategy, **kwargs):
        if self._now(strategy):
            self.snapshot = weights(strategy.model)

    def before_backward(self, strategy, **kwargs):
        if self.where == "loss" and self._now(strategy):
            strategy.loss = strategy.loss * float("nan")

    def after_backward(self, strategy, **kwargs):
        if self.where == "grad" and self._now(strategy):
            next(p for p in strategy.model.parameters() if p.grad is not None).grad.fill_(float("inf"))


@pytest.mark.parametrize("where,what", [("loss", "non-finite loss (nan)"), ("grad", "non-finite gradient norm")])
def test_non_finite_stops_before_the_update(tiny_model, where, what):
    model, tok = tiny_model
    poison = PoisonAt(2, where)
    s = make(model, tok, [poison], batch_size=2, micro_batch_size=1, max_steps=None)
    exps = stream(toy_examples(4), toy_examples(6))
    s.train(exps[0])
    with pytest.raises(TrainingError) as err:
        s.train(exps[1])
    message = str(err.value)
    assert what in message and "experience 2 (task toy) at optimizer step 2" in message and "\n" not in message
    assert all(torch.equal(p, poison.snapshot[n]) for n, p in model.named_parameters())


class AfterExp:
    def __init__(self):
        self.calls, self.iterations, self.names = 0, 0, []

    def after_training_exp(self, strategy, **kwargs):
        self.calls += 1
        self.names.append((strategy.task_name, len(strategy.experience.dataset)))

    def before_training_iteration(self, strategy, **kwargs):
        self.iterations += 1


def test_skip_training_fires_hooks_without_training(tiny_model):
    model, tok = tiny_model
    probe = AfterExp()
    s = make(model, tok, [probe])
    before = weights(model)
    s.skip_training(stream(toy_examples(5))[0])
    assert probe.calls == 1 and probe.iterations == 0 and probe.names == [("toy", 5)]
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert s.skipped_experiences == 1 and s.trained_experiences == 0 and s.clock.train_exp_counter == 1
    assert s.experience is None and s.scheduler is not None


def test_eval_records_and_after_eval_exp(tiny_model):
    model, tok = tiny_model
    seen = []

    class Probe:
        def after_eval_exp(self, strategy, **kwargs):
            seen.append((strategy.task_name, len(strategy.eval_records[strategy.task_name])))

    s = make(model, tok, [Probe()])
    s.eval(stream(toy_examples(3), name="test"), stage=4)
    assert seen == [("toy", 3)]
    assert [r["id"] for r in s.eval_records["toy"]] == ["toy/0", "toy/1", "toy/2"]
    assert {r["step"] for r in s.eval_records["toy"]} == {4}


def test_mixed_task_experience_and_fp16_on_cpu(tiny_model):
    model, tok = tiny_model
    s = make(model, tok)
    s.train(stream(toy_examples(3, "a") + toy_examples(3, "b"))[0])
    assert s.task_name == "a+b"
    from chainforget.engine.template import CausalLMTemplate

    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        CausalLMTemplate(model, tok, {"mixed_precision": "fp16"}, device="cpu", progress=False)
    bf16 = make(model, tok, mixed_precision="bf16", device="cpu")  # another precision in the same process
    bf16.train(stream(toy_examples(4))[0])
    assert bf16.exp_step == 1 and math.isfinite(bf16.last_loss)


def test_csv_and_text_loggers(tiny_model, tmp_path):
    from chainforget.engine.logs import make_loggers
    from chainforget.engine.template import CausalLMTemplate

    model, tok = tiny_model
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        make_loggers("tensorbord", tmp_path)
    s = CausalLMTemplate(model, tok, {"max_steps": 1}, progress=False, task_specs={"toy": SPEC},
                         loggers=make_loggers("text,csv", tmp_path))
    s.train(stream(toy_examples(4))[0])
    s.eval(stream(toy_examples(2), name="test"))
    rows = (tmp_path / "csv" / "training_results.csv").read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(",")[4]) == pytest.approx(s.last_loss, abs=1e-4)
    assert "eval/toy/acc" in (tmp_path / "log.txt").read_text()


def test_recompute_loss_and_backward_reproduces_the_batch_gradient(tiny_model):
    model, tok = tiny_model

    class Recompute:
        def before_update(self, strategy, **kwargs):
            params = [p for p in strategy.model.parameters() if p.grad is not None]
            self.first = [p.grad.clone() for p in params]
            for p in params:
                p.grad.zero_()
            self.loss = strategy.recompute_loss_and_backward()  # outside the micro loop: whole optimizer batch
            self.second = [p.grad.clone() for p in params]

    probe = Recompute()
    s = make(model, tok, [probe], batch_size=6, micro_batch_size=2)
    s.train(stream(toy_examples(6))[0])
    assert probe.loss == pytest.approx(s.last_loss, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(probe.first, probe.second))
