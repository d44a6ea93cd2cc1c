"""Crash-safe file writes and strict readers for the files a run leaves on disk: the package's one atomic writer.

Every file (results, records, markers, weights, plugin states) is written to a temporary file in the same directory,
flushed and fsynced, then moved over the
target with ``os.replace`` (atomic on POSIX and Windows) and the directory is fsynced. A crash, SIGKILL or full disk
at any moment leaves either the old file or the new one, never a half-written one; on an error the temporary file is
removed and the old file stays intact. Readers turn truncated or malformed files into one-line ``DataError``s that
name the file and line, because a corrupt file must never be mistaken for a result.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import math
import os
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from chainforget.errors import DataError
from chainforget.store.layout import TEMP_PATTERN, is_temp
from chainforget.testing import faults

_HINTS = {
    errno.ENOSPC: "no space left on device; free space and rerun",
    errno.EDQUOT: "disk quota exceeded; free space and rerun",
    errno.EACCES: "permission denied; fix the permissions or choose another --out",
    errno.EPERM: "operation not permitted; fix the permissions or choose another --out",
    errno.EROFS: "read-only file system; choose another --out",
}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


def write_error(path: str | os.PathLike, exc: OSError) -> DataError:
    """The one-line error for a failed write of ``path``."""
    hint = _HINTS.get(exc.errno) or f"{exc.strerror or exc}; check the path and rerun"
    return DataError(f"could not write {path}: {hint}")


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError that reached the CLI: the file, what went wrong and the fix."""
    hint = _HINTS.get(exc.errno) or f"{exc.strerror or exc}; check the path and rerun"
    return " ".join(f"{exc.filename + ': ' if exc.filename else ''}{hint}".split())


def _fsync_dir(directory: Path) -> None:
    """Persist a rename; best effort where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # EINVAL on some file systems that do not support it
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` atomically when the block exits without error.

    On any exception the temporary file is removed and ``path`` is untouched; an ``OSError`` becomes a one-line
    ``DataError`` (ENOSPC: "no space left on device; free space and rerun"), anything else propagates unchanged.
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            faults.point("write", f"{path.parent.name}/{path.name}")  # tests kill or fill the disk here
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Delete the ``.<name>.*.tmp`` files that writers killed mid-write left under ``directory``; return how many.

    Every file chainforget writes goes through ``atomic_open`` (weights and plugin states too: they are serialized
    to bytes first), so this is every temporary name a killed writer can leave. Call it only while holding the lock
    that guards ``directory``: another live writer's temp file looks the same.
    """
    removed = 0
    for tmp in Path(directory).rglob(TEMP_PATTERN):
        if is_temp(tmp) and tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_open``)."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _finite(obj: Any) -> Any:
    """NaN and +-Inf become null so the file is strict JSON that any tool (jq, JavaScript) can read."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """Strict, deterministic JSON (non-finite floats as null, keys in insertion order)."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as strict JSON (NaN/Inf stored as null) atomically."""
    atomic_write_text(path, dumps_json(obj, indent) + "\n")


