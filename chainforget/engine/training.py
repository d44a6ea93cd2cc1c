"""Training settings and the pieces built from them: config, LoRA/full fine-tuning, AdamW, LR schedule, token loss.

``TrainConfig`` is the one place where training hyper-parameters get their defaults, help text and validation, so
the CLI, run specs (hashing) and the template all agree. Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from chainforget.errors import ConfigError, did_you_mean

SCHEDULES = ("linear", "cosine", "constant")
FINETUNES = ("full", "lora")
PRECISIONS = ("no", "fp16", "bf16")
REDUCTIONS = ("sum", "mean", "per_example", "none")


def _f(default: Any, help: str, flag: str | None = None, choices: tuple[str, ...] | None = None):
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """Every training hyper-parameter, validated on construction (one-line ConfigError naming the CLI flag)."""

    learning_rate: float = _f(1e-4, "peak learning rate of AdamW (full fine-tuning and LoRA alike)", "--lr")
    epochs: int = _f(1, "passes over each stage's training data")
    batch_size: int = _f(8, "examples per optimizer step")
    micro_batch_size: int = _f(4, "examples per forward pass; gradient accumulation = ceil(batch / micro)")
    warmup_ratio: float = _f(0.1, "fraction of each stage's optimizer steps spent warming the LR up")
    schedule: str = _f("linear", "LR decay after warm-up", choices=SCHEDULES)
    max_grad_norm: float = _f(1.0, "clip the global gradient norm to this (0 disables clipping)")
    weight_decay: float = _f(0.0, "AdamW weight decay (matrices only, not norms or biases)")
    max_length: int = _f(512, "max tokens per training example; the prompt is cut from the left, never the target")
    max_steps: int | None = _f(None, "cap on optimizer steps per stage")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    finetune: str = _f("full", "fine-tuning method", choices=FINETUNES)
    lora_r: int = _f(8, "LoRA rank")
    lora_alpha: float = _f(16.0, "LoRA scaling alpha")
    lora_dropout: float = _f(0.0, "dropout on the LoRA branch")
    lora_targets: str = _f("q_proj,k_proj,v_proj,o_proj", "comma-separated module names that get LoRA adapters")
    mixed_precision: str = _f("no", "autocast precision (fp16 needs CUDA; bf16 where the device supports it)",
                              choices=PRECISIONS)
    seed: int = _f(0, "seed for data order, LoRA init and dropout")
    sort_by_length: bool = _f(True, "group similar lengths into a batch (less padding), order still shuffled")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _validate(f, value)
            if _kind(f) is float and not isinstance(value, float):
                object.__setattr__(self, f.name, float(value))  # 16 and 16.0 must hash the same
        names = [t.strip() for t in self.lora_targets.split(",")]
        if not all(n and n.replace("_", "").replace(".", "").isalnum() for n in names):
            raise ConfigError(f"lora_targets must be comma-separated module names, got {self.lora_targets!r}; "
                              f"pass e.g. {_flag('lora_targets')} q_proj,v_proj")

    @property
    def accumulation_steps(self) -> int:
        return math.ceil(self.batch_size / self.micro_batch_size)

    @property
    def lora_target_list(self) -> list[str]:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> "TrainConfig":
        """Build from a dict (YAML, CLI); strings are coerced, unknown keys get a did-you-mean error."""
        d = dict(d or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                hint = did_you_mean(key, known)
                raise ConfigError(f"unknown training setting {key!r}; {hint}known settings: {', '.join(known)}")
        return cls(**{k: _coerce(known[k], v) for k, v in d.items()})


def _flag(name: str) -> str:
    meta = {f.name: f.metadata for f in dataclasses.fields(TrainConfig)}[name]
    return meta.get("flag") or "--" + name.replace("_", "-")


def _kind(f: dataclasses.Field) -> type:
    default = f.default
    if f.name == "max_steps":
        return int
    return type(default)


_WORDS = {int: "whole number", float: "number", bool: "boolean (true/false)", str: "string"}


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    kind = _kind(f)
    if value is None or not isinstance(value, str) or kind is str:
        return value
    text = value.strip().lower()
    if f.name == "max_steps" and text in ("", "none", "null"):
        return None
    try:
        if kind is bool:
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text in ("true", "1", "yes")
        return kind(text) if kind is float else int(text)
    except ValueError:
        raise ConfigError(f"{f.name} must be a {_WORDS[kind]}, got {value!r}; pass {_flag(f.name)} "
                          f"with a {_WORDS[kind]}") from None


# name -> (low, low inclusive, high, high inclusive, what to pass)
_RANGES = {
    "learning_rate": (0, False, None, False, "a positive number"),
    "epochs": (1, True, None, False, "a whole number >= 1"),
    "batch_size": (1, True, None, False, "a whole number >= 1"),
    "micro_batch_size": (1, True, None, False, "a whole number >= 1"),
    "warmup_ratio": (0, True, 1, False, "a fraction in [0, 1)"),
    "max_grad_norm": (0, True, None, False, "a number >= 0 (0 disables clipping)"),
    "weight_decay": (0, True, None, False, "a number >= 0"),
    "max_length": (8, True, None, False, "a whole number >= 8"),
    "max_steps": (1, True, None, False, "a whole number >= 1 (or leave it unset)"),
    "lora_r": (1, True, None, False, "a whole number >= 1"),
    "lora_alpha": (0, False, None, False, "a positive number"),
    "lora_dropout": (0, True, 1, False, "a fraction in [0, 1)"),
    "seed": (0, True, None, False, "a whole number >= 0"),
}


def _validate(f: dataclasses.Field, value: Any) -> None:
    name, kind, flag = f.name, _kind(f), _flag(f.name)
    if value is None and name == "max_steps":
        return
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise ConfigError(f"{name} must be a {_WORDS[kind]}, got {value!r}; pass {flag} with a {_WORDS[kind]}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {'|'.join(choices)}, got {value!r}; pass {flag} "
                          f"{'|'.join(choices)}")
    if name in _RANGES:
        low, low_inc, high, high_inc, what = _RANGES[name]
        bad = not math.isfinite(value) or (low is not None and (value < low or value == low and not low_inc)) \
            or (high is not None and (value > high or value == high and not high_inc))
        if bad:
            if high is not None:
                rule = f"in {'[' if low_inc else '('}{low}, {high}{']' if high_inc else ')'}"
            else:
                rule = f"{'>=' if low_inc else '>'} {low}"
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            raise ConfigError(f"{name} must be {rule}, got {shown}; pass {flag} with {what}")


def fields_help() -> list[dict[str, Any]]:
    """One dict per setting (name, flag, type, default, choices, help) for the CLI to render as options."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        out.append({"name": f.name, "flag": _flag(f.name), "type": _kind(f).__name__, "default": f.default,
                    "choices": f.metadata.get("choices"), "help": f.metadata["help"]})
    return out


