"""Atomic file writes: a run killed mid-write never leaves a half-written file in place.

Every file the kit writes that another step reads back (checkpoints, tables, run records,
cached features, executed notebooks) goes through :func:`atomic_write`: the data is written to a
temporary file in the same folder, then moved over the target with ``os.replace`` (atomic on
POSIX and Windows when both lie on one file system). If writing fails, the temporary file is
removed and the previous target, if any, is left untouched.

    >>> from emclip.fileio import atomic_write_text
    >>> path = atomic_write_text("/tmp/emclip-doctest.txt", "hello")   # doctest: +SKIP

Temporary names carry the process id (``.<name>.<pid>.tmp<suffix>``), so parallel workers
writing the same target never share a temporary file; the suffix is kept because some writers
(``numpy.savez_compressed``) add one when it is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_path",
    "temporary_path",
]


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary file :func:`atomic_write` writes before the move (same folder as ``path``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mkdir: bool = True) -> Iterator[Path]:
    """Context manager: yields a temporary path to write; on success it replaces ``path``.

    >>> with atomic_write("out/table.csv") as tmp:      # doctest: +SKIP
    ...     frame.to_csv(tmp, index=False)

    Args:
        path: the target file.
        mkdir: create the target's parent folders first.

    Raises whatever the writer raised, after removing the temporary file.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, data, indent: int = 2, sort_keys: bool = True) -> Path:
    """Write ``data`` as JSON (non-JSON values through ``str``) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n")


def check_output_path(path: str | os.PathLike, kind: str = "file") -> Path:
    """Check, before any work starts, that ``path`` can be written: a file (``kind="file"``) or
    an output folder (``kind="dir"``). Returns the path (``~`` expanded); creates nothing.

    - no existing part of the path may be a file (``results.csv/out.pt`` lies under a file);
    - ``kind="file"``: the path must not be an existing folder; ``kind="dir"``: not an existing file;
    - the deepest existing folder must accept a new file. This is tested by creating and removing
      a small probe file there, since permission bits do not bind root and a read-only mount
      only shows when writing.

    Raises NotADirectoryError, IsADirectoryError or PermissionError; each message names the path
    and the fix.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    path = Path(path).expanduser()
    target = path.absolute()
    for part in [*reversed(target.parents), target]:
        if part.exists() and not part.is_dir() and (part != target or kind == "dir"):
            raise NotADirectoryError(f"Cannot write {path}: {part} is a file, not a folder. Choose an output "
                                     "location that is not inside (or the name of) an existing file.")
        if not part.exists():
            break
    if kind == "file" and target.is_dir():
        raise IsADirectoryError(f"Cannot write the file {path}: it is an existing folder. Give a file path "
                                "(for example a new name inside that folder).")
    folder = next(p for p in [target, *target.parents] if p.is_dir())
    try:
        handle, probe = tempfile.mkstemp(prefix=".emclip-write-test-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(f"Cannot write {path}: the folder {folder} does not accept new files "
                              f"({err.strerror or err}). Choose an output location you can write to.") from err
    return path