def write_jsonl_gz(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write one JSON object per line, gzip-compressed, atomically.

    The gzip header carries no timestamp or file name, so the same rows always give the same bytes (a rerun after a
    kill produces identical files).
    """
    with atomic_open(path) as handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as gz:
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            for row in rows:
                text.write(dumps_json(row, indent=None))
                text.write("\n")
            text.flush()
            text.detach()


FIX = "delete the directory that holds it and rerun the command that wrote it"


MAX_JSON_BYTES = 64 << 20  # a result.json, meta or state file: far above any real one (a quick run's: 40 KB)
MAX_LINE_BYTES = 1 << 20  # one record line (a real one: about 1 KB)
MAX_INFLATED_BYTES = 256 << 20  # one records file once inflated (a full BBQ evaluation: about 50 MB)


def _no_constant(name: str) -> Any:
    """json's hook for NaN/Infinity: chainforget writes non-finite numbers as null, so these tokens are edits."""
    raise ValueError(f"non-finite number {name} (chainforget stores those as null)")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN and Infinity: what a reader hands on stays strict JSON."""
    return json.loads(text, parse_constant=_no_constant)


def _size_error(path: Path, what: str, size: int, limit: int, fix: str) -> DataError:
    return DataError(f"{path}: the {what} is {size / (1 << 20):.1f} MiB, more than the {limit >> 20} MiB this "
                     f"chainforget reads; it is not one chainforget wrote: {fix}")


def read_json(path: str | os.PathLike, what: str = "file", fix: str = FIX, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Load a JSON file of at most ``max_bytes``; a missing, oversized or malformed file (NaN and Infinity
    included) is a one-line ``DataError`` ending in ``fix``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _size_error(path, what, size, max_bytes, fix)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; the {what} is corrupt: {fix}") from None
    except OSError as exc:
        raise DataError(f"could not read {path}: {exc.strerror or exc}") from None
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno}: bad JSON ({exc.msg}); the {what} is corrupt: {fix}") from None
    except ValueError as exc:
        raise DataError(f"{path}: {exc}; the {what} is corrupt: {fix}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply; the {what} is corrupt: {fix}") from None


def _check_inflated(path: Path, fix: str, max_bytes: int) -> None:
    """Inflate once without keeping anything: a gzip bomb is refused after ``max_bytes``, in bounded memory, before
    a single line is parsed; a truncated stream names the first line it could not read."""
    total = lines = 0
    try:
        with gzip.open(path, "rb") as gz:
            while chunk := gz.read1(1 << 20):
                total += len(chunk)
                lines += chunk.count(b"\n")
                if total > max_bytes:
                    raise DataError(f"{path}: inflates to more than {max_bytes >> 20} MiB of records, more than "
                                    f"this chainforget reads from one file; it is not one chainforget wrote: {fix}")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} line {lines + 1}: truncated or corrupt gzip ({exc}); {fix}") from None
    except OSError as exc:
        raise DataError(f"could not read {path}: {exc.strerror or exc}") from None


def iter_jsonl_gz(path: str | os.PathLike, fix: str = FIX, *, max_line: int = MAX_LINE_BYTES,
                  max_bytes: int = MAX_INFLATED_BYTES) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each line of a gzip JSON-lines file, streamed line by line.

    Bounded: a line longer than ``max_line`` bytes or a file inflating to more than ``max_bytes`` is a one-line
    ``DataError`` (checked before parsing, so memory stays at one line). A truncated or corrupt stream, a line that
    is not a JSON object, or NaN/Infinity in a line raises a ``DataError`` naming the file and the 1-based line.
    """
    path = Path(path)
    _check_inflated(path, fix, max_bytes)
    try:
        with gzip.open(path, "rb") as gz:
            lineno = 0
            while raw := gz.readline(max_line + 2):
                lineno += 1
                if len(raw.rstrip(b"\r\n")) > max_line:
                    raise DataError(f"{path} line {lineno}: longer than {max_line >> 10} KiB, more than any record "
                                    f"chainforget writes; the file is corrupt: {fix}")
                if not raw.strip():
                    continue
                try:
                    row = loads_strict(raw)
                except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                    msg = getattr(exc, "msg", None) or (
                        "nested too deeply" if isinstance(exc, RecursionError) else "not UTF-8")
                    raise DataError(f"{path} line {lineno}: bad JSON ({msg}); the file is corrupt: {fix}") from None
                except ValueError as exc:
                    raise DataError(f"{path} line {lineno}: {exc}; the file is corrupt: {fix}") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path} line {lineno}: expected a JSON object, got {type(row).__name__}; "
                                    f"the file is corrupt: {fix}")
                yield lineno, row
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # changed between the two passes
        raise DataError(f"{path}: truncated or corrupt gzip ({exc}); {fix}") from None
    except OSError as exc:
        raise DataError(f"could not read {path}: {exc.strerror or exc}") from None


def read_jsonl_gz(path: str | os.PathLike, fix: str = FIX) -> list[dict]:
    """Every object of a gzip JSON-lines file (``iter_jsonl_gz``: bounded, one-line errors naming file and line)."""
    return [row for _, row in iter_jsonl_gz(path, fix)]
