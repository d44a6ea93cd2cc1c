"""Built-in tasks (BBQ, ToxiGen, GSM8K, BoolQ, CommonsenseQA, OpenBookQA)."""

from chainforget.plugins.hookspecs import hookimpl


@hookimpl
def chainforget_register_tasks(registry):
    """Filled in by the room that owns this module."""