def apply_finetune(model, cfg: TrainConfig):
    """Make the model trainable as ``cfg.finetune`` says: all weights (full) or peft LoRA adapters (idempotent)."""
    import torch

    if cfg.finetune == "lora":
        from peft import LoraConfig, PeftModel, get_peft_model

        if not isinstance(model, PeftModel):
            targets = cfg.lora_target_list
            names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
            missing = [t for t in targets if t not in names]
            if missing:
                raise ConfigError(f"lora_targets {','.join(missing)} match no linear layer of this model; its "
                                  f"linear layers are {','.join(sorted(names))}; pass {_flag('lora_targets')}")
            lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=targets, task_type="CAUSAL_LM")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)  # the adapters' random init depends on the run seed only
                model = get_peft_model(model, lcfg)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False
    return model


def trainable_parameters(model) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(model, cfg: TrainConfig, fused: bool | None = None):
    """AdamW over the trainable parameters; weight decay on matrices only (norm weights and biases are exempt).
    ``fused`` (default: when every trainable parameter is on a CUDA device) updates all of them in one kernel."""
    import torch

    params = trainable_parameters(model)
    if not params:
        raise ConfigError("the model has no trainable parameters; use --finetune full or check --lora-targets")
    decay = [p for _, p in params if p.ndim >= 2]
    rest = [p for _, p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    if fused is None:
        fused = all(p.is_cuda for _, p in params)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, **({"fused": True} if fused else {}))


