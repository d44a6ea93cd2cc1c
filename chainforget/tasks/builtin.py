"""Built-in tasks (BBQ, ToxiGen, GSM8K, BoolQ, CommonsenseQA, OpenBookQA).

Registering builds ``Task`` objects only; no data is read until a task's examples are asked for. Nothing heavy is
imported here (``chainforget --help`` and ``chainforget list`` stay fast).
"""

from chainforget.plugins.hookspecs import hookimpl


@hookimpl
def chainforget_register_tasks(registry):
    from chainforget.tasks import bbq, gsm8k, qa, toxigen

    for task in (bbq.task(), toxigen.task(), toxigen.demos_task(), gsm8k.task(), qa.boolq_task(),
                 qa.commonsenseqa_task(), qa.openbookqa_task()):
        registry.register(task.name, task, task.spec.description)
