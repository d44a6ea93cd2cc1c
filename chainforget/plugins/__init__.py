"""Plugin system: pluggy hook specifications, the plugin manager and the registries it fills."""

from chainforget.plugins.hookspecs import hookimpl
from chainforget.plugins.manager import get_plugin_manager, registries
from chainforget.plugins.registry import Registry, RegistryEntry

__all__ = ["hookimpl", "get_plugin_manager", "registries", "Registry", "RegistryEntry"]
