"""The one plugin manager: built-in plugins, then every distribution in the ``chainforget`` entry-point group.

Mirrors pytest: ``pm.add_hookspecs(hookspecs)``, ``pm.load_setuptools_entrypoints("chainforget")`` and
``pm.check_pending()`` so a hook implementation with a misspelled name fails at load time, loudly.
"""

from __future__ import annotations

import functools
import importlib

import pluggy

from chainforget.errors import PluginError
from chainforget.plugins import hookspecs
from chainforget.plugins.registry import Registry

GROUP = "chainforget"

# Built-in plugin modules, by the entry-point names pyproject.toml declares for them. Registering them under the
# same names first means load_setuptools_entrypoints does not load them twice; an uninstalled source checkout
# still works.
BUILTIN_PLUGINS = {
    "builtin-models": "chainforget.engine.builtin_models",
    "builtin-tasks": "chainforget.tasks.builtin",
    "builtin-strategies": "chainforget.strategies.builtin",
    "builtin-metrics": "chainforget.metrics.builtin",
    "builtin-presets": "chainforget.config.presets",
    "builtin-launchers": "chainforget.launchers.builtin",
}

KINDS = {
    "tasks": ("task", "chainforget_register_tasks"),
    "strategies": ("strategy", "chainforget_register_strategies"),
    "metrics": ("metric", "chainforget_register_metrics"),
    "models": ("model", "chainforget_register_models"),
    "presets": ("preset", "chainforget_register_presets"),
    "launchers": ("launcher", "chainforget_register_launchers"),
}


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for name, module in BUILTIN_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    try:
        pm.load_setuptools_entrypoints(GROUP)
    except Exception as exc:  # a third-party plugin that fails to import
        raise PluginError(f"could not load a '{GROUP}' entry-point plugin: {type(exc).__name__}: {exc}; "
                          f"fix or uninstall that plugin") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}; hook names must match chainforget.plugins.hookspecs "
                          f"(e.g. chainforget_register_tasks)") from exc
    return pm


@functools.lru_cache(maxsize=None)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built once)."""
    return _new_manager()


def plugin_sources(pm: pluggy.PluginManager) -> dict[int, str]:
    """Map id(plugin) -> the distribution that provides it ("chainforget" for built-ins)."""
    sources = {id(plugin): "chainforget" for plugin in pm.get_plugins()}
    for plugin, dist in pm.list_plugin_distinfo():
        sources[id(plugin)] = f"{dist.metadata['name']} {dist.version}" if dist.metadata["name"] != "chainforget" \
            else "chainforget"
    return sources


def build_registry(pm: pluggy.PluginManager, kind: str) -> Registry:
    """Call every plugin's register hook for ``kind``, one at a time, so each name records its provider."""
    label, hook_name = KINDS[kind]
    registry = Registry(label)
    sources = plugin_sources(pm)
    # get_hookimpls() lists implementations in registration order: built-ins first, then entry points.
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        impl.function(registry=registry.scoped(sources.get(id(impl.plugin), impl.plugin_name)))
    return registry


@functools.lru_cache(maxsize=None)
def _registries() -> dict[str, Registry]:
    pm = get_plugin_manager()
    return {kind: build_registry(pm, kind) for kind in KINDS}


def registries(kind: str) -> Registry:
    """The filled registry for ``kind``: one of tasks, strategies, metrics, models, presets, launchers."""
    return _registries()[kind]


def reset() -> None:
    """Forget the cached manager and registries (tests that install plugins call this)."""
    get_plugin_manager.cache_clear()
    _registries.cache_clear()
