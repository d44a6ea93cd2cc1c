"""Where every file of a run directory and of the prefix store lives: the one place that knows the layout.

Why one class: the layout is a contract between writers (the runner, the stage runner, the prefix store), readers
(metrics, compare, plot, sharpness) and people (docs/contracts.md). Written as path literals across modules, a change
to how checkpoints are stored touched five files; here it touches one. Layout::

    <out>/<run-id>/spec.json                         the run's spec (written first)
    <out>/<run-id>/records/step-<t>.jsonl.gz         evaluation records of score-matrix row t
    <out>/<run-id>/checkpoints/step-<k>/state.json   which prefix entry holds stage k's weights
    <out>/<run-id>/checkpoints/step-<k>/<plugin>.json, <plugin>.safetensors   plugin states after stage k
    <out>/<run-id>/checkpoints/step-<k>/DONE         checksum marker of the checkpoint (written last)
    <out>/<run-id>/result.json, DONE                 the result and its checksum marker (written last)
    <out>/<run-id>/logs/                             Avalanche loggers (--log)
    <out>/_prefix/<key>/weights.safetensors, records.jsonl.gz, meta.json, DONE   a shared chain prefix
    <out>/_prefix/<key>.lock, <out>/<run-id>/.lock   file locks

Temporary files are ``.<name>.<random>.tmp`` siblings of the file being written (see ``atomic.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"
DONE_FILE = "DONE"
RECORDS_DIR = "records"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
LOCK_FILE = ".lock"
PREFIX_DIR = "_prefix"
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.safetensors"
PREFIX_RECORDS_FILE = "records.jsonl.gz"
META_FILE = "meta.json"
TEMP_PATTERN = ".*.tmp"
_RECORDS_RE = re.compile(r"^step-(\d+)\.jsonl\.gz$")


def is_temp(path: str | Path) -> bool:
    """A writer's temporary file (``.<name>.<random>.tmp``): never read, deleted by the next lock holder."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def plugin_state_files(directory: str | Path, key: str) -> tuple[Path, Path]:
    """The JSON structure and the tensors of plugin ``key``'s state in a checkpoint directory."""
    return Path(directory) / f"{key}.json", Path(directory) / f"{key}.safetensors"


class CheckpointLayout:
    """``checkpoints/step-<k>/``: the run's own marker that stage k is done, and its plugin states."""

    def __init__(self, root: Path, stage: int):
        self.root, self.stage = Path(root), int(stage)

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def done(self) -> Path:
        return self.root / DONE_FILE

    def plugin_files(self, key: str) -> tuple[Path, Path]:
        """The JSON structure and the tensors of plugin ``key``'s state."""
        return plugin_state_files(self.root, key)


class RunLayout:
    """The files of one run directory ``<out>/<run-id>/``."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)

    @property
    def spec(self) -> Path:
        return self.root / SPEC_FILE

    @property
    def result(self) -> Path:
        return self.root / RESULT_FILE

    @property
    def done(self) -> Path:
        return self.root / DONE_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR

    @property
    def records_dir(self) -> Path:
        return self.root / RECORDS_DIR

    def records(self, stage: int) -> Path:
        return self.records_dir / f"step-{int(stage)}.jsonl.gz"

    def records_name(self, stage: int) -> str:
        """The records file of ``stage`` relative to the run directory (as the DONE marker lists it)."""
        return f"{RECORDS_DIR}/step-{int(stage)}.jsonl.gz"

    def record_stages(self) -> list[int]:
        """The score-matrix rows whose records are on disk, ascending."""
        if not self.records_dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.records_dir.iterdir() if (m := _RECORDS_RE.match(p.name)))

    def checkpoint(self, stage: int) -> CheckpointLayout:
        return CheckpointLayout(self.root / CHECKPOINTS_DIR / f"step-{int(stage)}", stage)

    def looks_like_run(self) -> bool:
        """A run directory has its spec, its records or its result (a DONE marker alone is not enough: prefix
        entries have those too)."""
        return any(p.exists() for p in (self.result, self.spec, self.records_dir))


class PrefixEntry:
    """``_prefix/<key>/``: the weights after a chain prefix, their evaluation records and meta."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def weights(self) -> Path:
        return self.root / WEIGHTS_FILE

    @property
    def records(self) -> Path:
        return self.root / PREFIX_RECORDS_FILE

    @property
    def meta(self) -> Path:
        return self.root / META_FILE

    @property
    def done(self) -> Path:
        return self.root / DONE_FILE


class PrefixLayout:
    """``<out>/_prefix/``: content-addressed entries shared by every run under ``<out>``."""

    def __init__(self, runs_dir: str | Path):
        self.root = Path(runs_dir) / PREFIX_DIR

    def entry(self, key: str) -> PrefixEntry:
        return PrefixEntry(self.root / key)

    def lock(self, key: str) -> Path:
        return self.root / f"{key}.lock"


_RUN_FILES = re.compile(r"^(spec\.json|result\.json|DONE|\.lock|records/step-\d+\.jsonl\.gz|logs/.+|"
                        r"checkpoints/step-\d+/(state\.json|DONE|[\w.-]+\.(json|safetensors)))$")
_PREFIX_FILES = re.compile(r"^_prefix/([\w.-]+\.lock|"
                           r"[\w.-]+/(weights\.safetensors|records\.jsonl\.gz|meta\.json|DONE))$")


def is_layout_file(out_dir: str | Path, path: str | Path) -> bool:
    """True when ``path`` (under ``out_dir``, the ``--out`` of runs) is a file this layout names; anything else,
    temporary files of any name included, is not chainforget's to keep."""
    rel = Path(path).relative_to(out_dir).as_posix()
    if rel.startswith(PREFIX_DIR + "/"):
        return bool(_PREFIX_FILES.match(rel))
    _, _, inside = rel.partition("/")
    return bool(inside) and not is_temp(rel) and bool(_RUN_FILES.match(inside))
