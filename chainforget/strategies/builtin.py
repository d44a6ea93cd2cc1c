"""Built-in strategies."""

from chainforget.plugins.hookspecs import hookimpl


@hookimpl
def chainforget_register_strategies(registry):
    """Filled in by the room that owns this module."""
