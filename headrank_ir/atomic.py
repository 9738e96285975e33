"""Files that appear whole or not at all: written to a temporary file beside the target, fsynced,
then renamed over it, and the folder fsynced so that the rename itself survives a crash."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from headrank_ir.outputs import file_mode


def fsync_dir(folder: os.PathLike | str) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic_with(path: os.PathLike | str, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it into place.

    An interruption at any point leaves either the previous file or none, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as out:
        try:
            os.fchmod(out.fileno(), file_mode())  # as open() would make it, not mkstemp's 0600
            write(out)
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            out.close()
            os.unlink(out.name)
            raise
    os.replace(out.name, path)
    fsync_dir(path.parent)
    return path


def write_atomic(path: os.PathLike | str, data: bytes | str) -> Path:
    """``data`` (text is written as UTF-8) as the whole content of ``path``, atomically."""
    content = data.encode("utf-8") if isinstance(data, str) else data
    return write_atomic_with(path, lambda handle: handle.write(content))
