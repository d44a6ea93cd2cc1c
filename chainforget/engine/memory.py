"""How much device memory a run needs, worked out before any weights are loaded, and whether it fits.

The estimate adds up what training holds at its peak on one device:

- **weights**: every parameter in the dtype it is stored in (``engine.precision``), divided over the processes when
  FSDP shards them; under full fine-tuning with autocast, plus the half-precision copies autocast caches per step;
- **gradients** and **optimizer state** (AdamW: two float32 moments) of the trainable parameters only;
- **activations** saved for backward by one micro-batch of ``micro_batch_size x max_length`` tokens: per layer and
  token about ``7h + 2kv + 4i`` values in the compute dtype plus float32 norm inputs (``h`` hidden, ``kv`` key/value
  width, ``i`` MLP width; SDPA keeps no ``seq^2`` attention matrix; see ``layer_activation_bytes``), or only each
  layer's input under gradient checkpointing plus one layer recomputed;
- **logits**: the ``tokens x vocabulary`` output, its float32 upcast in the loss and its gradient.

Parameter counts are exact (safetensors headers of a model directory, or the architecture built on the ``meta``
device); the activation term is an estimate, within 25% of what autograd saves for Llama-style decoders on CPU
(``tests/engine/test_memory.py``; CUDA kernels may keep a little more workspace). A 15% margin and 0.5 GiB
of runtime overhead are added before comparing with the device's free memory.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from chainforget.engine.distributed import launched_world_size
from chainforget.engine.precision import BYTES, Precision, choose_precision
from chainforget.errors import ConfigError, ModelError

GIB = 1024 ** 3
MARGIN, OVERHEAD = 1.15, GIB // 2


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know about an architecture."""

    params: int
    hidden: int
    intermediate: int
    layers: int
    kv_width: int
    vocab: int
    linear: Mapping[str, tuple[int, int, int]]  # module suffix -> (count, in features, out features)

    def lora_params(self, r: int, targets: list[str]) -> int:
        return sum(n * r * (fin + fout) for name, (n, fin, fout) in self.linear.items() if name in targets)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device; ``lines()`` renders it for ``--dry-run``, ``as_dict()`` for JSON."""

    params: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    dtype: str
    weights_dtype: str
    finetune: str
    micro_batch_size: int
    max_length: int
    gradient_checkpointing: bool
    processes: int = 1
    sharded: bool = False

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits

    @property
    def required(self) -> int:
        """What must be free on the device: the total with margin and runtime overhead."""
        return int(self.total * MARGIN) + OVERHEAD

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "required": self.required}

    def lines(self) -> list[str]:
        share = f", sharded over {self.processes} processes" if self.sharded else ""
        return [f"parameters: {self.params:,} ({self.trainable:,} trainable, {self.finetune}{share})",
                f"weights: {gib(self.weights)} ({self.weights_dtype}; compute in {self.dtype})",
                f"gradients: {gib(self.gradients)}",
                f"optimizer state (AdamW): {gib(self.optimizer)}",
                f"activations: {gib(self.activations)} (micro-batch {self.micro_batch_size} x {self.max_length} "
                f"tokens{', gradient checkpointing' if self.gradient_checkpointing else ''})",
                f"logits: {gib(self.logits)}",
                f"total: {gib(self.total)} per device; needs {gib(self.required)} free with margin"]


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


# ------------------------------------------------------------------------------------------------ shapes
def _cfg(config: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    text = config.get("text_config")
    if isinstance(text, Mapping):
        return _cfg(text, *names, default=default)
    if default is None:
        raise ModelError(f"the model config has none of {', '.join(names)}; cannot estimate its memory")
    return default


def _dims(config: Mapping[str, Any]) -> dict[str, int]:
    h = int(_cfg(config, "hidden_size", "n_embd", "d_model"))
    heads = int(_cfg(config, "num_attention_heads", "n_head"))
    head_dim = int(_cfg(config, "head_dim", default=h // heads))
    kv = int(_cfg(config, "num_key_value_heads", default=heads))
    return {"hidden": h, "intermediate": int(_cfg(config, "intermediate_size", "n_inner", default=4 * h)),
            "layers": int(_cfg(config, "num_hidden_layers", "n_layer")), "kv_width": kv * head_dim,
            "vocab": int(_cfg(config, "vocab_size"))}


def _linear_from_names(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, list[int]] = {}
    for name, shape in shapes.items():
        if name.endswith(".weight") and len(shape) == 2 and "embed" not in name and "lm_head" not in name:
            suffix = name[:-len(".weight")].rsplit(".", 1)[-1]
            n, _, _ = out.get(suffix, [0, 0, 0])
            out[suffix] = [n + 1, int(shape[1]), int(shape[0])]
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def safetensors_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from every ``*.safetensors`` header in ``directory`` (reads headers only)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(Path(directory).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                raise ModelError(f"{f} is not a safetensors file (header of {n} bytes); re-save the model")
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                shapes[name] = tuple(info["shape"])
    return shapes


def meta_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of the architecture ``config`` describes, built on the meta device (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    model_type = cfg.pop("model_type", "llama")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg))
    return {n: tuple(p.shape) for n, p in model.named_parameters()}  # tied weights appear once


def shape_of(config: Mapping[str, Any], tensors: Mapping[str, tuple[int, ...]]) -> Shape:
    params = sum(math.prod(s) for s in tensors.values())
    return Shape(params=params, linear=_linear_from_names(tensors), **_dims(config))


def shape_of_dir(directory: Path) -> Shape:
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    tensors = safetensors_shapes(directory)
    if not tensors:
        raise ModelError(f"{directory} holds no *.safetensors weights; save the model with safe_serialization=True")
    return shape_of(config, tensors)


def shape_of_model(model_spec) -> Shape:
    """The Shape of a ModelSpec: its ``config()`` built on meta, or its ``directory()``'s headers."""
    directory = getattr(model_spec, "directory", None)
    if directory is not None:
        return shape_of_dir(Path(directory()))
    config = getattr(model_spec, "config", None)
    if config is None:
        raise ModelError(f"model {model_spec.name} declares neither a config nor a directory; its memory cannot be "
                         f"estimated before loading")
    cfg = config()
    return shape_of(cfg, meta_shapes(cfg))


