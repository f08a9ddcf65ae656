"""Atomic file writes: a reader (or a crash, or a Ctrl-C) never sees half a file.

Every writer here writes a temporary file in the destination's own folder (same file system,
so the final ``os.replace`` is an atomic rename), flushes it to disk, and only then replaces
the destination. If anything fails or is interrupted before that, including a
``KeyboardInterrupt``, the temporary file is removed and the previous file is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"  # temporary names look like ".model.tmp-3f2a9c.keras"


def temp_path_for(path: str | os.PathLike) -> Path:
    """A fresh temporary path next to ``path`` that keeps its suffix (Keras picks the format
    from it: ``.keras`` or ``.h5``), hidden so a directory listing shows only finished files."""
    path = Path(path)
    return path.with_name(f".{path.stem}{TMP_MARK}{secrets.token_hex(4)}{path.suffix}")


def _fsync(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # some file systems do not let a folder be opened; the rename still holds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for a library that writes by file name (``model.save(tmp)``);
    on a clean exit it replaces ``path``, on any exception it is deleted.

        with atomic_path(out / "model.keras") as tmp:
            model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def leftover_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Temporary files an aborted writer could not remove (a ``kill -9``): safe to delete."""
    return sorted(p for p in Path(folder).glob(f".*{TMP_MARK}*") if p.is_file())
