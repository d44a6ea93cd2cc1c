"""Built-in strategies, registered through the same hook a third-party plugin implements.

Each strategy lives in its own module (``naive.py``, ``replay.py``, ...) whose ``SPEC`` declares its
hyper-parameters once; those modules import torch only inside functions, so ``chainforget list`` stays fast.
"""

from chainforget.plugins.hookspecs import hookimpl

MODULES = ("naive", "replay", "ewc", "lwf", "safety_retune", "sam", "joint")


def builtin_specs() -> list:
    """The ``StrategySpec`` of every built-in strategy, in the order the paper discusses them."""
    import importlib

    return [importlib.import_module(f"chainforget.strategies.{m}").SPEC for m in MODULES]


@hookimpl
def chainforget_register_strategies(registry):
    for spec in builtin_specs():
        registry.register(spec.name, spec, spec.description)
