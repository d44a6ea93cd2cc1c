"""Built-in models (smollm2-135m, tiny)."""

from chainforget.plugins.hookspecs import hookimpl


@hookimpl
def chainforget_register_models(registry):
    """Filled in by the room that owns this module."""
