"""What a run reports while it works: progress bars (a line per bar when stderr is not a terminal) and the Avalanche
loggers of ``--log text,csv,tensorboard,wandb`` (the values they receive: ``engine.evaluator``).

Nothing here imports avalanche, torch or tqdm at module level: the commands that only read results import it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from chainforget.errors import ConfigError, did_you_mean

LOGGERS = ("text", "csv", "tensorboard", "wandb")


def progress_bar(*, total: int, desc: str, unit: str, enabled: bool = True, **tqdm_options):
    """A tqdm bar on a terminal. When stderr is not a terminal (a redirected log, a batch job) no bar is drawn, so
    the log holds no carriage returns: one line says what was done when the bar closes instead."""
    if enabled and not _stderr_is_terminal():
        return LineProgress(total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, **tqdm_options)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class LineProgress:
    """What ``progress_bar`` gives when stderr is not a terminal: counts silently, prints one line on close
    (``train 1:bbq: 3/3 step in 2.1s (loss=10.84)``). Supports the tqdm calls the engine makes."""

    def __init__(self, *, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self._postfix: dict[str, str] = {}
        self._t0 = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **values) -> None:
        self._postfix = {k: str(v) for k, v in {**(ordered_dict or {}), **values}.items()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        extra = f" ({', '.join(f'{k}={v}' for k, v in self._postfix.items())})" if self._postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} in {time.perf_counter() - self._t0:.1f}s{extra}",
              file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_logger_names(names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else list(names)
    out = []
    for name in (n.strip().lower() for n in items):
        if not name or name == "none":
            continue
        if name not in LOGGERS:
            hint = did_you_mean(name, LOGGERS)
            raise ConfigError(f"unknown logger {name!r}; {hint}pass --log with any of {','.join(LOGGERS)}")
        out.append(name)
    return out


def check_wandb() -> None:
    """``--log wandb`` needs wandb, in a release that still has what Avalanche's WandBLogger calls
    (``wandb.util.generate_id``, removed in recent wandb releases); checked before any work."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("--log wandb needs the wandb package; pip install wandb") from None
    if not callable(getattr(getattr(wandb, "util", None), "generate_id", None)):
        from importlib.metadata import version

        raise ConfigError(f"--log wandb: the installed wandb {getattr(wandb, '__version__', '?')} lacks "
                          f"wandb.util.generate_id, which avalanche-lib {version('avalanche-lib')}'s WandBLogger "
                          f"calls; install a wandb release that still provides it, or log with --log "
                          f"text,csv,tensorboard")


def make_loggers(names: str | Sequence[str] | None, log_dir: str | Path) -> list:
    """Avalanche loggers writing under ``log_dir``: text -> log.txt, csv -> csv/, tensorboard -> tb/, wandb."""
    wanted = parse_logger_names(names)
    log_dir = Path(log_dir)
    if wanted:
        log_dir.mkdir(parents=True, exist_ok=True)
    loggers = []
    for name in wanted:
        if name == "text":
            from avalanche.logging import TextLogger

            loggers.append(TextLogger(open(log_dir / "log.txt", "a", encoding="utf-8", buffering=1)))
        elif name == "csv":
            from avalanche.logging import CSVLogger

            loggers.append(CSVLogger(log_folder=str(log_dir / "csv")))
        elif name == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError("--log tensorboard needs the tensorboard package; pip install tensorboard") from None
            from avalanche.logging import TensorboardLogger

            loggers.append(TensorboardLogger(tb_log_dir=str(log_dir / "tb")))
        else:
            check_wandb()
            from avalanche.logging import WandBLogger

            loggers.append(WandBLogger(project_name="chainforget", run_name=log_dir.name, dir=str(log_dir)))
    return loggers
