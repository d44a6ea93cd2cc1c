"""Reading task data: the shipped files inside the package and users' JSONL / CSV / Parquet / ``datasets`` folders.

Every reader returns ``(location, row)`` pairs, where ``location`` is ``"line N"`` (text files) or ``"row N"``
(Parquet, ``datasets``), so a malformed row can be reported as ``<file>: line 7: ...`` with the fix.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

from chainforget.errors import DataError

DATA_ROOT = Path(__file__).resolve().parent.parent / "data"

Row = tuple[str, dict[str, Any]]


def data_path(*parts: str) -> Path:
    """A file or folder shipped in ``chainforget/data`` (works from an installed wheel, no ``../shared`` needed)."""
    path = DATA_ROOT.joinpath(*parts)
    if not path.exists():
        raise DataError(f"shipped data file {path} is missing; reinstall chainforget (pip install --force-reinstall "
                        f"chainforget) or restore chainforget/data from the source tree")
    return path


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a (possibly gzipped) text file; a truncated or corrupt gzip stream is a DataError."""
    n = 0
    try:
        with _open_text(path) as fh:
            for n, line in enumerate(fh, start=1):
                yield n, line
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"{path}: file not found; check the data path") from None
        raise DataError(f"{path}: line {n + 1}: the compressed file is truncated or corrupt ({exc}); "
                        f"re-create it (e.g. gzip the original file again)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: line {n + 1}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None


def read_jsonl(path: Path) -> list[Row]:
    """One JSON object per line; blank lines are skipped."""
    rows = []
    for n, line in text_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {n}: not valid JSON ({exc.msg} at column {exc.colno}); "
                            f"fix or remove that line (JSONL needs one JSON object per line)") from None
        except RecursionError:
            raise DataError(f"{path}: line {n}: JSON nested too deeply; a row is one flat object of "
                            f"columns") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {n}: expected a JSON object, got {type(obj).__name__}; "
                            f"write one {{\"column\": value, ...}} object per line")
        rows.append((f"line {n}", obj))
    return rows


def read_csv(path: Path) -> list[Row]:
    """CSV with a header row; ``location`` is the line on which the record starts."""
    rows = []
    numbered = text_lines(path)

    def feed() -> Iterator[str]:
        for _, line in numbered:
            yield line

    reader = csv.DictReader(feed())
    start = 2
    try:
        for record in reader:
            if None in record:
                raise DataError(f"{path}: line {start}: more fields than header columns; quote fields that "
                                f"contain commas")
            rows.append((f"line {start}", dict(record)))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({exc}); check the quoting") from None
    if reader.fieldnames is None:
        raise DataError(f"{path}: empty CSV file; add a header row and data rows")
    return rows


def read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow; pip install pyarrow") from None
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: cannot read Parquet file ({type(exc).__name__}: {exc}); re-create it") from None
    return [(f"row {i}", row) for i, row in enumerate(table.to_pylist())]


def read_datasets_dir(path: Path, split: str | None = None) -> list[Row]:
    """A folder written by ``datasets.Dataset.save_to_disk`` (or a ``DatasetDict``: give ``split``)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path}: reading a datasets folder needs the `datasets` package; pip install datasets") \
            from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a folder written by datasets' save_to_disk ({exc}); point data at a "
                        f"JSONL/CSV/Parquet file or a save_to_disk folder") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None or split not in ds:
            raise DataError(f"{path}: holds splits {sorted(ds)}; name one, e.g. data: {{path: {path.name}, "
                            f"split: {sorted(ds)[0]}}}")
        ds = ds[split]
    return [(f"row {i}", dict(row)) for i, row in enumerate(ds)]


def read_rows(path: Path, split: str | None = None) -> list[Row]:
    """Dispatch on the file name: .jsonl[.gz], .csv[.gz], .parquet, or a ``datasets`` folder."""
    name = path.name.lower()
    if not path.exists():
        raise DataError(f"{path}: file not found; check the `data` path (relative paths resolve against the task "
                        f"file)")
    if path.is_dir():
        return read_datasets_dir(path, split)
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return read_jsonl(path)
    if name.endswith((".csv", ".csv.gz")):
        return read_csv(path)
    if name.endswith(".parquet"):
        return read_parquet(path)
    raise DataError(f"{path}: unsupported data format; use .jsonl, .jsonl.gz, .csv, .csv.gz, .parquet or a "
                    f"datasets save_to_disk folder")


def files_digest(paths: Iterable[Path], extra: str = "") -> str:
    """sha256 over the bytes of every file (folders: every file inside, sorted), plus ``extra``."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        path = Path(path)
        members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for member in members:
            h.update(member.name.encode() + b"\0")
            with open(member, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()
