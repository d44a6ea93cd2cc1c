"""Which dtype the weights live in and which precision the arithmetic runs in, from ``--dtype`` and the method.

``auto`` is float32 on a CPU and bfloat16 on a CUDA device that supports it (float32 on older GPUs). The choice then
depends on the fine-tuning method:

- **LoRA**: the frozen base weights are stored in the chosen dtype (half the memory in bf16) and the adapters are
  float32 (peft upcasts them), so their AdamW states and updates are float32.
- **Full fine-tuning**: the weights stay float32 (master weights) and forward/backward run under autocast in the
  chosen dtype. bf16 *weights* with plain AdamW would lose every update smaller than bf16's 3-digit precision (a
  1e-5 learning rate moves a weight by ~1e-5 relative, far below bf16's 2**-8 spacing), so we keep float32 masters
  and pay 16 bytes per parameter (weights, gradient, two AdamW moments) instead of 12 in pure bf16.
- float16 always adds accelerate's gradient scaler (autocast ``fp16``) because its range underflows gradients.

Scoring runs with the same weights and autocast as training, so the numbers a run reports are the numbers its
trained model produces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from chainforget.config.spec import DTYPES  # one list of names, checked by the run spec too
from chainforget.errors import ConfigError

_AUTOCAST = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def check_name(name: str) -> str:
    if name not in DTYPES:
        raise ConfigError(f"dtype must be one of {'|'.join(DTYPES)}, got {name!r}; pass --dtype {'|'.join(DTYPES)}")
    return name


def device_kind(device=None) -> str:
    """``cuda`` when the run will use a CUDA device, else ``cpu`` (what accelerate picks with no explicit device)."""
    import torch

    if device is not None:
        return torch.device(device).type
    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_supported(kind: str) -> bool:
    import torch

    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return kind == "cpu"  # CPUs compute bf16 (slowly where the ISA lacks it), which is enough for tests


def resolve(name: str, device=None) -> str:
    """The concrete dtype name for ``name`` on ``device`` (``auto`` resolved); a one-line error if unsupported."""
    check_name(name)
    kind = device_kind(device)
    if name == "auto":
        return "bfloat16" if kind == "cuda" and bf16_supported(kind) else "float32"
    if name == "float16" and kind != "cuda":
        raise ConfigError(f"dtype float16 needs a CUDA GPU (this run is on {kind}); use --dtype bfloat16 or float32")
    if name == "bfloat16" and not bf16_supported(kind):
        raise ConfigError("this GPU does not support bfloat16; use --dtype float16 or float32")
    return name


@dataclass(frozen=True)
class Precision:
    """The chosen precision: ``weights`` = dtype the model is loaded in, ``autocast`` = accelerate's mixed_precision,
    ``compute`` = the dtype matrix products run in, ``trainable`` = dtype of the parameters AdamW updates."""

    dtype: str
    weights: str
    autocast: str
    compute: str
    trainable: str = "float32"

    @property
    def torch_weights(self):
        return torch_dtype(self.weights)


def choose_precision(name: str, finetune: str, mixed_precision: str = "no", device=None) -> Precision:
    """Weights, autocast and compute dtype for ``--dtype name`` under ``finetune`` (``full``/``lora``).

    ``mixed_precision`` (``--mixed-precision``) may be given on its own with float32 weights (the old way to ask for
    autocast); with a non-float32 dtype it must agree with it.
    """
    dtype = resolve(name, device)
    wanted = _AUTOCAST[dtype]
    if dtype != "float32" and mixed_precision not in ("no", wanted):
        raise ConfigError(f"--mixed-precision {mixed_precision} contradicts --dtype {dtype}; drop "
                          f"--mixed-precision (--dtype {dtype} implies {wanted})")
    if dtype == "float32":
        compute = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}[mixed_precision]
        return Precision(dtype, "float32", mixed_precision, compute)
    if finetune == "lora":
        # bf16 base weights compute in bf16 by themselves; fp16 still needs the gradient scaler
        return Precision(dtype, dtype, "fp16" if dtype == "float16" else mixed_precision, dtype)
    return Precision(dtype, "float32", wanted, dtype)


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def train_config(cfg, precision: Precision):
    """The ``TrainConfig`` the template runs with: ``mixed_precision`` set to the chosen autocast. The run spec keeps
    the user's settings; this copy only tells accelerate how to compute."""
    return dataclasses.replace(cfg, mixed_precision=precision.autocast)
