"""The bookkeeping beside a run file that ``runfile.RunWriter`` writes: its journal, its lock,
and the checks that keep a truncated or edited run from being resumed, trusted or evaluated.

Each journal line carries the SHA-256 of the run so far and the last one the finished file's
byte count and SHA-256. An ``flock`` on ``OUTPUT.lock`` (naming its holder) keeps a second run
off the same output, and an existing output is replaced only when it is a regular file whose
journal shows this command wrote it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from headrank_ir.errors import InputError
from headrank_ir.outputs import file_mode, guard_file

JOURNAL_VERSION = "headrank_ir.journal/1"


def append_synced(handle: IO[bytes], data: bytes) -> None:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def json_line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass
class Journal:
    header: dict[str, Any]
    done: list[str] = field(default_factory=list)
    end: int = 0
    sha256: str | None = None  # of the run's bytes up to ``end``; absent in journals of older versions
    complete: bool = False
    valid_bytes: int = 0


def read_journal(path: Path) -> Journal | None:
    """The journal's committed state; a torn last line (a crash while writing it) is not committed."""
    if not path.exists():
        return None
    journal: Journal | None = None
    offset = 0
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            entry = json.loads(line)
            if journal is None:
                if entry.get("journal") != JOURNAL_VERSION:
                    raise InputError(f"not a {JOURNAL_VERSION} run journal; pass --no-resume to start over", path)
                journal = Journal(entry["header"])
            elif entry.get("complete"):
                journal.complete = True
                journal.end, journal.sha256 = entry["bytes"], entry.get("sha256")
            else:
                journal.done.append(entry["qid"])
                journal.end, journal.sha256 = entry["end"], entry.get("sha256")
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
            raise InputError("run journal is corrupt; pass --no-resume to start over", path) from None
        offset += len(line)
        journal.valid_bytes = offset
    return journal


def header_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys)


def hash_prefix(path: Path, size: int) -> hashlib._Hash:
    """SHA-256 of the first ``size`` bytes of ``path``, as an object that can keep hashing."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while size > 0:
            chunk = handle.read(min(size, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            size -= len(chunk)
    return digest


# ---------------------------------------------------------------------------------------------
# The output's lock and the files a run may touch


def check_unchanged(path: Path, size: int, sha256: str | None) -> None:
    """``path`` holds exactly the ``size`` bytes (of digest ``sha256``) its journal recorded."""
    found = path.stat().st_size
    if found != size:
        problem = f"it holds {found} bytes where the finished run had {size}"
    elif sha256 and hash_prefix(path, found).hexdigest() != sha256:
        problem = "its SHA-256 differs from the finished run's"
    else:
        return
    raise InputError(
        f"{path} was changed after the run finished ({problem}); it cannot be trusted: rerun the command "
        "with --no-resume to rewrite it"
    )


def check_finished_run(path: os.PathLike | str) -> None:
    """A run file this package wrote (it has a journal beside it) must be finished and unchanged
    before anything reads it; a file without a journal is someone else's and is taken as it is."""
    path = Path(path)
    journal = read_journal(path.with_name(path.name + ".journal"))
    if journal is None:
        return
    if not journal.complete:
        raise InputError(f"{path}: its journal says the run is not finished; run the same command again to finish it")
    check_unchanged(path, journal.end, journal.sha256)


class OutputLock:
    """An exclusive ``flock`` on ``OUTPUT.lock``, held for a whole run so that two runs never
    write one output; the file names the holder (pid, host, start) for the one refused."""

    def __init__(self, output: Path):
        self.output = output
        self.path = output.with_name(output.name + ".lock")
        self._descriptor: int | None = None

    def acquire(self) -> None:
        while self._descriptor is None:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(descriptor, 4096).decode("utf-8", "replace").strip() or "another process"
                os.close(descriptor)
                raise InputError(
                    f"{self.output} is being written by another run ({holder}); wait for it to finish "
                    "or choose another --output"
                ) from None
            # The holder before us may have removed the file after we opened it: lock the live one.
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(descriptor).st_ino:
                self._descriptor = descriptor
            else:
                os.close(descriptor)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.ftruncate(self._descriptor, 0)
        os.write(self._descriptor, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode())

    def release(self) -> None:
        if self._descriptor is not None:
            self.path.unlink(missing_ok=True)  # while still held: nobody can be waiting on this inode
            os.close(self._descriptor)
            self._descriptor = None


def check_output_path(path: Path, inputs: Iterable[os.PathLike | str | None] = ()) -> None:
    """The output and the files beside it go through the one output guard (``outputs.guard_file``):
    regular files or absent, never an input of the command, in a folder (made here)."""
    guard_file(path, "--output", inputs, beside=(".partial", ".journal", ".lock"))
