"""Hook specifications: the only way tasks, strategies, metrics, models, presets and launchers enter chainforget.

Built-in plugins and third-party distributions implement the same hooks. A third-party distribution declares an
entry point in the group ``chainforget`` pointing at a module (or object) that implements some of these hooks::

    [project.entry-points.chainforget]
    my_plugin = "my_package.plugin"

and marks each implementation with ``chainforget.plugins.hookimpl``. Every ``register`` hook receives a
:class:`~chainforget.plugins.registry.Registry` and calls ``registry.register(name, obj, description)``; the registry
records which distribution registered each name, and rejects a name that is already taken.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("chainforget")
hookimpl = pluggy.HookimplMarker("chainforget")


@hookspec
def chainforget_register_tasks(registry):
    """Register tasks: ``registry.register(name, task, description)`` with a :class:`chainforget.tasks.Task`.

    A task is a data set of examples, each with a demographic ``group``; see ``chainforget.tasks.base``.
    """


@hookspec
def chainforget_register_strategies(registry):
    """Register strategies: ``registry.register(name, strategy_spec, description)``.

    ``strategy_spec`` is a :class:`chainforget.strategies.base.StrategySpec`: declared hyper-parameters plus a
    factory of Avalanche plugins that change how the causal-LM template trains through the chain.
    """


@hookspec
def chainforget_register_metrics(registry):
    """Register metrics: ``registry.register(name, metric_spec, description)``.

    ``metric_spec`` is a :class:`chainforget.metrics.base.MetricSpec`: a pure function of a run's stored score
    matrices / evaluation records, with its direction (``higher_is_better``) and range.
    """


@hookspec
def chainforget_register_models(registry):
    """Register models: ``registry.register(name, model_spec, description)``.

    ``model_spec`` is a :class:`chainforget.engine.models.ModelSpec` whose loader returns a causal LM and its
    tokenizer, offline (nothing may be downloaded from a hub by default).
    """


@hookspec
def chainforget_register_presets(registry):
    """Register leaderboard presets: ``registry.register(name, suite_dict, description)``.

    A preset is a suite (the same mapping a suite YAML file holds) that ``chainforget leaderboard --preset``
    runs.
    """


@hookspec
def chainforget_register_launchers(registry):
    """Register launchers: ``registry.register(name, launcher, description)``.

    A launcher is a :class:`chainforget.launchers.base.Launcher` (``check()`` and ``launch(specs, out_dir, ...)``):
    where and how the runs of a suite execute. ``chainforget leaderboard --launcher NAME`` picks one.
    """
