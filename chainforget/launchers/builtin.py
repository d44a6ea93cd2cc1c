"""Built-in launchers, registered through the same hook a plugin would use."""

from __future__ import annotations

from chainforget.launchers.local import LocalLauncher
from chainforget.launchers.ray import RayLauncher
from chainforget.plugins.hookspecs import hookimpl


@hookimpl
def chainforget_register_launchers(registry):
    registry.register("local", LocalLauncher(), LocalLauncher.description)
    registry.register("ray", RayLauncher(), RayLauncher.description)
