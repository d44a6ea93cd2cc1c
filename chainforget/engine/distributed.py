"""One run across several processes (``accelerate launch`` / ``torchrun``): who decides, who writes, who trains.

Every process trains (DDP through ``accelerate``) and scores its share of the evaluation set; the main process
(rank 0) alone takes file locks, decides what is complete or reusable, and writes files. Its decisions reach the
other processes through :meth:`Ranks.on_main`, which also carries a user error (a held lock, a changed data file)
to every process so they all stop with the same one-line message instead of waiting on a collective that never
comes. Unexpected crashes are left to the launcher, which tears the other workers down.

A single process is rank 0 of 1 and every method here is then a plain call: no ``torch.distributed`` is touched.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, Callable, ContextManager, Iterator, Sequence, TypeVar

T = TypeVar("T")

# How long a process may wait at a collective for the others (the main process writing, sharpness, a prefix lock
# held by another leaderboard). Generous, because a crashed worker is detected by the launcher, not by this timeout.
DEFAULT_TIMEOUT = timedelta(hours=6)


def launched_world_size() -> int:
    """Processes in this launch according to the launcher's environment (1 outside a launch)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def fsdp_requested() -> bool:
    """``accelerate launch --use_fsdp`` (or an accelerate config with FSDP) set up this process."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").strip().lower() == "true"


def refuse_sharding() -> None:
    """Sharded (FSDP) training is not supported yet: stop every process with one line before any work.

    Why not yet: under FSDP every forward is a collective, so scoring must run the same batches on every rank (the
    runner scores a different share per rank), stored weights must be gathered by every rank (only rank 0 writes),
    and EWC, LwF and SAM read whole parameters and gradients. PyTorch's FSDP2 itself runs on CPU processes (gloo)
    here; accelerate 1.15 enables its FSDP integration only for GPU launches, so none of this can be tested on CPU.
    """
    if fsdp_requested():
        from chainforget.errors import ConfigError

        raise ConfigError("sharded training (accelerate --use_fsdp) is not supported yet; launch without FSDP: "
                          "every process then holds the whole model (DDP), and --finetune lora, "
                          "--gradient-checkpointing or a smaller --micro-batch-size make a large model fit one GPU")


def is_main_process() -> bool:
    """Rank 0 (or not launched at all); cheap enough for the CLI's error printing."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def use_cpu(device) -> bool:
    """``accelerate``'s ``cpu`` flag: forced by ``device="cpu"``, and also when this machine has no accelerator,
    so that a multi-process launch on CPUs becomes gloo-backed DDP (accelerate's MULTI_CPU) rather than 1 process."""
    import torch

    if device is not None:
        return torch.device(device).type == "cpu"
    accel = getattr(torch, "accelerator", None)
    return not (accel.is_available() if accel is not None else torch.cuda.is_available())


def init_process_state(device=None):
    """The process-wide ``accelerate`` state, initialised once with our timeout (later ``Accelerator``s share it)."""
    from accelerate import PartialState

    if PartialState._shared_state != {}:  # already initialised (by us or by the caller's own Accelerator)
        return PartialState()
    if launched_world_size() > 1:
        # Avalanche builds a default logger at import time and refuses to on a non-main rank once
        # torch.distributed is up: import it before the process group exists.
        import avalanche.training.templates  # noqa: F401
    kwargs = {"timeout": DEFAULT_TIMEOUT} if launched_world_size() > 1 else {}
    return PartialState(cpu=use_cpu(device), **kwargs)


class _Failure:
    """A user error raised on the main process, sent to the others (class name and message only)."""

    def __init__(self, exc: BaseException):
        self.kind, self.message = type(exc).__name__, str(exc)

    def reraise(self):
        from chainforget import errors

        cls = getattr(errors, self.kind, None)
        if not (isinstance(cls, type) and issubclass(cls, errors.ChainforgetError)):
            cls = errors.ChainforgetError
        raise cls(self.message)


class Ranks:
    """This process's place in the launch, and the few collectives the runner needs."""

    def __init__(self, rank: int = 0, size: int = 1):
        self.rank, self.size = rank, size

    @classmethod
    def current(cls, device=None) -> "Ranks":
        """Rank and size of this launch; initialises the process group when launched with several processes."""
        refuse_sharding()
        if launched_world_size() == 1:
            return cls()
        state = init_process_state(device)
        return cls(state.process_index, state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: T = None) -> T:
        """The main process's ``value`` on every process."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the main process only and return its value on every process. A ``ChainforgetError`` it
        raises is raised on every process (same class, same message)."""
        from chainforget.errors import ChainforgetError

        if not self.distributed:
            return fn()
        outcome: Any = None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except ChainforgetError as exc:
                outcome = ("error", _Failure(exc))
                self.broadcast(outcome)
                raise
        kind, value = self.broadcast(outcome)
        if kind == "error":
            value.reraise()
        return value

    @contextlib.contextmanager
    def main_holds(self, lock: ContextManager) -> Iterator[None]:
        """Enter ``lock`` (a file lock) on the main process only; the others follow its decisions."""
        if self.is_main:
            with lock:
                yield
        else:
            yield

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first (e.g. a one-time model conversion into a cache), then the rest."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def shard(items: Sequence[T], rank: int, size: int) -> list[T]:
    """This process's share of ``items``: every ``size``-th one, starting at ``rank``."""
    return list(items[rank::size])


def unshard(parts: Sequence[Sequence[T]]) -> list[T]:
    """Inverse of :func:`shard`: ``parts[r]`` holds items r, r+size, ...; returns them in the original order."""
    size = len(parts)
    out: list[T] = []
    for i in range(sum(len(p) for p in parts)):
        out.append(parts[i % size][i // size])
    return out
