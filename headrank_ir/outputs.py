"""The one guard every path a command writes goes through: a run, a first-stage run, a journal,
an index, a profile folder, a bench folder, plots.

:func:`guard_file` and :func:`guard_folder` refuse, before a byte is written, a target that is
an input of the same command (the same file, or a folder holding one), that is not a regular
file (a device, a pipe, a symbolic link: writing would replace it), or (a folder) that holds
files this package did not put there; they create the parent folders. :func:`locked` keeps a
second process off the same target while one writes it. Files are written with the permissions
the umask gives (:func:`file_mode`), as ``open`` would, never ``mkstemp``'s 0600.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from headrank_ir.errors import InputError

# Written into every output folder this package creates: only such a folder (or an empty one, or
# one already holding what the command writes) is ever written into.
OUTPUT_MARKER = ".headrank-output"


def file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _kind(path: Path) -> str | None:
    """None for a missing path; else what it is: "file", "folder", or words for anything else."""
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent, or under a file (make_parents says so)
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return "a device, pipe or socket"


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _input_paths(inputs: Iterable[os.PathLike | str | None]) -> list[Path]:
    """The inputs that are paths on this machine (a Pyserini name or None is no file)."""
    paths = []
    for value in inputs:
        if value is None or str(value) == "":
            continue
        path = Path(value)
        if path.exists():
            paths.append(path)
    return paths


def _named(path: os.PathLike | str | None, what: str) -> Path:
    if path is None or not str(path).strip():
        raise InputError(f"{what} {str(path or '')!r} names no file: give a path")
    return Path(path)


def make_parents(path: Path, what: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {path} cannot be written: {parent} is a file, not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{what} {path} cannot be written: its folder cannot be made ({error.strerror})") from None


def guard_file(
    path: os.PathLike | str | None,
    what: str = "--output",
    inputs: Iterable[os.PathLike | str | None] = (),
    beside: Iterable[str] = (),
) -> Path:
    """``path``, checked as a file about to be written (or replaced) by a command whose inputs are
    ``inputs``; ``beside`` names suffixes of files written next to it (``.journal``), checked alike.
    Its folder is created."""
    path = _named(path, what)
    for source in _input_paths(inputs):
        inside = source.is_dir() and path.exists() and path.resolve().is_relative_to(source.resolve())
        if _same(path, source) or inside:  # a file of an input folder (a model's, an index's) too
            raise InputError(f"{what} {path} is an input of this command ({source}); writing it would destroy it")
    for target in (path, *(path.with_name(path.name + suffix) for suffix in beside)):
        kind = _kind(target)
        if kind is not None and kind != "file":
            raise InputError(
                f"{what}: {target} is {kind if kind != 'folder' else 'a folder'}; this package only ever writes "
                f"regular files, so choose another {what}"
            )
        if kind == "file" and target != path:
            for source in _input_paths(inputs):
                if _same(target, source):
                    raise InputError(f"{what}: {target} is an input of this command; choose another {what}")
    make_parents(path, what)
    return path


def guard_folder(
    path: os.PathLike | str | None,
    what: str = "--output",
    inputs: Iterable[os.PathLike | str | None] = (),
    ours: Iterable[str] = (),
) -> Path:
    """``path``, checked as a folder a command writes into: absent (then made, with the marker),
    empty, or showing that this package made it (the marker, or any of the files ``ours``); never
    a file, a link or an input of the command. Returns the folder, created."""
    path = _named(path, what)
    for source in _input_paths(inputs):
        if _same(path, source):
            raise InputError(f"{what} {path} is an input of this command; choose another folder")
    kind = _kind(path)
    if kind is None:
        make_parents(path, what)
        try:
            path.mkdir()
        except FileExistsError:
            pass  # made meanwhile by another process: checked below like any existing folder
        else:
            (path / OUTPUT_MARKER).write_text("made by headrank_ir\n")
            return path
        kind = _kind(path)
    if kind != "folder":
        what_it_is = "a file" if kind == "file" else kind
        raise InputError(f"{what} {path} is {what_it_is}, not a folder; choose a folder (it is created)")
    names = {p.name for p in path.iterdir()}
    if names and OUTPUT_MARKER not in names and not names & set(ours):
        raise InputError(
            f"{what} {path} is a folder this package did not create (it holds {sorted(names)[0]!r} and no "
            f"{OUTPUT_MARKER}); choose a new or empty folder"
        )
    if not names:
        (path / OUTPUT_MARKER).write_text("made by headrank_ir\n")
    return path


@contextmanager
def locked(path: os.PathLike | str, what: str = "--output") -> Iterator[Path]:
    """An exclusive ``flock`` on ``.NAME.lock`` beside ``path`` while the block writes it: a second
    process writing the same target fails at once, naming it."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    descriptor = None
    while descriptor is None:
        candidate = os.open(lock, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(candidate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(candidate)
            raise InputError(
                f"{what} {path} is being written by another process (lock {lock}); wait for it or choose another {what}"
            ) from None
        if lock.exists() and os.stat(lock).st_ino == os.fstat(candidate).st_ino:
            descriptor = candidate
        else:
            os.close(candidate)
    try:
        yield path
    finally:
        lock.unlink(missing_ok=True)
        os.close(descriptor)
