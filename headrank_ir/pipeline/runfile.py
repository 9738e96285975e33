"""Run files that survive interruptions: TREC or rank_llm-style JSONL, appended per query.

While a run is in progress, finished queries are appended to ``OUTPUT.partial`` and each is
then recorded in the journal ``OUTPUT.journal`` with the byte offset where it ends; both are
fsynced before the next query starts. Only when every query is done is ``OUTPUT.partial``
renamed to ``OUTPUT``, so a file at ``OUTPUT`` is always complete.

The journal's first line is a header describing the run (model, settings, a digest of the
inputs). A later run with the same header resumes: it cuts ``OUTPUT.partial`` back to the last
recorded offset (dropping a query half-written at a crash) and skips the recorded queries.
Because each query's lines depend only on that query, the finished file is byte-identical to
an uninterrupted run. The journal stays next to the run as a record of how it was made.

Nothing is silently wrong: each journal line carries the SHA-256 of the run so far and the last
one the finished file's byte count and SHA-256, so a partial or finished file that was truncated
or edited is refused before it is resumed, trusted or evaluated. An ``flock`` on
``OUTPUT.lock`` (naming its holder) keeps a second run off the same output, and an existing
output is replaced only when it is a regular file whose journal shows this command wrote it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from headrank_ir.atomic import fsync_dir, write_atomic
from headrank_ir.errors import InputError
from headrank_ir.pipeline.readers import iter_lines
from headrank_ir.records import Candidate, Query, Result, best_first

if TYPE_CHECKING:
    from typing import Self

logger = logging.getLogger(__name__)

FORMATS = ("trec", "jsonl")
JOURNAL_VERSION = "headrank_ir.journal/1"


def _no_whitespace(value: str, what: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{what} {value!r} cannot be written to a TREC run: it is empty or has whitespace")
    return value


def format_trec(result: Result, tag: str) -> str:
    """``{qid} Q0 {docid} {rank} {score:.6f} {tag}`` lines, as Pyserini writes them."""
    qid = _no_whitespace(str(result.query.qid), "query id")
    return "".join(
        f"{qid} Q0 {_no_whitespace(str(c.docid), 'docid')} {rank} {c.score:.6f} {tag}\n"
        for rank, c in enumerate(best_first(result.candidates), start=1)
    )


def format_jsonl(result: Result) -> str:
    """One line in rank_llm's ``Result`` shape: ``{"query": {...}, "candidates": [...]}``."""
    record = {
        "query": {"text": result.query.text, "qid": result.query.qid},
        "candidates": [{"docid": c.docid, "score": c.score, "doc": c.doc} for c in best_first(result.candidates)],
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


def read_results_jsonl(path: os.PathLike | str) -> list[Result]:
    """Results (or rank_llm requests) from JSONL in rank_llm's shape, validated line by line."""
    results = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            query = Query(record["query"]["text"], str(record["query"]["qid"]))
            candidates = [Candidate(str(c["docid"]), float(c["score"]), c.get("doc", {})) for c in record["candidates"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise InputError(
                f"not a rank_llm Result line ({type(error).__name__}: {error})",
                path,
                number,
            ) from None
        results.append(Result(query, candidates))
    return results


# ---------------------------------------------------------------------------------------------
# The journal


def _append_synced(handle: IO[bytes], data: bytes) -> None:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def _json_line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass
class _Journal:
    header: dict[str, Any]
    done: list[str] = field(default_factory=list)
    end: int = 0
    sha256: str | None = None  # of the run's bytes up to ``end``; absent in journals of older versions
    complete: bool = False
    valid_bytes: int = 0


def _read_journal(path: Path) -> _Journal | None:
    """The journal's committed state; a torn last line (a crash while writing it) is not committed."""
    if not path.exists():
        return None
    journal: _Journal | None = None
    offset = 0
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            entry = json.loads(line)
            if journal is None:
                if entry.get("journal") != JOURNAL_VERSION:
                    raise InputError(f"not a {JOURNAL_VERSION} run journal; pass --no-resume to start over", path)
                journal = _Journal(entry["header"])
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


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys)


def _hash_prefix(path: Path, size: int) -> hashlib._Hash:
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


def _check_unchanged(path: Path, size: int, sha256: str | None) -> None:
    """``path`` holds exactly the ``size`` bytes (of digest ``sha256``) its journal recorded."""
    found = path.stat().st_size
    if found != size:
        problem = f"it holds {found} bytes where the finished run had {size}"
    elif sha256 and _hash_prefix(path, found).hexdigest() != sha256:
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
    journal = _read_journal(path.with_name(path.name + ".journal"))
    if journal is None:
        return
    if not journal.complete:
        raise InputError(f"{path}: its journal says the run is not finished; run the same command again to finish it")
    _check_unchanged(path, journal.end, journal.sha256)


class OutputLock:
    """An exclusive ``flock`` on ``OUTPUT.lock``, held for a whole run so that two runs never
    write one output; the file names the holder (pid, host, start) for the one refused."""

    def __init__(self, output: Path):
        self.output = output
        self.path = output.with_name(output.name + ".lock")
        self._descriptor: int | None = None

    def acquire(self) -> None:
        while self._descriptor is None:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


def _kind(path: Path) -> str | None:
    """``None`` for a missing path or a regular file; otherwise what it is, for an error message."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"


def check_output_path(path: Path) -> None:
    """The output and the files beside it must be regular files or absent, in a folder (or one
    that can be made); anything else is refused before a byte is written."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--output {path} cannot be written: {parent} is a file, not a folder")
            break
    for related in (path, *(path.with_name(path.name + suffix) for suffix in (".partial", ".journal", ".lock"))):
        kind = _kind(related)
        if kind:
            raise InputError(
                f"{related} is {kind}; runs only ever replace regular files they wrote, so choose another --output"
            )


# ---------------------------------------------------------------------------------------------
# Writing a run


class RunWriter:
    """Writes a run query by query, resumably; use as a context manager and call :meth:`finish`.

    ``header`` describes everything the output depends on; a journal with an equal header is
    resumed when ``resume`` is true, while ``resume=False`` starts over. Either way an existing
    output is only replaced when its journal shows this command wrote it, and the output is
    locked against other runs until the writer is finished or closed.
    """

    def __init__(
        self,
        path: os.PathLike | str,
        header: Mapping[str, Any],
        output_format: str = "trec",
        run_tag: str = "headrank",
        resume: bool = True,
    ):
        if output_format not in FORMATS:
            raise ValueError(f"output format {output_format!r} is not one of {', '.join(FORMATS)}")
        _no_whitespace(run_tag, "run tag")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        # Round-tripped through JSON so that it compares equal to the copy read from the journal.
        self.header = json.loads(json.dumps({**header, "output_format": output_format, "run_tag": run_tag}))
        self._format: Callable[[Result], str] = (
            (lambda r: format_trec(r, run_tag)) if output_format == "trec" else format_jsonl
        )
        self._data: IO[bytes] | None = None
        self._journal: IO[bytes] | None = None
        check_output_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = OutputLock(self.path)
        self._lock.acquire()
        try:
            self._open(resume)
        except BaseException:
            self.close()
            raise

    def _open(self, resume: bool) -> None:
        journal = self._journal_of_ours(resume)
        if journal is None or not resume:
            journal = self._start()
        elif journal.header != self.header:
            if journal.done or journal.complete:
                raise InputError(
                    f"{self.path} was started with other settings ({_differences(journal.header, self.header)}); "
                    "rerun with the same settings to resume, or pass --no-resume to start over"
                )
            logger.info("%s: the earlier run wrote no query; starting over with the new settings", self.path)
            journal = self._start()
        self.done: set[str] = set(journal.done)
        self.complete = journal.complete
        self._end = journal.end
        self._expected_sha256 = journal.sha256
        if self.complete:
            self._settle_complete()
        else:
            self._reopen(journal)

    def _journal_of_ours(self, resume: bool) -> _Journal | None:
        """The journal, when there is one; an output it does not show as ours is never touched."""
        try:
            journal = _read_journal(self.journal_path)
        except InputError:
            if resume and not self.path.exists():
                raise
            journal = None  # an output beside a broken journal is refused below; without one, --no-resume starts over
        if self.path.exists() and not (journal and journal.complete):
            why = "does not show that this command wrote it" if self.journal_path.exists() else "is missing"
            raise InputError(
                f"{self.path} exists and has no journal {self.journal_path.name} that shows this command wrote it "
                f"(the journal {why}); it is left alone: remove it yourself or choose another --output"
            )
        return journal

    def _start(self) -> _Journal:
        for stale in (self.path, self.partial):
            stale.unlink(missing_ok=True)
        self.partial.write_bytes(b"")
        first_line = _json_line({"journal": JOURNAL_VERSION, "header": self.header})
        write_atomic(self.journal_path, first_line)
        return _Journal(self.header, valid_bytes=len(first_line))

    def _reopen(self, journal: _Journal) -> None:
        if not self.partial.exists() or self.partial.stat().st_size < journal.end:
            raise InputError(
                f"{self.partial} is missing or shorter than its journal says; pass --no-resume to start over"
            )
        self._hash = _hash_prefix(self.partial, journal.end)
        if journal.sha256 is not None and self._hash.hexdigest() != journal.sha256:
            raise InputError(
                f"{self.partial} was changed since its journal recorded it (SHA-256 differs); "
                "pass --no-resume to start over"
            )
        if journal.done:
            logger.info("resuming %s after %d finished queries", self.path, len(journal.done))
        # Cut back to what the journal committed: drops a query half-written at a crash.
        os.truncate(self.partial, journal.end)
        os.truncate(self.journal_path, journal.valid_bytes)
        self._data = self.partial.open("ab")
        self._journal = self.journal_path.open("ab")

    def _settle_complete(self) -> None:
        """A complete journal whose rename did not happen yet (a crash in :meth:`finish`) is
        finished now; then the output must be byte for byte what the journal recorded."""
        if self.partial.exists():
            self._promote()
        if not self.path.exists():
            raise InputError(f"{self.journal_path} says the run is complete but {self.path} is gone; pass --no-resume")
        _check_unchanged(self.path, self._end, self._expected_sha256)

    def _promote(self) -> None:
        os.replace(self.partial, self.path)
        fsync_dir(self.path.parent)

    def is_done(self, qid: str) -> bool:
        return str(qid) in self.done

    def write(self, result: Result) -> None:
        """Append one finished query; durable once this returns."""
        if self._data is None or self._journal is None:
            raise ValueError(f"{self.path} is closed or already complete")
        qid = str(result.query.qid)
        if self.is_done(qid):
            raise ValueError(f"query {qid!r} was already written to {self.path}")
        data = self._format(result).encode("utf-8")
        _append_synced(self._data, data)
        self._end += len(data)
        self._hash.update(data)
        _append_synced(self._journal, _json_line({"qid": qid, "end": self._end, "sha256": self._hash.hexdigest()}))
        self.done.add(qid)

    def finish(self) -> Path:
        """Mark the run complete, move it into place and release the output; returns its path."""
        if not self.complete:
            if self._journal is None:
                raise ValueError(f"{self.path} is closed")
            self._expected_sha256 = self._hash.hexdigest()
            _append_synced(
                self._journal,
                _json_line(
                    {"complete": True, "queries": len(self.done), "bytes": self._end, "sha256": self._expected_sha256}
                ),
            )
            self.complete = True
            self._close_files()
            self._promote()  # the bytes were just hashed as written: no need to read them back
        self.close()
        return self.path

    def _close_files(self) -> None:
        for handle in (self._data, self._journal):
            if handle is not None:
                handle.close()
        self._data = self._journal = None

    def close(self) -> None:
        """Close the files and release the output to other runs."""
        self._close_files()
        if hasattr(self, "_lock"):
            self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
