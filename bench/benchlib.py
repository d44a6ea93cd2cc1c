"""Helpers shared by the bench scripts (run as `python bench/<script>.py`, so this module is importable)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(pkg: str) -> str:
    """The installed version of ``pkg`` (distribution names use '-'), or "unknown"."""
    try:
        return version(pkg.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"


def set_threads(threads: int | None) -> int:
    """Set torch's thread count (None: keep torch's choice); the count in use."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def smollm2_with_threads(threads: int | None):
    """torch set to ``threads`` (None: torch's choice), then the embedded SmolLM2-135M and its tokenizer."""
    from chainforget.engine.models import load_smollm2

    set_threads(threads)
    return load_smollm2()
