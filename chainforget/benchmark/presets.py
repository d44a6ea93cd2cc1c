"""Built-in leaderboard presets."""

from chainforget.plugins.hookspecs import hookimpl


@hookimpl
def chainforget_register_presets(registry):
    """Filled in by the room that owns this module."""
