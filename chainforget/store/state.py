"""Checkpoint primitives: trainable weights and plugin states, written atomically.

Every file goes through the package's one atomic writer (``store/atomic.py``): serialized in memory, written to a
temporary sibling, fsynced and moved into place, so a killed run never leaves a half-written file under the final
name nor a temporary name the next run does not clean up. Loading uses safetensors or
``torch.load(weights_only=True)``: a checkpoint can never execute code.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from chainforget.errors import DataError, PluginError
from chainforget.store.atomic import atomic_write_bytes, atomic_write_text
from chainforget.store.atomic import read_json as atomic_read_json
from chainforget.store.layout import plugin_state_files


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """A checkpoint JSON file (sorted keys, so reruns write identical bytes), atomically."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: str | os.PathLike) -> Any:
    return atomic_read_json(path, "checkpoint file", fix="delete that checkpoint directory to retrain the step")


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> None:
    """Serialize to bytes in memory, then the package's atomic writer: one temp-file scheme, one kill point
    (``write/<folder>/<name>.safetensors``), and a full disk is an OSError like any other write."""
    from safetensors.torch import save

    atomic_write_bytes(path, _canonical_safetensors(save(dict(tensors), metadata=dict(metadata))))


def _canonical_safetensors(data: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: the library writes its maps in a per-process random order,
    and a rerun must write the same bytes (so checksums and byte comparisons of weights agree). Data offsets are
    relative to the end of the header, so the tensor bytes stay as they are."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned, as the library writes it
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def read_safetensors(path: str | os.PathLike, what: str, fix: str) -> dict[str, Any]:
    """All tensors of a safetensors file; a truncated or foreign file is a one-line DataError."""
    from safetensors.torch import load

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} {path} is missing; {fix}") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}; {fix}") from None
    try:
        return load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        reason = " ".join(str(exc).split())[:120]
        raise DataError(f"cannot read {what} {path}: {reason}; {fix}") from None


# ------------------------------------------------------------------------------------------------ model weights
def _named_trainable(model) -> dict[str, Any]:
    """Trainable parameters by name; tied weights appear once (named_parameters drops duplicates)."""
    params = dict(model.named_parameters())
    trainable = {n: p for n, p in params.items() if p.requires_grad}
    return trainable if trainable else params


def save_trainable(model, path: str | os.PathLike) -> int:
    """Save the trainable parameters (LoRA: adapters only; full: every weight, tied ones once) as safetensors."""
    tensors = {n: p.detach().to("cpu").contiguous().clone() for n, p in _named_trainable(model).items()}
    write_safetensors(path, tensors, {"format": "pt", "chainforget": "trainable"})
    return len(tensors)


def load_trainable(model, path: str | os.PathLike) -> int:
    """Copy saved trainable parameters into ``model`` in place (tied weights follow); names and shapes must match."""
    import torch

    saved = read_safetensors(path, "weights", "delete that checkpoint directory to retrain")
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
        if value["__tensor__"] not in tensors:
            raise DataError(f"plugin state refers to tensor {str(value['__tensor__'])[:80]!r}, which its "
                            f"safetensors file lacks")
        return tensors[value["__tensor__"]]
    if set(value) == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if set(value) == {"__items__"}:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    if set(value) == {"__dataclass__", "fields"}:
        name = str(value["__dataclass__"])[:120]
        module, _, qualname = name.partition(":")
        if not module.startswith("chainforget."):
            raise DataError(f"plugin state names class {name}, outside chainforget; refusing it")
        try:
            cls = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError, ValueError):
            raise DataError(f"plugin state names class {name}, which does not exist") from None
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or not isinstance(value["fields"], dict):
            raise DataError(f"plugin state names class {name}, which is not a dataclass; refusing it")
        kwargs = {k: _decode(v, tensors) for k, v in value["fields"].items()}
        hints = {f.name: f for f in dataclasses.fields(cls)}
        if set(kwargs) != set(hints):
            raise DataError(f"plugin state for {name} has fields {sorted(kwargs)[:8]}, the class has "
                            f"{sorted(hints)[:8]}")
        for k, v in kwargs.items():  # JSON turned the tuples the dataclass declares into lists
            if isinstance(v, list) and "tuple" in str(hints[k].type):
                kwargs[k] = tuple(v)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise DataError(f"plugin state for {name} does not fit the class ({str(exc)[:100]})") from None
    return {k: _decode(v, tensors) for k, v in value.items()}


def stateful_plugins(plugins: Sequence[Any]) -> list[tuple[str, Any]]:
    return [(_plugin_key(p, i), p) for i, p in enumerate(plugins)
            if callable(getattr(p, "state_dict", None)) and callable(getattr(p, "load_state_dict", None))]


def save_plugin_states(plugins: Sequence[Any], directory: str | os.PathLike) -> list[str]:
    """Per stateful plugin: ``<key>.json`` (structure and JSON values) + ``<key>.safetensors`` (its tensors).
    Returns the keys written."""
    directory = Path(directory)
    keys = []
    for key, plugin in stateful_plugins(plugins):
        tensors: dict[str, Any] = {}
        tree = _encode(plugin.state_dict(), tensors, "", key)
        meta, weights = plugin_state_files(directory, key)
        write_safetensors(weights, tensors, {"format": "pt"})
        write_json({"plugin": type(plugin).__name__, "state": tree}, meta)
        keys.append(key)
    return keys


def load_plugin_states(plugins: Sequence[Any], directory: str | os.PathLike) -> list[str]:
    """Give every stateful plugin the state saved under its key; a missing or damaged file is a DataError."""
    directory = Path(directory)
    fix = "delete that checkpoint directory to retrain the step"
    keys = []
    for key, plugin in stateful_plugins(plugins):
        meta, weights = plugin_state_files(directory, key)
        if not meta.is_file() or not weights.is_file():
            raise DataError(f"checkpoint {directory} has no state for plugin {key}; it was written by another "
                            f"strategy: delete it to retrain")
        saved = read_json(meta)
        if not isinstance(saved, dict) or "state" not in saved:
            raise DataError(f"checkpoint file {meta} holds no plugin state; {fix}")
        try:
            state = _decode(saved["state"], read_safetensors(weights, "plugin state", fix))
        except DataError as exc:
            raise DataError(f"checkpoint {directory}: {exc}; {fix}") from None
        except (TypeError, KeyError, ValueError, AttributeError, RecursionError) as exc:
            raise DataError(f"checkpoint file {meta} is damaged ({type(exc).__name__}); {fix}") from None
        plugin.load_state_dict(state)
        keys.append(key)
    return keys
