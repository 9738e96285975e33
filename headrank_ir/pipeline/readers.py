"""Reading what a reranking run starts from: topics, qrels, first-stage runs and corpora, as files.

Every reader validates as it goes and raises :class:`InputError` whose message names the file
and line, so that the command line can report bad input in one line. Names of Pyserini's
topics and qrels (``dl19`` …) are resolved in :mod:`headrank_ir.pipeline.names`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from headrank_ir.errors import InputError
from headrank_ir.pipeline.textfiles import (
    check_field,
    first_key,
    iter_lines,
    json_line,
    no_mark_inside,
    parse_grade,
    parse_integer,
    parse_score,
    require_file,
    split_fields,
)

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
    check_field(qid, "query id", path, number)
    check_field(text, f"query {qid!r}", path, number)
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
        no_mark_inside(line, path, number)
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
    require_file(path)
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
        no_mark_inside(line, path, number)
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
        no_mark_inside(line, path, number)
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


def corpus_documents(paths: Sequence[Path]) -> Iterator[tuple[str, str, Path, int]]:
    """Every document of JSONL corpus files, in order, as ``(docid, text, path, line)``: each line
    validated, the text by :func:`document_text`, a docid given twice refused naming where it came
    first. The one corpus reader, for ``--corpus`` and for ``index``."""
    first: dict[str, tuple[Path, int]] = {}
    for path in paths:
        for number, line in iter_lines(path):
            if not line.strip():
                continue
            record = json_line(path, number, line)
            docid = first_key(record, DOC_ID_KEYS, "docid", path, number)
            if docid in first:
                where, at = first[docid]
                before = f"line {at}" if where == path else f"{where}:{at}"
                raise InputError(
                    f"docid {docid!r} appears twice (first {'on' if where == path else 'at'} {before})", path, number
                )
            first[docid] = (path, number)
            yield docid, document_text(record, path, number), path, number


def read_corpus(path: os.PathLike | str, wanted: set[str] | None = None) -> dict[str, str]:
    """Passage texts from Pyserini JSONL (``{"id", "contents"}``; ``docid``/``_id`` and BEIR's
    ``title`` + ``text`` accepted too, see :func:`document_text`).

    Every line is validated (duplicate docids included), but only the ``wanted`` texts are kept
    when given, so that a large corpus can stand behind a small run; a wanted text that is empty
    is an error here, before any query of the run is reranked.
    """
    path = Path(path)
    texts: dict[str, str] = {}
    seen = 0
    for docid, text, _, number in corpus_documents([path]):
        seen += 1
        if wanted is None:
            texts[docid] = text
        elif docid in wanted:
            if not text.strip():
                raise InputError(f"the text of docid {docid!r} is empty, and the run ranks it", path, number)
            texts[docid] = text
    if not seen:
        raise InputError("no documents in this corpus file", path)
    return texts