# ------------------------------------------------------------------------------------------------ estimate
def layer_activation_bytes(shape: Shape, a: int, *, finetune: str, autocast: bool, lora_modules: int) -> int:
    """Bytes one decoder layer saves for backward per token (calibrated on CPU against the tensors autograd saves,
    tests/engine/test_memory.py): ``7h + 2kv + 4i`` values in the compute dtype plus float32 norm inputs; autocast keeps the
    residual stream in float32; a frozen (LoRA) base saves ~30% less, plus peft's float32 copy of each adapted
    input when the base is half precision."""
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_width
    base = (7 * h + 2 * kv + 4 * i) * a + 8 * h + (8 * h if autocast else 0)
    if finetune != "lora":
        return base
    return int(0.7 * base) + (lora_modules * h * 4 if a < 4 else 0)


def estimate(shape: Shape, precision: Precision, *, finetune: str, micro_batch_size: int, max_length: int,
             gradient_checkpointing: bool = False, lora_r: int = 8, lora_targets: list[str] | None = None,
             processes: int = 1, sharded: bool = False) -> MemoryEstimate:
    """Peak training memory per device for one micro-batch (see the module docstring for the terms)."""
    a = BYTES[precision.compute]
    w = BYTES[precision.weights]
    trainable = shape.lora_params(lora_r, lora_targets or []) if finetune == "lora" else shape.params
    share = processes if sharded else 1
    weights = shape.params * w // share
    if finetune == "lora":
        weights += trainable * 4  # the float32 adapters
    elif precision.autocast != "no":
        weights += shape.params * a // share  # autocast keeps a half-precision copy of every weight per step
    gradients = trainable * 4 // share
    optimizer = trainable * 8 // share
    tokens = micro_batch_size * max_length
    per_layer = layer_activation_bytes(shape, a, finetune=finetune, autocast=precision.autocast != "no",
                                       lora_modules=len(lora_targets or []))
    h, layers = shape.hidden, shape.layers
    if gradient_checkpointing:
        activations = tokens * (layers * h * a + per_layer)
    else:
        activations = tokens * layers * per_layer
    logits = tokens * shape.vocab * (2 * a + 4 if a < 4 else 8)
    return MemoryEstimate(shape.params, trainable, weights, gradients, optimizer, activations, logits,
                          precision.compute, precision.weights, finetune, micro_batch_size, max_length,
                          gradient_checkpointing, processes, sharded)


