"""Cheap checks of a local model directory before any work: its config and the headers of its weight files.

Why: transformers reports a config that is a JSON list, a negative ``hidden_size``, ``num_hidden_layers: "two"`` or a
truncated ``model.safetensors`` with whatever exception its code happens to hit (TypeError, AttributeError,
RuntimeError, a Rust panic), after seconds of loading, or tries to allocate a tensor of a negative size. These checks
read only ``config.json`` and the safetensors headers (bytes, not tensors) and say what is wrong in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from chainforget.errors import ModelError, brief

SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "vocab_size", "max_position_embeddings", "head_dim")
MAX_SIZE = 10_000_000
MAX_HEADER = 100 << 20


def check_config(directory: Path) -> dict:
    """``config.json`` as a mapping whose size fields are positive integers, or a one-line ModelError."""
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        where = f" line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ModelError(f"{path}{where}: not valid JSON; restore the file written by save_pretrained") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path} must hold a JSON object of model settings, got a {type(config).__name__}; "
                         f"restore the file written by save_pretrained")
    for key in SIZE_FIELDS:
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZE:
            raise ModelError(f"{path}: {key} must be an integer in [1, {MAX_SIZE}], got {brief(value)}; fix or "
                             f"restore config.json")
    return config


def check_safetensors_header(path: Path) -> None:
    """The file's header parses and every tensor's bytes lie inside the file (a truncated copy fails here)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > MAX_HEADER or 8 + n > size:
                raise ValueError("the header is cut off")
            header = json.loads(fh.read(n))
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = str(exc) if str(exc) == "the header is cut off" else "its header is not valid JSON"
        raise ModelError(f"{path} is not a complete safetensors file ({reason}); copy it again") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path} is not a safetensors file (its header is not a mapping); copy it again")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ModelError(f"{path}: tensor {brief(name, 60)} has no valid data_offsets; copy the file again")
        end = max(end, offsets[1])
    if 8 + n + end > size:
        raise ModelError(f"{path} is truncated: its tensors need {8 + n + end} bytes, the file has {size}; "
                         f"copy it again")


def check_model_dir(directory: str | Path) -> None:
    """Config and weight headers of a local model directory (nothing is loaded)."""
    directory = Path(directory).expanduser()
    if not directory.exists():
        raise ModelError(f"model path {directory} does not exist; pass a registered model name "
                         f"(see `chainforget list models`) or a local Hugging Face model directory")
    if not directory.is_dir() or not (directory / "config.json").is_file():
        raise ModelError(f"{directory} is not a Hugging Face model directory (no config.json); "
                         f"point --model at a directory written by save_pretrained")
    check_config(directory)
    for weights in sorted(directory.glob("*.safetensors")):
        check_safetensors_header(weights)