def lr_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """LR multiplier for 0-based optimizer step ``step``: linear warm-up that never uses lr=0, then decay.

    Warm-up gives (s+1)/(w+1) so the first step already learns; decay reaches 1/(T-w) at the last step, not 0.
    """
    total = max(1, total_steps)
    warm = min(math.ceil(cfg.warmup_ratio * total), total - 1)
    if step < warm:
        return (step + 1) / (warm + 1)
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total - warm)
    progress = min(1.0, (step - warm) / span)
    if cfg.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class _Factor:
    """Picklable LR lambda (LambdaLR keeps callables that are objects in its state)."""

    def __init__(self, total_steps: int, cfg: TrainConfig):
        self.total_steps, self.cfg = total_steps, cfg

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.cfg)


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """LambdaLR stepping once per optimizer step over ``total_steps`` steps (warm-up then ``cfg.schedule``)."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Factor(total_steps, cfg).__call__)


def target_token_loss(logits, labels, reduction: str = "sum"):
    """Next-token cross-entropy on positions whose label is not -100 (labels aligned with input ids, HF style).

    ``sum``/``mean`` over target tokens, ``per_example`` -> [B] sums, ``none`` -> [B, L-1] (0 where masked).
    Only target positions go through log-softmax for sum/mean/per_example, which saves time on long prompts.
    """
    import torch
    import torch.nn.functional as F

    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # half-precision logits: take the softmax in float32
    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    if reduction == "none":
        flat = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                               ignore_index=-100, reduction="none")
        return flat.view(shift_labels.shape)
    mask = shift_labels != -100
    token_loss = F.cross_entropy(shift_logits[mask], shift_labels[mask], reduction="none")
    if reduction == "sum":
        return token_loss.sum()
    if reduction == "mean":
        return token_loss.sum() / mask.sum().clamp(min=1)
    rows = torch.arange(mask.size(0), device=mask.device).unsqueeze(1).expand_as(mask)[mask]
    return torch.zeros(mask.size(0), device=token_loss.device, dtype=token_loss.dtype).index_add_(0, rows, token_loss)


def target_mask(labels):
    """``[B, L]`` bool: the positions whose logits predict a target token (position ``i`` predicts label ``i + 1``;
    the last position predicts nothing)."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def target_tokens(labels, keep):
    """The target token ids ``[N]`` that the ``keep`` positions predict, in the same row-major order."""
    return labels[:, 1:][keep[:, :-1]]


def target_logits(model, batch, keep=None):
    """Logits ``[N, V]`` at the ``keep`` positions of ``batch`` (default: its target positions), in row-major order.

    The LM head runs at those positions only (transformers' boolean ``logits_to_keep``): on a short target after a
    long prompt this skips most of the vocabulary projection, its softmax and their backward.
    """
    keep = target_mask(batch["labels"]) if keep is None else keep
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                   logits_to_keep=keep).logits
    if logits.dim() == 3:  # a model that ignores a boolean logits_to_keep returns every position
        logits = logits[keep]
    return logits


def target_logits_loss(logits, targets, reduction: str = "sum"):
    """Cross-entropy of target-position logits ``[N, V]`` against their tokens ``[N]``: ``sum``, ``mean`` or
    ``none`` (``[N]``); the same arithmetic as ``target_token_loss`` on full logits."""
    import torch
    import torch.nn.functional as F

    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"reduction must be sum, mean or none, got {reduction!r}")
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # half-precision logits: take the softmax in float32
    token_loss = F.cross_entropy(logits, targets, reduction="none")
    if reduction == "none":
        return token_loss
    if reduction == "sum":
        return token_loss.sum()
    return token_loss.sum() / max(int(targets.numel()), 1)
