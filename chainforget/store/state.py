"""Checkpoint primitives: trainable weights, optimizer + schedule, RNG states and plugin states, written atomically.

Every file is written to a temporary sibling and moved into place with ``os.replace``, so a killed run never leaves
a half-written file under the final name. Loading uses safetensors or ``torch.load(weights_only=True)``: a checkpoint
can never execute code.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from chainforget.errors import DataError, PluginError


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush a written file (or a directory's entries) to the disk; best effort where a directory cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems refuse fsync on directories (EINVAL): the rename is still atomic
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp file name next to ``path``; on success it is fsynced and replaces ``path`` atomically (the
    directory fsynced too, so the rename survives a power cut), on error it vanishes."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent, directory=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True)


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read checkpoint file {path}: {type(exc).__name__}; delete that checkpoint "
                        f"directory to retrain the step") from None


# ------------------------------------------------------------------------------------------------ model weights
def _named_trainable(model) -> dict[str, Any]:
    """Trainable parameters by name; tied weights appear once (named_parameters drops duplicates)."""
    params = dict(model.named_parameters())
    trainable = {n: p for n, p in params.items() if p.requires_grad}
    return trainable if trainable else params


def save_trainable(model, path: str | os.PathLike) -> int:
    """Save the trainable parameters (LoRA: adapters only; full: every weight, tied ones once) as safetensors."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().to("cpu").contiguous().clone() for n, p in _named_trainable(model).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", "chainforget": "trainable"})
    return len(tensors)


def load_trainable(model, path: str | os.PathLike) -> int:
    """Copy saved trainable parameters into ``model`` in place (tied weights follow); names and shapes must match."""
    import torch
    from safetensors.torch import load_file

    try:
        saved = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise DataError(f"cannot read weights {path}: {exc}; delete that checkpoint directory to retrain") from None
    params = dict(model.named_parameters())
    expected = _named_trainable(model)
    unknown = [n for n in saved if n not in params]
    missing = [n for n in expected if n not in saved]
    if unknown or missing:
        what = f"unknown {unknown[0]}" if unknown else f"missing {missing[0]}"
        raise DataError(f"weights {path} do not match this model ({what}); it was written for another model or "
                        f"fine-tuning method: delete it or use the matching --finetune")
    with torch.no_grad():
        for name, tensor in saved.items():
            p = params[name]
            if p.shape != tensor.shape:
                raise DataError(f"weights {path}: {name} has shape {tuple(tensor.shape)}, the model expects "
                                f"{tuple(p.shape)}; delete that checkpoint")
            p.copy_(tensor.to(device=p.device, dtype=p.dtype))
    return len(saved)


# -------------------------------------------------------------------------------------------- optimizer state
def save_optimizer(optimizer, scheduler, path: str | os.PathLike) -> None:
    import torch

    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_optimizer(optimizer, scheduler, path: str | os.PathLike) -> None:
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read optimizer state {path}: {type(exc).__name__}; delete that checkpoint") from None
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])


# ----------------------------------------------------------------------------------------------------- RNG
def _b64(tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _from_b64(text: str):
    import numpy as np
    import torch

    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU + every CUDA device) RNG states as a JSON-able dict."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {"python": [version, list(internal), gauss],
           "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
           "torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        out["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_from_b64(state["torch"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_from_b64(s) for s in state["cuda"]])


# ------------------------------------------------------------------------------------------- plugin states
def _plugin_key(plugin, index: int) -> str:
    name = getattr(plugin, "name", None)
    base = name if isinstance(name, str) and name else type(plugin).__name__
    return f"{index:02d}-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)


def _encode(value: Any, tensors: dict, where: str, owner: str) -> Any:
    """JSON-able tree with tensors replaced by ``{"__tensor__": key}`` (key into the safetensors file)."""
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        key = where or "value"
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not cls.__module__.startswith("chainforget."):
            raise PluginError(f"plugin {owner} state holds a {cls.__name__} at {where!r}; only chainforget "
                              f"dataclasses, tensors and JSON values can be checkpointed")
        fields = {f.name: _encode(getattr(value, f.name), tensors, f"{where}.{f.name}", owner)
                  for f in dataclasses.fields(value)}
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, tensors, f"{where}.{k}" if where else k, owner) for k, v in value.items()}
        return {"__items__": [[_encode(k, tensors, f"{where}.k{i}", owner),
                               _encode(v, tensors, f"{where}.v{i}", owner)] for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, tensors, f"{where}.{i}", owner) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    raise PluginError(f"plugin {owner} state holds a {type(value).__name__} at {where!r}; state_dict() must return "
                      f"tensors, JSON values or chainforget dataclasses")


def _decode(value: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__tensor__"}:
        return tensors[value["__tensor__"]]
    if set(value) == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if set(value) == {"__items__"}:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    if set(value) == {"__dataclass__", "fields"}:
        module, _, qualname = value["__dataclass__"].partition(":")
        if not module.startswith("chainforget."):
            raise DataError(f"plugin state names class {value['__dataclass__']}, outside chainforget; refusing it")
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        kwargs = {k: _decode(v, tensors) for k, v in value["fields"].items()}
        hints = {f.name: f for f in dataclasses.fields(cls)}
        for k, v in kwargs.items():  # JSON turned the tuples the dataclass declares into lists
            if isinstance(v, list) and "tuple" in str(hints[k].type):
                kwargs[k] = tuple(v)
        return cls(**kwargs)
    return {k: _decode(v, tensors) for k, v in value.items()}


def stateful_plugins(plugins: Sequence[Any]) -> list[tuple[str, Any]]:
    return [(_plugin_key(p, i), p) for i, p in enumerate(plugins)
            if callable(getattr(p, "state_dict", None)) and callable(getattr(p, "load_state_dict", None))]


def save_plugin_states(plugins: Sequence[Any], directory: str | os.PathLike) -> list[str]:
    """Per stateful plugin: ``<key>.json`` (structure and JSON values) + ``<key>.safetensors`` (its tensors)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    keys = []
    for key, plugin in stateful_plugins(plugins):
        tensors: dict[str, Any] = {}
        tree = _encode(plugin.state_dict(), tensors, "", key)
        with atomic_path(directory / f"{key}.safetensors") as tmp:
            save_file(tensors, tmp, metadata={"format": "pt"})
        write_json({"plugin": type(plugin).__name__, "state": tree}, directory / f"{key}.json")
        keys.append(key)
    return keys


def load_plugin_states(plugins: Sequence[Any], directory: str | os.PathLike) -> list[str]:
    """Give every stateful plugin the state saved under its key; a missing file is a DataError."""
    from safetensors.torch import load_file

    directory = Path(directory)
    keys = []
    for key, plugin in stateful_plugins(plugins):
        meta, weights = directory / f"{key}.json", directory / f"{key}.safetensors"
        if not meta.is_file() or not weights.is_file():
            raise DataError(f"checkpoint {directory} has no state for plugin {key}; it was written by another "
                            f"strategy: delete it to retrain")
        plugin.load_state_dict(_decode(read_json(meta)["state"], load_file(str(weights))))
        keys.append(key)
    return keys
