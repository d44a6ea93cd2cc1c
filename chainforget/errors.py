"""User-facing errors.

Anything a user can cause (bad name, bad config value, malformed data file, missing model) raises a
``ChainforgetError`` whose message is one line saying what is wrong and how to fix it. The CLI turns it into
``error: <message>`` on stderr and exit status 2, without a traceback (``--debug`` shows one).
"""

from __future__ import annotations


class ChainforgetError(Exception):
    """A problem the user can fix; the message is one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(ChainforgetError):
    """A bad configuration value, key or file."""


class DataError(ChainforgetError):
    """A missing or malformed data file."""


class UnknownNameError(ChainforgetError):
    """A name that no registry knows."""


class DuplicateNameError(ChainforgetError):
    """Two plugins registered the same name."""


class PluginError(ChainforgetError):
    """A plugin could not be loaded or implements an unknown hook."""


class ModelError(ChainforgetError):
    """A model name or path that cannot be loaded."""


class TrainingError(ChainforgetError):
    """Training hit a numerical fault (NaN/Inf loss or gradients)."""


def did_you_mean(name: object, known, *, cutoff: float = 0.6) -> str:
    """``"did you mean 'x'? "`` for the closest known name, or ``""``: the one suggestion helper of the package."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}? " if close else ""
