"""The one plugin manager: built-in plugins, then every distribution in the ``chainforget`` entry-point group.

Mirrors pytest: ``pm.add_hookspecs(hookspecs)``, ``pm.load_setuptools_entrypoints("chainforget")`` and
``pm.check_pending()`` so a hook implementation with a misspelled name fails at load time, loudly.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from typing import Any

import pluggy

from chainforget.errors import PluginError, did_you_mean
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

HOOK_PREFIX = "chainforget_register_"


class PluginWarning(UserWarning):
    """A plugin mistake that does not stop chainforget but makes it ignore something (an unmarked hook)."""


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
    warn_unmarked_hooks(pm)
    return pm


def unmarked_hooks(plugin: Any) -> list[tuple[str, Any]]:
    """``(name, function)`` of every ``chainforget_register_*`` callable of ``plugin`` that is no ``@hookimpl``.

    pluggy silently skips such a function (only marked ones are hook implementations), so the plugin would
    register nothing and nobody would notice.
    """
    out = []
    for name in sorted(dir(plugin)):
        if not name.startswith(HOOK_PREFIX):
            continue
        obj = getattr(plugin, name, None)
        if callable(obj) and not hasattr(obj, f"{GROUP}_impl") and not hasattr(obj, f"{GROUP}_spec"):
            out.append((name, obj))
    return out


def warn_unmarked_hooks(pm: pluggy.PluginManager) -> None:
    """A ``PluginWarning`` at the definition of every unmarked ``chainforget_register_*`` function."""
    hooks = [n for n in dir(hookspecs) if n.startswith(HOOK_PREFIX)]
    for plugin in pm.get_plugins():
        owner = getattr(plugin, "__name__", type(plugin).__name__)
        for name, func in unmarked_hooks(plugin):
            fix = "decorate it with @chainforget.plugins.hookimpl"
            if name not in hooks:
                fix += f" and rename it: {name!r} is no chainforget hook; {did_you_mean(name, hooks)}hooks: " \
                       f"{', '.join(hooks)}"
            code = getattr(func, "__code__", None)
            warnings.warn_explicit(
                f"{owner}.{name} is not marked @hookimpl, so chainforget never calls it; {fix}", PluginWarning,
                filename=code.co_filename if code else owner, lineno=code.co_firstlineno if code else 0,
                module=owner)


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
    _building.append(kind)
    try:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            impl.function(registry=registry.scoped(sources.get(id(impl.plugin), impl.plugin_name)))
    finally:
        _building.pop()
    return registry


_building: list[str] = []  # kinds whose hooks are running (a hook must use the registry it is given)


@functools.lru_cache(maxsize=None)
def _registries() -> dict[str, Registry]:
    pm = get_plugin_manager()
    return {kind: build_registry(pm, kind) for kind in KINDS}


def registries(kind: str) -> Registry:
    """The filled registry for ``kind``: one of tasks, strategies, metrics, models, presets, launchers."""
    if _building:
        raise PluginError(f"a chainforget_register_{_building[-1]} hook asked for the finished {kind} registry, "
                          f"which is still being built; use the registry the hook receives (for a derived task "
                          f"file: load_task_file(path, tasks=registry))")
    return _registries()[kind]


def reset() -> None:
    """Forget the cached manager and registries (tests that install plugins call this)."""
    get_plugin_manager.cache_clear()
    _registries.cache_clear()