def estimate_for(model_spec, train_cfg, precision: Precision, *, processes: int = 1,
                 sharded: bool = False) -> MemoryEstimate:
    """``estimate`` for a resolved model and a ``TrainConfig`` (what ``--dry-run`` prints)."""
    return estimate(shape_of_model(model_spec), precision, finetune=train_cfg.finetune,
                    micro_batch_size=min(train_cfg.micro_batch_size, train_cfg.batch_size),
                    max_length=train_cfg.max_length, gradient_checkpointing=train_cfg.gradient_checkpointing,
                    lora_r=train_cfg.lora_r, lora_targets=train_cfg.lora_target_list, processes=processes,
                    sharded=sharded)


# ------------------------------------------------------------------------------------------------ devices
@dataclass(frozen=True)
class DeviceMemory:
    name: str  # e.g. "cuda:0 (NVIDIA H100 80GB HBM3)" or "cpu"
    free: int
    total: int
    count: int = 1  # devices of this kind visible (GPUs), for the sharding advice


def visible_device(device=None) -> DeviceMemory:
    """Free memory of the device this process will train on: its CUDA device, else the host's available RAM."""
    import torch

    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        index = int(os.environ.get("LOCAL_RANK", "0") or 0) % max(1, torch.cuda.device_count())
        if device is not None and torch.device(device).index is not None:
            index = torch.device(device).index
        free, total = torch.cuda.mem_get_info(index)
        return DeviceMemory(f"cuda:{index} ({torch.cuda.get_device_name(index)})", free, total,
                            torch.cuda.device_count())
    return DeviceMemory("cpu", *_host_memory())


def _host_memory() -> tuple[int, int]:
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        kib = lambda key: int(info[key].strip().split()[0]) * 1024  # noqa: E731
        return kib("MemAvailable"), kib("MemTotal")
    except (OSError, KeyError, ValueError):
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def fits(est: MemoryEstimate, available: int) -> bool:
    return est.required <= available


def check_fit(est: MemoryEstimate, device: DeviceMemory, *, lora_r: int = 8,
              lora_targets: list[str] | None = None, shape: Shape | None = None,
              precision: Precision | None = None) -> None:
    """A one-line ConfigError when ``est`` does not fit ``device``, naming the changes that would make it fit."""
    if fits(est, device.free):
        return
    advice = _advice(est, device, shape, precision, lora_r, lora_targets) if shape and precision else []
    parts = (f"weights {gib(est.weights)}, gradients {gib(est.gradients)}, optimizer {gib(est.optimizer)}, "
             f"activations {gib(est.activations + est.logits)}")
    how = ("it would fit with " + " or ".join(advice)) if advice else (
        "combine --finetune lora, --gradient-checkpointing and a smaller --micro-batch-size (sharding over more "
        "GPUs with FSDP is not supported by chainforget yet)")
    raise ConfigError(f"this run needs about {gib(est.required)} on {device.name} but {gib(device.free)} is free "
                      f"({parts}); {how} (CHAINFORGET_NO_FIT_CHECK=1 skips this check)")


