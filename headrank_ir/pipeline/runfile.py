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
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from headrank_ir.pipeline.errors import InputError
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


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
    complete: bool = False
    valid_bytes: int = 0


def _read_journal(path: Path) -> _Journal | None:
    """The journal's committed state; a torn last line (a crash while writing it) is not committed."""
    if not path.exists():
        return None
    data = path.read_bytes()
    journal: _Journal | None = None
    offset = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise InputError("run journal is corrupt; pass --no-resume to start over", path) from None
        if journal is None:
            if entry.get("journal") != JOURNAL_VERSION:
                raise InputError(
                    f"not a {JOURNAL_VERSION} run journal; pass --no-resume to start over",
                    path,
                )
            journal = _Journal(entry["header"])
        elif entry.get("complete"):
            journal.complete = True
        else:
            journal.done.append(entry["qid"])
            journal.end = entry["end"]
        offset += len(line)
        journal.valid_bytes = offset
    return journal


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys)


class RunWriter:
    """Writes a run query by query, resumably; use as a context manager and call :meth:`finish`.

    ``header`` describes everything the output depends on; a journal with an equal header is
    resumed when ``resume`` is true, while ``resume=False`` discards any earlier output.
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        journal = _read_journal(self.journal_path) if resume else None
        if journal is None:
            self._check_no_foreign_output(resume)
            journal = self._start()
        elif journal.header != self.header:
            raise InputError(
                f"{self.path} was started with other settings ({_differences(journal.header, self.header)}); "
                "rerun with the same settings to resume, or pass --no-resume to start over"
            )
        self.done: set[str] = set(journal.done)
        self.complete = journal.complete
        self._end = journal.end
        self._data: IO[bytes] | None = None
        self._journal: IO[bytes] | None = None
        if self.complete:
            self._settle_complete()
        else:
            self._reopen(journal)

    def _check_no_foreign_output(self, resume: bool) -> None:
        if resume and self.path.exists():
            raise InputError(
                f"{self.path} exists and has no journal {self.journal_path.name}, so it was not written by this "
                "command or was finished long ago; pass --no-resume to overwrite it"
            )

    def _start(self) -> _Journal:
        for stale in (self.path, self.partial):
            stale.unlink(missing_ok=True)
        self.partial.write_bytes(b"")
        first_line = _json_line({"journal": JOURNAL_VERSION, "header": self.header})
        temporary = self.journal_path.with_name(self.journal_path.name + ".tmp")
        with temporary.open("wb") as handle:
            _append_synced(handle, first_line)
        os.replace(temporary, self.journal_path)
        _fsync_dir(self.path.parent)
        return _Journal(self.header, valid_bytes=len(first_line))

    def _reopen(self, journal: _Journal) -> None:
        if not self.partial.exists() or self.partial.stat().st_size < journal.end:
            raise InputError(
                f"{self.partial} is missing or shorter than its journal says; pass --no-resume to start over"
            )
        if journal.done:
            logger.info("resuming %s after %d finished queries", self.path, len(journal.done))
        # Cut back to what the journal committed: drops a query half-written at a crash.
        os.truncate(self.partial, journal.end)
        os.truncate(self.journal_path, journal.valid_bytes)
        self._data = self.partial.open("ab")
        self._journal = self.journal_path.open("ab")

    def _settle_complete(self) -> None:
        """A complete journal whose rename did not happen yet (a crash in :meth:`finish`) is finished now."""
        if self.partial.exists():
            os.replace(self.partial, self.path)
            _fsync_dir(self.path.parent)
        if not self.path.exists():
            raise InputError(f"{self.journal_path} says the run is complete but {self.path} is gone; pass --no-resume")

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
        _append_synced(self._journal, _json_line({"qid": qid, "end": self._end}))
        self.done.add(qid)

    def finish(self) -> Path:
        """Mark the run complete and move it into place; returns the output path."""
        if not self.complete:
            if self._journal is None:
                raise ValueError(f"{self.path} is closed")
            _append_synced(
                self._journal,
                _json_line({"complete": True, "queries": len(self.done), "bytes": self._end}),
            )
            self.complete = True
            self.close()
            self._settle_complete()
        return self.path

    def close(self) -> None:
        for handle in (self._data, self._journal):
            if handle is not None:
                handle.close()
        self._data = self._journal = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
