"""Run files that survive interruptions: TREC or rank_llm-style JSONL, appended per query.

While a run is in progress, finished queries are appended to ``OUTPUT.partial``; at each
``sync`` (the run loop calls it once per batch) the data is fsynced, then each query written
since is recorded in the journal ``OUTPUT.journal`` with the byte offset where it ends, and the
journal fsynced — so the journal never points past durable data, and a query counts as done
only once both are on disk. One sync per batch, not per query: an fsync costs ~10 ms, which a
GPU reranking a query in 5 ms would otherwise wait out. Only when every query is done is
``OUTPUT.partial`` renamed to ``OUTPUT``, so a file at ``OUTPUT`` is always complete.

The journal's first line is a header describing the run (model, settings, a digest of the
inputs). A later run with the same header resumes: it cuts ``OUTPUT.partial`` back to the last
recorded offset (dropping a query half-written at a crash) and skips the recorded queries.
Because each query's lines depend only on that query, the finished file is byte-identical to
an uninterrupted run. The journal stays next to the run as a record of how it was made.

Nothing is silently wrong: a partial or finished file that was truncated or edited is refused
before it is resumed, trusted or evaluated, and two runs never write one output (``journal``
keeps that bookkeeping). :func:`run_header` says what a run's bytes depend on;
:func:`write_trec_run` writes a whole run at once (a first stage, for one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from headrank_ir import __version__
from headrank_ir.atomic import fsync_dir, write_atomic
from headrank_ir.errors import InputError
from headrank_ir.outputs import guard_file, locked
from headrank_ir.pipeline.journal import (
    JOURNAL_VERSION,
    Journal,
    OutputLock,
    append_synced,
    check_output_path,
    check_unchanged,
    hash_prefix,
    header_differences,
    json_line,
    read_journal,
)
from headrank_ir.pipeline.textfiles import iter_lines
from headrank_ir.records import Candidate, Query, Request, Result, best_first

if TYPE_CHECKING:
    from typing import Self

    from headrank_ir.engine.profile import HeadProfile

logger = logging.getLogger(__name__)

FORMATS = ("trec", "jsonl")


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
# Writing a run


class RunWriter:
    """Writes a run query by query, resumably; use as a context manager and call :meth:`finish`.

    ``header`` describes everything the output depends on; ``inputs`` (the command's input
    paths) are never written over; a journal with an equal header is
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
        inputs: Sequence[os.PathLike | str | None] = (),
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
        self._unsynced: list[bytes] = []  # journal lines of queries written since the last sync
        check_output_path(self.path, inputs)  # the one output guard: creates the folder
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
                    f"{self.path} was started with other settings ({header_differences(journal.header, self.header)}); "
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

    def _journal_of_ours(self, resume: bool) -> Journal | None:
        """The journal, when there is one; an output it does not show as ours is never touched."""
        try:
            journal = read_journal(self.journal_path)
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

    def _start(self) -> Journal:
        for stale in (self.path, self.partial):
            stale.unlink(missing_ok=True)
        self.partial.write_bytes(b"")
        first_line = json_line({"journal": JOURNAL_VERSION, "header": self.header})
        write_atomic(self.journal_path, first_line)
        return Journal(self.header, valid_bytes=len(first_line))

    def _reopen(self, journal: Journal) -> None:
        if not self.partial.exists() or self.partial.stat().st_size < journal.end:
            raise InputError(
                f"{self.partial} is missing or shorter than its journal says; pass --no-resume to start over"
            )
        self._hash = hash_prefix(self.partial, journal.end)
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
        check_unchanged(self.path, self._end, self._expected_sha256)

    def _promote(self) -> None:
        os.replace(self.partial, self.path)
        fsync_dir(self.path.parent)

    def is_done(self, qid: str) -> bool:
        return str(qid) in self.done

    def write(self, result: Result) -> None:
        """Append one finished query; durable once :meth:`sync` (or ``finish``, or ``close``) returns."""
        if self._data is None or self._journal is None:
            raise ValueError(f"{self.path} is closed or already complete")
        qid = str(result.query.qid)
        if self.is_done(qid):
            raise ValueError(f"query {qid!r} was already written to {self.path}")
        data = self._format(result).encode("utf-8")
        self._data.write(data)
        self._data.flush()  # to the OS (no wait for the disk): the partial file shows the query at once
        self._end += len(data)
        self._hash.update(data)
        self._unsynced.append(json_line({"qid": qid, "end": self._end, "sha256": self._hash.hexdigest()}))
        self.done.add(qid)

    def sync(self) -> None:
        """Make every query written so far durable: the data first, then the journal lines that
        record it (a crash between the two leaves data the journal does not count, which a
        resume cuts off)."""
        if self._data is None or self._journal is None or not self._unsynced:
            return
        self._data.flush()
        os.fsync(self._data.fileno())
        append_synced(self._journal, b"".join(self._unsynced))
        self._unsynced.clear()

    def finish(self) -> Path:
        """Mark the run complete, move it into place and release the output; returns its path."""
        if not self.complete:
            if self._journal is None:
                raise ValueError(f"{self.path} is closed")
            self.sync()
            self._expected_sha256 = self._hash.hexdigest()
            append_synced(
                self._journal,
                json_line(
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
        """Make what was written durable (an interrupted run keeps its finished queries), close
        the files and release the output to other runs."""
        try:
            self.sync()
        except OSError as error:  # e.g. the disk filled up: the unsynced queries are redone on resume
            logger.warning("could not sync %s before closing it: %s", self.partial, error)
        self._close_files()
        if hasattr(self, "_lock"):
            self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Whole runs and what they depend on


def write_trec_run(
    path: os.PathLike | str,
    results: Sequence[Request | Result],
    tag: str,
    what: str = "--output",
    inputs: Sequence[os.PathLike | str | None] = (),
) -> Path:
    """Write ``results`` (first-stage requests or reranked results) as a TREC run, atomically,
    through the one output guard (never over an input, a device or a folder) and its lock."""
    text = "".join(format_trec(r, tag) for r in results)
    with locked(guard_file(path, what, inputs), what):
        return write_atomic(path, text)


def inputs_digest(requests: Sequence[Request]) -> str:
    """SHA-256 of every query and candidate, in order: a resumed run must see the same inputs."""
    digest = hashlib.sha256()
    for r in requests:
        record = [
            r.query.qid,
            r.query.text,
            [[c.docid, c.score, c.doc] for c in r.candidates],
        ]
        digest.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SAMPLES, _BLOCK = 16, 1 << 12


def file_digest(path: Path) -> str:
    """A cheap digest of a weights file: size, mtime and the SHA-256 of its head (a safetensors
    header names every tensor), its tail and 16 blocks spread between. Reads ~200 KB whatever the
    size; a changed, retrained or replaced file changes it (a copy with a new mtime does too)."""
    info = path.stat()
    digest = hashlib.sha256(f"{path.name} {info.st_size} {info.st_mtime_ns}".encode())
    with path.open("rb") as handle:
        offsets = {0, max(0, info.st_size - 16 * _BLOCK)}
        offsets |= {info.st_size * k // _SAMPLES for k in range(1, _SAMPLES)}
        for offset in sorted(offsets):
            handle.seek(offset)
            digest.update(handle.read(16 * _BLOCK if offset in (0, max(0, info.st_size - 16 * _BLOCK)) else _BLOCK))
    return digest.hexdigest()


def _model_folder(model: str) -> Path | None:
    """The local folder holding ``model``'s weights (a short name's conversion, a folder, or a
    Hugging Face id's cached snapshot); None when there is none yet (the hub id is downloaded later)."""
    from headrank_ir.engine.models import resolve_model_folder

    folder = Path(resolve_model_folder(model))
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(model), "config.json")
    except Exception:  # noqa: BLE001 (an id the cache cannot say anything about: no digest)
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def weights_digest(model: str, profile: HeadProfile | None) -> str | None:
    """What identifies the weights a run reads, not their path: :func:`file_digest` of every weights
    file of the model's folder and of the profile's adapter. A resume after the weights changed
    is then refused instead of mixing queries ranked by old and new weights."""
    folder = _model_folder(model)
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()) if folder else []
    if profile is not None and profile.adapter:
        files.append(Path(profile.adapter))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{file_digest(path)}\n".encode())
    return digest.hexdigest()


def run_header(
    model: str, profile: HeadProfile | None, depth: int, requests: Sequence[Request], dtype: str = "float32"
) -> dict[str, Any]:
    """Everything the run's bytes depend on (batch size and device do not, beyond float noise),
    for resuming safely: the weights by their digest (:func:`weights_digest`), not their path; a
    dtype other than float32 changes scores, so it is named."""
    return {
        "headrank_ir": __version__,
        "model": model,
        "weights": weights_digest(model, profile),
        "profile": profile.to_json() if profile else None,
        "depth": depth,
        "queries": len(requests),
        "inputs_sha256": inputs_digest(requests),
        **({"dtype": dtype} if dtype != "float32" else {}),
    }
