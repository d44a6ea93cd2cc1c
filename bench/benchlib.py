"""Helpers shared by the bench scripts (run as `python bench/<script>.py`, so this module is importable)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(pkg: str) -> str:
    """The installed version of ``pkg`` (distribution names use '-'), or "unknown"."""
    try:
        return version(pkg.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"
