"""Default training hyper-parameters, readable without importing torch (the CLI shows them in --help)."""

from __future__ import annotations

import dataclasses


def _defaults() -> dict:
    from chainforget.engine.training import TrainConfig  # must stay torch-free at import time

    out = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


TRAIN_DEFAULTS = _defaults()