def _advice(est, device, shape, precision, lora_r, lora_targets) -> list[str]:
    common = dict(finetune=est.finetune, micro_batch_size=est.micro_batch_size, max_length=est.max_length,
                  gradient_checkpointing=est.gradient_checkpointing, lora_r=lora_r, lora_targets=lora_targets,
                  processes=est.processes, sharded=est.sharded)
    out = []
    if est.finetune != "lora" and fits(estimate(shape, _lora_precision(precision), **{**common,
                                                "finetune": "lora"}), device.free):
        out.append("--finetune lora")
    if not est.gradient_checkpointing and fits(estimate(shape, precision, **{**common,
                                                        "gradient_checkpointing": True}), device.free):
        out.append("--gradient-checkpointing")
    for mb in (est.micro_batch_size // 2, est.micro_batch_size // 4, 1):
        if 1 <= mb < est.micro_batch_size and fits(estimate(shape, precision, **{**common, "micro_batch_size": mb}),
                                                   device.free):
            out.append(f"--micro-batch-size {mb}")
            break
    if est.finetune == "full":
        for n in (2, 4, 8, 16, 32, 64):
            if n > est.processes and fits(estimate(shape, precision, **{**common, "processes": n, "sharded": True}),
                                          device.free):
                out.append(f"full fine-tuning sharded over {n} GPUs (FSDP; not supported by chainforget yet, see "
                           f"README 'Scaling out')")
                break
    return out


def _lora_precision(precision: Precision) -> Precision:
    """Under LoRA the base weights take the compute dtype (see engine.precision)."""
    if precision.dtype == "float32":
        return precision
    return replace(precision, weights=precision.dtype)



# ------------------------------------------------------------------------------------------------ a run
def fsdp_launch() -> bool:
    """Launched with accelerate's FSDP (``accelerate launch --use_fsdp`` or a config that enables it)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").strip().lower() == "true"


def estimate_run(model_spec, train_cfg, dtype: str = "auto", device=None) -> MemoryEstimate | None:
    """The estimate for one run on this launch (process count, FSDP), or None for a plugin model that declares
    neither ``config`` nor ``directory`` (it cannot be sized before loading). ``--dry-run`` prints ``.lines()``."""
    if getattr(model_spec, "directory", None) is None and getattr(model_spec, "config", None) is None:
        return None
    prec = choose_precision(dtype, train_cfg.finetune, train_cfg.mixed_precision, device)
    return estimate_for(model_spec, train_cfg, prec, processes=launched_world_size(), sharded=fsdp_launch())


def check_run_fits(model_spec, train_cfg, dtype: str = "auto", device=None) -> MemoryEstimate | None:
    """Stop a run that cannot fit the visible device before its weights are loaded (one-line ConfigError).
    ``CHAINFORGET_NO_FIT_CHECK=1`` skips the check (an estimate can be wrong; the device then decides)."""
    if os.environ.get("CHAINFORGET_NO_FIT_CHECK", "").strip() in ("1", "true", "yes"):
        return None
    est = estimate_run(model_spec, train_cfg, dtype, device)
    if est is not None:
        prec = choose_precision(dtype, train_cfg.finetune, train_cfg.mixed_precision, device)
        check_fit(est, visible_device(device), lora_r=train_cfg.lora_r, lora_targets=train_cfg.lora_target_list,
                  shape=shape_of_model(model_spec), precision=prec)
    return est


def eval_batch_size_for(shape: Shape, precision: Precision, free: int, length: int, limit: int = 256) -> int:
    """The largest scoring batch (rows of ``length`` tokens) that fits ``free`` bytes next to the weights: no
    gradients are kept, so a row costs one layer's transient activations, its 4-D attention mask and its kept
    logits. Scores do not depend on the batch size (tests/engine/test_scoring.py, tests/engine/test_dtype.py)."""
    a = BYTES[precision.compute]
    weights = shape.params * BYTES[precision.weights]
    per_row = length * (12 * shape.hidden + 3 * shape.intermediate) * a + length * length * (a + 1) \
        + length * shape.vocab * (a + 4) // 4
    room = int((free - weights - OVERHEAD) / MARGIN)
    return max(1, min(limit, room // max(1, per_row)))
