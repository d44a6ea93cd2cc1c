"""The strategy lifecycle the engine guarantees at a reused stage (docs/plugins.md, "The lifecycle"):
``before_training_exp`` sees the weights the stage starts from, ``after_training_exp`` the stored ones,
``stage_restored`` is set during the walk, and a weight edit made during it is undone."""

import torch

from chainforget.engine.template import CausalLMTemplate
from chainforget.engine.training import TrainConfig
from chainforget.tasks.base import Example, TaskMetric, TaskSpec

SPEC = TaskSpec(name="toy", kind="safety", format="multiple_choice", description="toy", prompt_template="",
                metrics=(TaskMetric("acc"),), primary_metric="acc")


def examples(n=4):
    return [Example(id=f"toy/{i}", group="g", prompt=f"Q: {i}?\nA:", target=" yes", gold=0, options=(" yes", " no"),
                    task="toy") for i in range(n)]


def experience():
    from chainforget.benchmark.streams import experience_from_examples

    return experience_from_examples(examples(), 0, "toy")


def norm_weight(model):
    return model.model.norm.weight


class EditingProbe:
    """A careless weight editor: adds 1 to a weight at the end of every step, whatever happened."""

    def __init__(self):
        self.seen = []

    def before_training_exp(self, strategy, **kwargs):
        self.seen.append(("before", strategy.stage_restored, float(norm_weight(strategy.model)[0].detach())))

    def after_training_exp(self, strategy, **kwargs):
        self.seen.append(("after", strategy.stage_restored, float(norm_weight(strategy.model)[0].detach())))
        with torch.no_grad():
            norm_weight(strategy.model).add_(1.0)


def test_reused_stage_shows_start_then_stored_weights_and_undoes_edits(tiny_model):
    model, tok = tiny_model
    probe = EditingProbe()
    template = CausalLMTemplate(model, tok, TrainConfig(batch_size=4, micro_batch_size=4, max_steps=1), plugins=[probe],
                                progress=False, task_specs={"toy": SPEC})
    start = norm_weight(model).detach().clone()
    stored = {n: p.detach().clone() + 0.25 for n, p in model.named_parameters()}  # "the trained weights"
    loads = []

    def restore():
        loads.append(1)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(stored[n])

    assert template.stage_restored is False
    template.skip_training(experience(), restore=restore)
    assert probe.seen == [("before", True, float(start[0])), ("after", True, float(stored["model.norm.weight"][0]))]
    assert len(loads) == 2 and template.stage_restored is False
    assert all(torch.equal(p, stored[n]) for n, p in model.named_parameters())  # the +1 edit was undone
    assert template.skipped_experiences == 1 and template.trained_experiences == 0


def test_training_shows_the_flag_false(tiny_model):
    model, tok = tiny_model
    probe = EditingProbe()
    template = CausalLMTemplate(model, tok, TrainConfig(batch_size=4, micro_batch_size=4, max_steps=1), plugins=[probe],
                                progress=False, task_specs={"toy": SPEC})
    template.train(experience())
    assert [(when, flag) for when, flag, _ in probe.seen] == [("before", False), ("after", False)]
