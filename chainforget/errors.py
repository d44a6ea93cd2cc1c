"""User-facing errors.

Anything a user can cause (bad name, bad config value, malformed data file, missing model) raises a
``ChainforgetError`` whose message is one line saying what is wrong and how to fix it. The CLI turns it into
``error: <message>`` on stderr and exit status 2, without a traceback (``--debug`` shows one).
"""

from __future__ import annotations

MAX_MESSAGE = 600  # characters: a message quoting a hostile value must stay one readable line


def brief(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: what every message shows of a user's value (a huge or deeply
    nested value must not flood the terminal or exhaust memory while the message is formatted)."""
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 20:
        value = type(value).__name__ + f" of {len(value)} items"
        return value
    try:
        text = repr(value)
    except RecursionError:
        return f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ChainforgetError(Exception):
    """A problem the user can fix; the message is one line (cut at ``MAX_MESSAGE`` characters)."""

    exit_code = 2

    def __init__(self, message: str):
        text = " ".join(str(message).split())
        super().__init__(text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "...")


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


def closest(name: object, known, *, cutoff: float = 0.6) -> str | None:
    """The known name closest to ``name`` (difflib's ratio at least ``cutoff``), or None."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: object, known, *, cutoff: float = 0.6) -> str:
    """``"did you mean 'x'? "`` for the closest known name, or ``""``: the one suggestion helper of the package."""
    match = closest(name, known, cutoff=cutoff)
    return f"did you mean {match!r}? " if match else ""


def unknown_name(what: str, name: object, known, listed: str, *, where: str = "", cutoff: float = 0.6,
                 see: str = "") -> "ConfigError":
    """The one-line error for a name that is none of ``known``: ``[where: ]unknown WHAT 'name'; did you mean ...?
    LISTED: a, b, c[ see]``."""
    known = [str(k) for k in known]
    prefix = f"{where}: " if where else ""
    return ConfigError(f"{prefix}unknown {what} {name!r}; {did_you_mean(name, known, cutoff=cutoff)}{listed}: "
                       f"{', '.join(known)}{' ' + see if see else ''}")
