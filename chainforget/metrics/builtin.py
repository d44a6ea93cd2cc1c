"""Built-in metrics."""

from chainforget.plugins.hookspecs import hookimpl


@hookimpl
def chainforget_register_metrics(registry):
    """Filled in by the room that owns this module."""
