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
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "temporary_path"]


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
