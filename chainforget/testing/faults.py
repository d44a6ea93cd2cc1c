"""Planted faults: crash, fill the disk or poison the weights at named points, chosen by environment variables.

Why: the promise that a run killed at any moment loses nothing (docs/reliability.md) can only be tested by killing a
real process exactly where it writes files, trains or evaluates. The code that does those things calls
``point(name, detail)``; unless one of the variables below is set, that is one dictionary lookup and nothing else.

``<spec>`` is ``<name>[/<detail glob>][:<n>][+<seconds>]``: fire at the n-th (default 1st) call of a point whose name
matches and whose detail matches the glob, after ``<seconds>`` from a timer thread (so the process dies in the middle
of what follows the point). Several specs may be given, comma-separated.

    CHAINFORGET_CRASH_AT=<spec>    SIGKILL this process (e.g. ``train/2+0.5``, ``write/*/result.json``, ``eval/0:1``)
    CHAINFORGET_ENOSPC_AT=<spec>   raise OSError(ENOSPC) at the point (a full disk)
    CHAINFORGET_NAN_AT=<spec>      ``nan_requested`` answers True (the caller fills the weights with NaN)
    CHAINFORGET_FAULT_LOG=<file>   append one line per fault fired, before firing it

Points: ``eval/<row>`` (the evaluation of a score-matrix row starts), ``train/<stage>`` (training of a stage starts),
``write/<folder>/<file>`` (an atomic write has written its temporary file but not yet renamed it over
``<folder>/<file>``, e.g. ``write/records/step-1.jsonl.gz`` or ``write/s2-*/DONE``).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import threading
from dataclasses import dataclass

CRASH_VAR, ENOSPC_VAR, NAN_VAR, LOG_VAR = ("CHAINFORGET_CRASH_AT", "CHAINFORGET_ENOSPC_AT", "CHAINFORGET_NAN_AT",
                                          "CHAINFORGET_FAULT_LOG")
POINTS = ("eval", "train", "write")


@dataclass
class _Spec:
    name: str
    detail: str
    nth: int
    delay: float
    text: str = ""
    hits: int = 0


def parse_spec(text: str) -> _Spec:
    """``train/2:1+0.5`` -> name train, detail 2, nth 1, delay 0.5 (a malformed spec is a ValueError)."""
    body, _, delay = text.strip().partition("+")
    body, _, nth = body.partition(":")
    name, _, detail = body.partition("/")
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r} in {text!r}; points: {', '.join(POINTS)}")
    spec = _Spec(name, detail or "*", int(nth) if nth else 1, float(delay) if delay else 0.0, text.strip())
    if spec.nth < 1 or spec.delay < 0:
        raise ValueError(f"bad fault spec {text!r}: need n >= 1 and seconds >= 0")
    return spec


_parsed: dict[tuple[str, str], list[_Spec]] = {}  # (variable, its value) -> specs with their hit counters


def _specs(var: str) -> list[_Spec]:
    value = os.environ.get(var)
    if not value:
        return []
    key = (var, value)
    if key not in _parsed:
        _parsed[key] = [parse_spec(part) for part in value.split(",") if part.strip()]
    return _parsed[key]


def _fires(var: str, name: str, detail: str) -> _Spec | None:
    for spec in _specs(var):
        if spec.name == name and fnmatch.fnmatchcase(detail, spec.detail):
            spec.hits += 1
            if spec.hits == spec.nth:
                _log(f"{var} {spec.text} at {name}/{detail}")
                return spec
    return None


def _log(line: str) -> None:
    path = os.environ.get(LOG_VAR)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {line}\n")
            fh.flush()
            os.fsync(fh.fileno())


def _kill() -> None:
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # pragma: no cover - Windows has no SIGKILL


def point(name: str, detail: str = "") -> None:
    """A place where a crash or a full disk must be survivable; does nothing unless a fault variable names it."""
    if not (os.environ.get(CRASH_VAR) or os.environ.get(ENOSPC_VAR)):
        return
    spec = _fires(CRASH_VAR, name, detail)
    if spec is not None:
        if spec.delay:
            timer = threading.Timer(spec.delay, _kill)
            timer.daemon = True
            timer.start()
        else:
            _kill()
    if _fires(ENOSPC_VAR, name, detail) is not None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), detail or name)


def nan_requested(name: str, detail: str = "") -> bool:
    """True when CHAINFORGET_NAN_AT names this point: the caller then fills its trainable weights with NaN."""
    return bool(os.environ.get(NAN_VAR)) and _fires(NAN_VAR, name, detail) is not None
