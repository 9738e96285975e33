"""Reading what a reranking run starts from: topics, qrels, first-stage runs and corpora, as files.

Every reader validates as it goes and raises :class:`InputError` whose message names the file
and line, so that the command line can report bad input in one line. Names of Pyserini's
topics and qrels (``dl19`` …) are resolved in :mod:`headrank_ir.pipeline.names`.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from headrank_ir.engine.checks import check_text as _check_text
from headrank_ir.errors import InputError

# ---------------------------------------------------------------------------------------------
# Lines of text files, decoded strictly so that bad bytes are reported with their line.


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"file not found: {path}" if not path.exists() else f"not a file: {path}")


_GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip: the name and the content must agree, so
    that plain text named ``.gz`` (or a ``.gz`` file renamed) is reported as such, by name."""
    _require_file(path)
    with path.open("rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    if path.name.lower().endswith(".gz") != gzipped:
        raise InputError(
            "is named .gz but is not gzip-compressed; rename it without .gz or compress it (gzip)"
            if not gzipped
            else "is gzip-compressed but not named .gz; add .gz to its name or decompress it (gzip -d)",
            path,
        )
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes; a truncated or corrupt ``.gz`` is an error naming the file."""
    with _open_binary(path) as handle:
        try:
            yield from handle
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise InputError(
                f"the gzip data is truncated or corrupt ({error}); re-download or re-compress it", path
            ) from None


def iter_lines(path: os.PathLike | str) -> Iterator[tuple[int, str]]:
    """``(line number, text without the newline)`` for each line; non-UTF-8 bytes are an error.

    A UTF-8 byte-order mark (what some Windows editors put first) is dropped at the start of
    *every* line, as trec_eval drops it at the start of the file: ``cat a b`` of two such files
    puts the second one's mark at the start of a line in the middle. A mark anywhere else is
    refused by the readers of id-and-number formats (:func:`_no_mark_inside`) and named in a
    JSON line that does not parse; inside a JSON string it is text.
    """
    path = Path(path)
    for number, raw in enumerate(_raw_lines(path), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"bytes that are not UTF-8 at column {error.start + 1} ({raw[error.start : error.end]!r})",
                path,
                number,
            ) from None
        yield number, text.rstrip("\r\n").removeprefix(BOM)


_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def split_fields(line: str) -> list[str]:
    """The whitespace-separated fields of a run or qrels line, split where trec_eval splits
    (ASCII whitespace only: Python's ``str.split()`` would also split at a no-break space)."""
    return [field for field in _ASCII_SPACE.split(line) if field]


def _no_mark_inside(line: str, path: Path, number: int) -> None:
    """In a text format whose fields are ids and numbers, a byte-order mark left inside a line
    (two files joined without a newline between them) is an error naming its column, never part
    of an id or a number. (Inside a JSON string it is text, and kept.)"""
    if BOM in line:
        raise InputError(
            f"a byte-order mark (U+FEFF) at column {line.index(BOM) + 1}, inside the line: were two files "
            "joined without a newline between them? Remove it",
            path,
            number,
        )


def check_text(value: str, what: str, path: os.PathLike | str | None = None, number: int | None = None) -> str:
    """``value``, unless it holds a lone surrogate (:func:`headrank_ir.engine.checks.check_text`),
    reported with the file and line."""
    try:
        return _check_text(value, what)
    except ValueError as error:
        raise InputError(str(error), path, number) from None


def json_line(path: Path, number: int, line: str) -> dict:
    """One line of a JSON Lines file as an object; a whole JSON document (one array, or an object
    spread over lines) is reported as what it is, with the one-liner that converts it."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        stripped = line.strip()
        if number == 1 and stripped.startswith("["):
            raise InputError(_NOT_JSONL.format(what="one JSON array"), path, number) from None
        if number == 1 and stripped == "{":
            raise InputError(_NOT_JSONL.format(what="one JSON object over many lines"), path, number) from None
        if BOM in line:
            _no_mark_inside(line, path, number)
        raise InputError(f"not valid JSON: {error.msg} at column {error.colno}", path, number) from None
    if isinstance(value, list) and number == 1:
        raise InputError(_NOT_JSONL.format(what="one JSON array"), path, number)
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {type(value).__name__}", path, number)
    return value


_NOT_JSONL = (
    "the file is {what}, not JSON Lines: give one JSON object per line (convert with: jq -c '.[]' FILE > FILE.jsonl)"
)


# ---------------------------------------------------------------------------------------------
# Numbers, read as trec_eval reads them (C's strtod/atol on plain decimal text), but strictly:
# Python's float() and int() also take '1_000', '１' (full-width digits), 'infinity' and
# surrounding whitespace, which trec_eval would read differently or not at all.

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# A relevance grade is an integer; '1.0' is read as 1 (what trec_eval's atol reads, and no value
# is lost), '1.5' is refused (atol would silently read 1).
_GRADE = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
# TREC grades are small (-2 … 4 in practice); a grade beyond this is a corrupt line, and one
# beyond 32 bits overflows pytrec_eval and zeroes every metric.
MAX_GRADE = 1000


def parse_score(text: str, what: str, path: Path | None = None, number: int | None = None) -> float:
    """A finite decimal number (``12``, ``-3.5``, ``1e-4``), else :class:`InputError`."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not math.isfinite(value):  # nan, inf, 1e999
        raise InputError(f"{what} {text!r} is not finite", path, number)
    if not _DECIMAL.fullmatch(text):
        raise InputError(f"{what} {text!r} is not a decimal number (like 12.5 or -3e-2)", path, number)
    return value


def parse_integer(text: str, what: str, path: Path | None = None, number: int | None = None) -> int:
    """A whole number in plain ASCII digits (``3``, ``-1``), else :class:`InputError`."""
    if not _INTEGER.fullmatch(text):
        raise InputError(f"{what} {text!r} must be an integer", path, number)
    return int(text)


def parse_grade(text: str, path: Path | None = None, number: int | None = None) -> int:
    if not _GRADE.fullmatch(text):
        raise InputError(f"relevance grade {text!r} is not an integer (trec_eval reads whole grades)", path, number)
    grade = int(text.partition(".")[0])
    if abs(grade) > MAX_GRADE:
        raise InputError(
            f"relevance grade {text!r} is out of range (-{MAX_GRADE} to {MAX_GRADE}); TREC grades are small integers",
            path,
            number,
        )
    return grade


def first_key(record: Mapping, keys: tuple[str, ...], what: str, path: Path, number: int) -> str:
    for key in keys:
        if key in record:
            value = record[key]
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise InputError(
                    f"{what} field {key!r} must be a string, got {type(value).__name__}",
                    path,
                    number,
                )
            return check_text(str(value), f"{what} field {key!r}", path, number)
    raise InputError(f"no {what} field (looked for {', '.join(keys)})", path, number)


# ---------------------------------------------------------------------------------------------
# Topics


@dataclass(frozen=True)
class Topics:
    """Queries in their processing order, and where they came from (for error messages)."""

    source: str
    queries: dict[str, str]


TOPIC_SUFFIXES = {".tsv", ".txt", ".jsonl", ".json", ".trec"}
_TOPIC_ID_KEYS = ("qid", "query_id", "_id", "id")
_TOPIC_TEXT_KEYS = ("query", "text", "title")


def add_topic(queries: dict[str, str], qid: str, text: str, path: Path, number: int | None) -> None:
    check_text(qid, "query id", path, number)
    check_text(text, f"query {qid!r}", path, number)
    if not qid.strip():
        raise InputError("empty query id", path, number)
    if not text.strip():
        raise InputError(f"query {qid!r} is empty", path, number)
    if qid in queries:
        raise InputError(f"query id {qid!r} appears twice", path, number)
    queries[qid] = text.strip()


def _read_tsv_topics(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        _no_mark_inside(line, path, number)
        fields = line.split("\t")
        if len(fields) != 2:
            raise InputError(
                f"expected 'qid<TAB>query text', got {len(fields)} tab-separated fields"
                + _jsonl_hint(line, "qid<TAB>query text"),
                path,
                number,
            )
        add_topic(queries, fields[0].strip(), fields[1], path, number)
    return queries


def _read_jsonl_topics(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, line in iter_lines(path):
        if line.strip():
            record = json_line(path, number, line)
            qid = first_key(record, _TOPIC_ID_KEYS, "query id", path, number)
            add_topic(
                queries,
                qid,
                first_key(record, _TOPIC_TEXT_KEYS, "query text", path, number),
                path,
                number,
            )
    return queries


def _read_json_topics(path: Path) -> dict[str, str]:
    """Pyserini's JSON topics: ``{qid: {"title": text}}`` (a bare ``{qid: text}`` is accepted too)."""
    text = "\n".join(line for _, line in iter_lines(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        hint = "; it looks like JSON Lines (one object per line): name it .jsonl" if error.msg == "Extra data" else ""
        raise InputError(f"not valid JSON: {error.msg}{hint}", path, error.lineno) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object mapping query ids to topics", path)
    queries: dict[str, str] = {}
    for qid, topic in data.items():
        query = topic.get("title") if isinstance(topic, dict) else topic
        if not isinstance(query, str):
            raise InputError(f"topic {qid!r} has no string 'title'", path)
        add_topic(queries, qid, query, path, None)
    return queries


_TREC_TOPIC = re.compile(
    r"<num>\s*(?:Number:)?\s*(?P<qid>\S+)(?P<body>.*?)(?=<num>|</top>|\Z)",
    re.DOTALL | re.IGNORECASE,
)
_TREC_TITLE = re.compile(r"<title>\s*(?:Topic:)?(?P<title>.*?)(?=<\w+>|</top>|\Z)", re.DOTALL | re.IGNORECASE)


def _read_trec_topics(path: Path) -> dict[str, str]:
    """Classic TREC topics (``<top><num> Number: 301 <title> …``); the title is the query."""
    text = "\n".join(line for _, line in iter_lines(path))
    queries: dict[str, str] = {}
    for match in _TREC_TOPIC.finditer(text):
        title = _TREC_TITLE.search(match.group("body"))
        number = text.count("\n", 0, match.start()) + 1
        if title is None:
            raise InputError(f"topic {match.group('qid')!r} has no <title>", path, number)
        add_topic(
            queries,
            match.group("qid"),
            " ".join(title.group("title").split()),
            path,
            number,
        )
    if not queries:
        raise InputError("no <num>/<title> topics found in this TREC topics file", path)
    return queries


_TOPIC_READERS = {
    ".tsv": _read_tsv_topics,
    ".txt": _read_tsv_topics,
    ".jsonl": _read_jsonl_topics,
    ".json": _read_json_topics,
    ".trec": _read_trec_topics,
}


def _topic_suffix(path: Path) -> str:
    """``.tsv`` for both ``topics.tsv`` and ``topics.tsv.gz``."""
    return Path(path.name.lower().removesuffix(".gz")).suffix


def read_topics_file(path: os.PathLike | str) -> Topics:
    path = Path(path)
    _require_file(path)
    reader = _TOPIC_READERS.get(_topic_suffix(path))
    if reader is None:
        allowed = ", ".join(sorted(_TOPIC_READERS))
        raise InputError(
            f"cannot tell the topics format from the file name; use one of: {allowed} (optionally .gz)",
            path,
        )
    queries = reader(path)
    if not queries:
        raise InputError("no queries in this file", path)
    return Topics(str(path), queries)


# ---------------------------------------------------------------------------------------------
# Qrels


_QREL = "qid 0 docid grade"
_RUN_LINE = "qid Q0 docid rank score tag"


def read_qrels_file(path: os.PathLike | str) -> dict[str, dict[str, int]]:
    """TREC qrels ``qid iteration docid grade`` as ``{qid: {docid: grade}}`` (ir_measures' dict form).

    A judgement repeated with the same grade is harmless and kept once; with another grade it is
    an error naming both lines (which one trec_eval would keep depends on its sort).
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, line in iter_lines(path):
        fields = split_fields(line)
        if not fields:
            continue
        _no_mark_inside(line, path, number)
        if len(fields) != 4:
            raise InputError(
                f"expected '{_QREL}', got {len(fields)} fields{_jsonl_hint(line, _QREL)}",
                path,
                number,
            )
        qid, _, docid, text = fields
        grade = parse_grade(text, path, number)
        judged = qrels.setdefault(qid, {})
        if docid in judged and judged[docid] != grade:
            raise InputError(
                f"query {qid!r} judges docid {docid!r} {grade}, but {judged[docid]} on line {first_line[qid, docid]}; "
                "keep one judgement",
                path,
                number,
            )
        first_line.setdefault((qid, docid), number)
        judged[docid] = grade
    if not qrels:
        raise InputError("no judgements in this qrels file", path)
    return qrels


def _jsonl_hint(line: str, form: str) -> str:
    """For a whitespace-separated format: say so when the line is JSON (a JSONL file, e.g. a run
    written with ``--output-format jsonl``, given where ``form`` is read)."""
    if line.lstrip().startswith("{"):
        return f"; the line is JSON: the file looks like JSON Lines, not '{form}' text"
    return ""


# ---------------------------------------------------------------------------------------------
# First-stage runs


@dataclass(frozen=True)
class RunHit:
    docid: str
    score: float
    rank: int
    line: int


@dataclass(frozen=True)
class TrecRun:
    """A TREC run: hits per query, best first, in the order queries first appear in the file."""

    path: str
    hits: dict[str, list[RunHit]]


def read_trec_run(path: os.PathLike | str) -> TrecRun:
    """Read and validate ``qid Q0 docid rank score tag`` lines.

    Hits are ordered by score (as trec_eval does), then by the file's rank, then by docid.
    """
    path = Path(path)
    hits: dict[str, list[RunHit]] = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in iter_lines(path):
        fields = split_fields(line)
        if not fields:
            continue
        _no_mark_inside(line, path, number)
        if len(fields) != 6:
            raise InputError(
                f"expected '{_RUN_LINE}', got {len(fields)} fields{_jsonl_hint(line, _RUN_LINE)}",
                path,
                number,
            )
        qid, _, docid, rank, score, _ = fields
        hit = RunHit(
            docid, parse_score(score, "score", path, number), parse_integer(rank, "rank", path, number), number
        )
        if (qid, docid) in seen:
            raise InputError(
                f"docid {docid!r} appears twice for query {qid!r} (first on line {seen[qid, docid]})",
                path,
                number,
            )
        seen[qid, docid] = number
        hits.setdefault(qid, []).append(hit)
    if not hits:
        raise InputError("no hits in this run file", path)
    for qid_hits in hits.values():
        qid_hits.sort(key=lambda h: (-h.score, h.rank, h.docid))
    return TrecRun(str(path), hits)


# ---------------------------------------------------------------------------------------------
# Corpus


DOC_ID_KEYS = ("id", "docid", "_id")
_DOC_TEXT_KEYS = ("contents", "text")


def document_text(record: Mapping, path: Path, number: int) -> str:
    """A document's text, by Pyserini's rule: ``contents`` when present; else a BEIR document's
    ``title`` and ``text`` joined by a space (how Pyserini's encoders and the stored documents
    of its BEIR indexes read them, and how ``firststage.passage_text`` reads an index)."""
    text = first_key(record, _DOC_TEXT_KEYS, "text", path, number)
    if "contents" in record or not record.get("title"):
        return text
    title = first_key(record, ("title",), "title", path, number)
    return " ".join(part for part in (title, text) if part)


def read_corpus(path: os.PathLike | str, wanted: set[str] | None = None) -> dict[str, str]:
    """Passage texts from Pyserini JSONL (``{"id", "contents"}``; ``docid``/``_id`` and BEIR's
    ``title`` + ``text`` accepted too, see :func:`document_text`).

    Every line is validated (duplicate docids included), but only the ``wanted`` texts are kept
    when given, so that a large corpus can stand behind a small run; a wanted text that is empty
    is an error here, before any query of the run is reranked.
    """
    path = Path(path)
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        record = json_line(path, number, line)
        docid = first_key(record, DOC_ID_KEYS, "docid", path, number)
        if docid in first_line:
            raise InputError(
                f"docid {docid!r} appears twice (first on line {first_line[docid]})",
                path,
                number,
            )
        first_line[docid] = number
        text = document_text(record, path, number)
        if wanted is None:
            texts[docid] = text
        elif docid in wanted:
            if not text.strip():
                raise InputError(f"the text of docid {docid!r} is empty, and the run ranks it", path, number)
            texts[docid] = text
    if not first_line:
        raise InputError("no documents in this corpus file", path)
    return texts
