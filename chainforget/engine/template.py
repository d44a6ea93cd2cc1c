"""``CausalLMTemplate``: Avalanche's ``SupervisedTemplate`` taught to fine-tune and score Hugging Face causal LMs.

It overrides template pieces only (dataloader, epoch loop, forward, criterion, backward, optimizer step, eval
epoch), so every Avalanche plugin hook fires in Avalanche's order. One Avalanche iteration is one optimizer step made
of gradient-accumulation micro-batches; see docs/contracts.md ("Engine: the causal-LM template") for what plugins
may rely on. Devices and mixed precision come from ``accelerate``.

Which task an experience holds (``strategy.task_name``): ``experience.task_name`` if set, else names registered with
``set_task_names(stream_name, names)`` / ``use_benchmark(chain_benchmark)``, else the examples' own ``task`` (or id
prefix) -- several tasks (joint training) give ``"a+b"``. Task specs for scoring come from ``task_specs``
(name -> TaskSpec or Task), falling back to the task registry.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from avalanche.training.templates import SupervisedTemplate

from chainforget.engine.collate import TrainBatches, data_seed, encode_examples
from chainforget.engine.counts import TokenCount, pad_token_id
from chainforget.engine.distributed import shard, unshard
from chainforget.engine.evaluator import ChainMetric, QuietEvaluator
from chainforget.engine.logs import make_loggers, progress_bar  # noqa: F401 (make_loggers re-exported)
from chainforget.engine.training import (
    TrainConfig,
    apply_finetune,
    make_optimizer,
    make_scheduler,
    target_logits,
    target_logits_loss,
    target_mask,
    target_token_loss,
    target_tokens,
    trainable_parameters,
)
from chainforget.errors import ConfigError, DataError, TrainingError

SYNC_EVERY = 16  # optimizer steps between host reads of the loss on an accelerator (a read waits for the device)


def _accelerator(cfg: TrainConfig, device):
    from accelerate import Accelerator

    from chainforget.engine.distributed import init_process_state, use_cpu

    cpu = use_cpu(device)
    kind = torch.device(device).type if device is not None else None
    if cfg.mixed_precision == "fp16" and not (torch.cuda.is_available() and kind in (None, "cuda")):
        raise ConfigError("mixed_precision fp16 needs a CUDA GPU; use --mixed-precision bf16 or no on this device")
    if cfg.mixed_precision == "bf16" and kind != "cpu" and torch.cuda.is_available() \
            and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU does not support bf16; use --mixed-precision fp16 or no")
    try:
        init_process_state(device)  # under a launch: the process group, with chainforget's collective timeout
        return Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision)
    except ValueError as exc:  # accelerate's state is process-wide; a new device/precision needs a reset
        if "already been initialized" not in str(exc):
            raise
        from accelerate.state import AcceleratorState, PartialState

        if PartialState().num_processes > 1:
            raise ConfigError("one accelerate launch runs one device and mixed precision setting; start a new "
                              "launch for a different --mixed-precision") from None
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision)


def _own_task(ex) -> str:
    return getattr(ex, "task", "") or (str(ex.id).split("/", 1)[0] if "/" in str(ex.id) else "")


class CausalLMTemplate(SupervisedTemplate):
    """Chained fine-tuning of a causal LM (full or LoRA) plus per-example scoring, as an Avalanche strategy."""

    def __init__(self, model, tokenizer, train_cfg: TrainConfig | Mapping[str, Any] | None = None,
                 plugins: Sequence[Any] = (), evaluator=None, device=None, eval_batch_size: int = 16,
                 progress: bool = True, task_specs: Mapping[str, Any] | None = None, loggers: Sequence[Any] = ()):
        cfg = train_cfg if isinstance(train_cfg, TrainConfig) else TrainConfig.from_mapping(train_cfg)
        if eval_batch_size < 1:
            raise ConfigError(f"eval batch size must be >= 1, got {eval_batch_size}; pass a positive number")
        self.accelerator = _accelerator(cfg, device)
        self.train_cfg, self.tokenizer = cfg, tokenizer
        self.progress = progress and self.accelerator.is_main_process  # one set of bars per launch
        model = apply_finetune(model, cfg)
        self._train_model = self.accelerator.prepare_model(model)  # DDP-wrapped under `accelerate launch`
        if evaluator is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Avalanche warns when there are no loggers: that is the point
                evaluator = QuietEvaluator(ChainMetric(), loggers=list(loggers))
        super().__init__(model=model, optimizer=make_optimizer(model, cfg), train_mb_size=cfg.micro_batch_size,
                         train_epochs=cfg.epochs, eval_mb_size=eval_batch_size, device=self.accelerator.device,
                         plugins=list(plugins), evaluator=evaluator, eval_every=-1)
        self.task_specs: dict[str, Any] = dict(task_specs or {})
        self.scheduler = None
        self.task_name: str | None = None
        self.mb_weight = 1.0
        self.full_logits = False  # True: also compute every position's logits (mb_logits), as plugins may ask
        self.mb_target_mask = self.mb_targets = self.mb_logits = None
        self.eval_records: dict[str, list[dict]] = {}
        self.eval_stage = 0
        self.train_count = TokenCount()  # every training pass of the current experience (SAM's second included)
        self.eval_count = TokenCount()  # the log-likelihood passes of the latest evaluation
        self.total_steps = 0  # optimizer steps planned for the current experience
        self.exp_step = 0  # optimizer steps done in the current experience
        self.optimizer_steps_total = 0
        self.trained_experiences = 0
        self.skipped_experiences = 0
        self.stage_restored = False  # True while skip_training walks a stage whose weights are stored
        self.last_loss = float("nan")
        self.last_grad_norm = float("nan")
        self.step_losses: list[float] = []
        # Host reads of loss and gradient norm (a device sync) happen every `sync_every` optimizer steps.
        self.sync_every = 1 if self.accelerator.device.type == "cpu" else SYNC_EVERY
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.train_stats: dict[str, float] = {}
        self._stream_tasks: dict[tuple[str, int], str] = {}
        self._opt_batch = None
        self._batch_tokens = 1
        self._in_micro = False
        self._pbar = None
        self._params: list[torch.Tensor] = []
        self._tokens, self._t0 = 0, 0.0

    # ----------------------------------------------------------------------------------------- task bookkeeping
    def set_task_names(self, stream_name: str, names: Sequence[str]) -> None:
        """Declare that experience i of stream ``stream_name`` holds task ``names[i]``."""
        for i, name in enumerate(names):
            self._stream_tasks[(stream_name, i)] = name

    def use_benchmark(self, bench) -> None:
        """Read task names from a ``ChainBenchmark`` (``train_task_names`` / ``eval_task_names``)."""
        self.set_task_names(bench.train_stream.name, bench.train_task_names)
        self.set_task_names(bench.test_stream.name, bench.eval_task_names)

    def task_name_of(self, experience, examples: Sequence[Any] | None = None) -> str:
        name = getattr(experience, "task_name", None)
        if name:
            return str(name)
        key = ("?", -1)
        with contextlib.suppress(AssertionError, AttributeError):  # experiences built outside a stream
            with experience.no_attribute_masking():
                key = (experience.origin_stream.name, experience.current_experience)
        if key in self._stream_tasks:
            return self._stream_tasks[key]
        names = list(dict.fromkeys(_own_task(ex) for ex in (examples if examples is not None
                                                                else experience.dataset)))
        if not names or "" in names:
            raise ConfigError(f"cannot tell which task experience {key[1]} of stream {key[0]!r} holds; set "
                              f"Example.task, experience.task_name or call set_task_names() on the template")
        return "+".join(names)

    def _enter_experience(self) -> None:
        ds = self.experience.dataset
        self.task_name = self.task_name_of(self.experience, [ds[i] for i in range(len(ds))])

    def _task_of(self, ex) -> str:
        return _own_task(ex) or str(self.task_name)

    def _spec(self, name: str):
        task = self.task_specs.get(name)
        if task is None:
            from chainforget.plugins import registries

            task = registries("tasks").get(name)
        return getattr(task, "spec", task)

    # ---------------------------------------------------------------------------------------------- training
    def _before_training_exp(self, **kwargs):
        self._enter_experience()
        super()._before_training_exp(**kwargs)

    def make_train_dataloader(self, **kwargs):
        """Tokenise the adapted dataset (plugins may have added replay data) into seeded optimizer batches."""
        cfg, ds = self.train_cfg, self.adapted_dataset
        examples = [ds[i] for i in range(len(ds))]
        encoded = encode_examples(self.tokenizer, examples, cfg.max_length, self._task_of)
        if not encoded:
            raise DataError(f"experience {self.clock.train_exp_counter + 1} (task {self.task_name}) has no "
                            f"examples with target tokens; check the task's data or --limit-train")
        pad = pad_token_id(self.tokenizer)
        procs = self.accelerator.num_processes
        if cfg.batch_size < procs:
            raise ConfigError(f"batch_size {cfg.batch_size} is smaller than the {procs} processes; raise "
                              f"--batch-size to at least {procs}")
        self.dataloader = TrainBatches(encoded, batch_size=cfg.batch_size, micro_batch_size=cfg.micro_batch_size,
                                       seed=data_seed(cfg.seed, encoded),
                                       sort_by_length=cfg.sort_by_length, pad_id=pad,
                                       process_index=self.accelerator.process_index, num_processes=procs)
        steps = len(self.dataloader) * cfg.epochs
        self.total_steps = steps if cfg.max_steps is None else min(steps, cfg.max_steps)

    def model_adaptation(self, model=None):
        return self.model if model is None else model  # HF models have no Avalanche dynamic modules

    def check_model_and_optimizer(self, **kwargs):
        self.make_optimizer(**kwargs)

    def make_optimizer(self, **kwargs):
        """A fresh AdamW and LR schedule for every experience (each chain step is a new fine-tuning run)."""
        old = self.optimizer
        raw = make_optimizer(self.model, self.train_cfg)
        acc = self.accelerator
        acc._optimizers = [o for o in acc._optimizers if o is not old]  # do not keep old AdamW states alive
        self.optimizer = acc.prepare_optimizer(raw, device_placement=False)
        self.scheduler = make_scheduler(raw, self.train_cfg, max(1, self.total_steps))
        self._params = [p for _, p in trainable_parameters(self.model)]

    def _train_exp(self, experience, eval_streams=None, **kwargs):
        self.exp_step, self.step_losses, self._pending = 0, [], []
        self.train_count = TokenCount()
        self._tokens, self._t0 = 0, time.perf_counter()
        self._pbar = progress_bar(total=self.total_steps, unit="step", dynamic_ncols=True, enabled=self.progress,
                          desc=f"train {self.clock.train_exp_counter + 1}:{self.task_name}")
        try:
            super()._train_exp(experience, eval_streams, **kwargs)
            self._read_pending(self.exp_step)  # a run stopped early by a plugin still reads its last losses
        finally:
            self._pbar.close()
            self._pbar = None
        seconds = time.perf_counter() - self._t0
        self.train_stats = {"steps": self.exp_step, "tokens": self._tokens, "seconds": seconds,
                            "tokens_per_s": self._tokens / seconds if seconds > 0 else 0.0}
        self.trained_experiences += 1

    @property
    def tokens_per_second(self) -> float:
        seconds = time.perf_counter() - self._t0 if self._pbar is not None else self.train_stats.get("seconds", 0)
        tokens = self._tokens if self._pbar is not None else self.train_stats.get("tokens", 0)
        return tokens / seconds if seconds else 0.0

    def training_epoch(self, **kwargs):
        """One Avalanche iteration per optimizer step; micro-batches inside it (see the contract for hook order)."""
        if self.exp_step >= self.total_steps:
            return  # max_steps reached in an earlier epoch
        for batch in self.dataloader:
            if self._stop_training or self.exp_step >= self.total_steps:
                break
            self._opt_batch, self._batch_tokens = batch, max(1, batch.n_target)
            self.mbatch = batch.micro_batches[0]
            self._before_training_iteration(**kwargs)
            self.optimizer.zero_grad(set_to_none=True)
            self._step_loss = torch.zeros((), device=self.device)
            last = len(batch.micro_batches) - 1
            for k, mb in enumerate(batch.micro_batches):
                self.mbatch = mb
                self._unpack_minibatch()
                self.mb_weight = mb["n_target"] / self._batch_tokens * self.accelerator.num_processes
                sync = contextlib.nullcontext()
                if k < last and self.accelerator.num_processes > 1:
                    sync = self.accelerator.no_sync(self._train_model)
                with sync:
                    self._in_micro = True
                    self._before_forward(**kwargs)
                    self.mb_output = self.forward()
                    self._after_forward(**kwargs)
                    self.loss = self.criterion()
                    self._before_backward(**kwargs)
                    self.backward()
                    self._after_backward(**kwargs)
                    self._in_micro = False
                self._tokens += mb["n_tokens"]
                self.train_count.add(mb["n_tokens"], mb["input_ids"].numel())
            self._before_update(**kwargs)
            self.optimizer_step()
            self._after_update(**kwargs)
            self._after_training_iteration(**kwargs)
            if self._pbar is not None:
                self._pbar.set_postfix(loss=f"{self.last_loss:.4f}", tok_s=f"{self.tokens_per_second:.0f}",
                                       refresh=False)
                self._pbar.update(1)

    def _unpack_minibatch(self):
        mb = self.mbatch
        for key, value in mb.items():
            if isinstance(value, torch.Tensor) and value.device != self.device:
                mb[key] = value.to(self.device, non_blocking=True)

    @property
    def mb_x(self):
        return self.mbatch["input_ids"]

    @property
    def mb_y(self):
        return self.mbatch["labels"]

    def forward(self):
        """Logits ``[N, V]`` at the N positions that predict a target token (the LM head runs only there); also
        sets ``mb_target_mask`` ``[B, L]``, ``mb_targets`` ``[N]`` and, when ``full_logits`` is set or a plugin has
        ``needs_full_logits = True``, ``mb_logits`` ``[B, L, V]`` (else None). See docs/contracts.md."""
        mb = self.mbatch
        keep = target_mask(mb["labels"])
        self.mb_target_mask, self.mb_targets = keep, target_tokens(mb["labels"], keep)
        if self.full_logits or any(getattr(p, "needs_full_logits", False) for p in self.plugins):
            self.mb_logits = self._train_model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"],
                                               use_cache=False).logits
            return self.mb_logits[keep]
        self.mb_logits = None
        return target_logits(self._train_model, mb, keep)

    @property
    def mb_target_index(self):
        """``[N, 2]`` (row, position) of each row of ``mb_output``, in its order."""
        return self.mb_target_mask.nonzero()

    def target_token_loss(self, logits, labels, reduction: str = "sum"):
        return target_token_loss(logits, labels, reduction)

    def criterion(self):
        """Summed target-token CE over the optimizer batch's target-token count (x processes, undoing DDP's mean:
        the gradient is then the same as one process computing the whole optimizer batch)."""
        loss = target_logits_loss(self.mb_output, self.mb_targets, "sum") / self._batch_tokens
        procs = self.accelerator.num_processes
        return loss * procs if procs > 1 else loss

    def backward(self):
        self.accelerator.backward(self.loss, retain_graph=self.retain_graph)
        self._step_loss = self._step_loss + self.loss.detach()

    def recompute_loss_and_backward(self, scope: str = "auto") -> float:
        """Re-run forward + criterion + backward (gradients add to ``.grad``), e.g. for SAM's second pass.

        ``scope``: ``micro_batch`` (the current one), ``optimizer_batch`` (all its micro-batches) or ``auto``
        (the current micro-batch when called from a micro-batch hook, the whole optimizer batch otherwise).
        Plugin penalties are not re-added. Returns the recomputed loss.
        """
        if scope == "auto":
            scope = "micro_batch" if self._in_micro else "optimizer_batch"
        if scope not in ("micro_batch", "optimizer_batch"):
            raise ValueError(f"scope must be auto, micro_batch or optimizer_batch, got {scope!r}")
        saved = self.mbatch, self.mb_output, self.loss, self.mb_target_mask, self.mb_targets, self.mb_logits
        batches = [self.mbatch] if scope == "micro_batch" else self._opt_batch.micro_batches
        total = 0.0
        try:
            for k, mb in enumerate(batches):
                self.mbatch = mb
                self._unpack_minibatch()
                sync = contextlib.nullcontext()
                if k < len(batches) - 1 and self.accelerator.num_processes > 1:
                    sync = self.accelerator.no_sync(self._train_model)  # one gradient all-reduce per pass
                with sync:
                    self.mb_output = self.forward()
                    loss = self.criterion()
                    self.accelerator.backward(loss)
                self.train_count.add(mb["n_tokens"], mb["input_ids"].numel())
                total += float(loss.detach())
        finally:
            self.mbatch, self.mb_output, self.loss, self.mb_target_mask, self.mb_targets, self.mb_logits = saved
        return total

    def _fault(self, what: str, value: float, step: int | None = None) -> str:
        step = self.exp_step + 1 if step is None else step
        held = "weights were not updated" if step == self.exp_step + 1 else "training stopped"
        return (f"non-finite {what} ({value}) in experience {self.clock.train_exp_counter + 1} (task "
                f"{self.task_name}) at optimizer step {step}; lower --lr or --max-grad-norm, or "
                f"check that task's data; {held} and the last complete checkpoint is kept")

    def optimizer_step(self):
        """Clip, step AdamW and the schedule. Loss and gradient norm stay on the device and are read on the host
        every ``sync_every`` steps (and at an experience's last step): a non-finite one stops training before that
        step's update. ``sync_every`` is 1 on a CPU, where reading costs nothing, so there no update ever sees one."""
        cfg = self.train_cfg
        step_loss = self._step_loss.detach()
        if self.accelerator.num_processes > 1:  # every process sees the batch's loss (and stops together on NaN)
            step_loss = self.accelerator.reduce(step_loss.clone(), reduction="sum")
        if cfg.max_grad_norm > 0:
            norm = self.accelerator.clip_grad_norm_(self._params, cfg.max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self._params if p.grad is not None])
        self._pending.append((step_loss / self.accelerator.num_processes, torch.as_tensor(norm)))
        if len(self._pending) >= self.sync_every or self.exp_step + 1 >= self.total_steps:
            self._read_pending(self.exp_step + 1)
        self.optimizer.step()
        self.scheduler.step()
        self.exp_step += 1
        self.optimizer_steps_total += 1

    def _read_pending(self, current: int) -> None:
        """One host read of the pending steps' losses and gradient norms (the last one is step ``current``); the
        first non-finite one raises."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        device = pending[0][0].device
        values = torch.stack([torch.stack([loss.float(), norm.float().to(device)]) for loss, norm in pending]).tolist()
        first = current + 1 - len(pending)
        for k, (loss, norm) in enumerate(values):
            if not math.isfinite(loss):
                raise TrainingError(self._fault("loss", loss, first + k))
            if not math.isfinite(norm) and self.train_cfg.mixed_precision != "fp16":  # fp16: the scaler skips it
                raise TrainingError(self._fault("gradient norm", norm, first + k))
            self.step_losses.append(loss)
        self.last_loss, self.last_grad_norm = values[-1]

    # ------------------------------------------------------------------------------------------ prefix reuse
    def skip_training(self, experiences, restore: Callable[[], None] | None = None, **kwargs) -> None:
        """Walk experiences as ``train`` would (datasets, dataloader, fresh optimizer, every experience-level hook)
        but run no epoch: for a stage whose trained weights are stored, so plugins (replay, EWC, LwF) build their
        post-experience state exactly as after real training.

        ``restore()`` loads the stored weights: after ``before_training_exp`` (which, as in training, sees the
        weights the stage starts from) and again after ``after_training_exp``, so the walk ends with the stored
        weights bit for bit even if a callback edited them. ``stage_restored`` is True during the walk: a plugin
        that edits weights at the end of a step skips its edit then (the stored weights already hold it).
        """
        exps = list(experiences) if isinstance(experiences, Iterable) else [experiences]
        self.is_training, self._stop_training = True, False
        self.model.train()
        self._eval_streams = []
        self.stage_restored = True
        try:
            self._before_training(**kwargs)
            for self.experience in exps:
                self._before_training_exp(**kwargs)
                if restore is not None:
                    restore()
                self.skipped_experiences += 1
                self._after_training_exp(**kwargs)
                if restore is not None:
                    restore()
            self._after_training(**kwargs)
        finally:
            self.stage_restored = False
        self._train_cleanup()

    # -------------------------------------------------------------------------------------------- evaluation
    def eval(self, exp_list, stage: int | None = None, **kwargs):
        """Score every experience of ``exp_list``; ``eval_records[task]`` gets one record per example.

        ``stage`` is the score-matrix row (default: training experiences done so far, 0 = base model); the records
        store it under their ``step`` key.
        """
        self.eval_stage = self.clock.train_exp_counter if stage is None else int(stage)
        self.eval_records = {}
        self.eval_count = TokenCount()
        return super().eval(exp_list, **kwargs)

    def _before_eval_exp(self, **kwargs):
        self._enter_experience()
        super()._before_eval_exp(**kwargs)

    def make_eval_dataloader(self, **kwargs):
        self.dataloader = []  # the scorer batches by itself (shared prompts, options, generation)

    def eval_epoch(self, **kwargs):
        from chainforget.engine.scoring import score_examples

        ds = self.adapted_dataset
        examples = [ds[i] for i in range(len(ds))]
        acc = self.accelerator
        if acc.num_processes > 1:  # each process scores every P-th example; all get every record back in order
            examples = shard(examples, acc.process_index, acc.num_processes)
        with acc.autocast():
            records = score_examples(self.model, self.tokenizer, self._spec(self.task_name), examples,
                                     stage=self.eval_stage, batch_size=self.eval_mb_size, progress=self.progress,
                                     device=self.device, count=self.eval_count)
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            records = unshard(gather_object([records]))
        self.eval_records[self.task_name] = records


# Avalanche wraps every template __init__ to warn about positional arguments; this one takes them by design.
CausalLMTemplate.__init__ = CausalLMTemplate.__init__.__wrapped__
