"""Reading what a reranking run starts from: topics, qrels, first-stage runs and corpora.

Every reader validates as it goes and raises :class:`InputError` whose message names the file
and line, so that the command line can report bad input in one line. Topic and qrels *names*
(``dl19``, ``scifact``, ``beir-v1.0.0-scifact-test`` …) go through Pyserini; files are read
here, because Pyserini dispatches topic files partly by path (any path containing ``beir`` or
``cacm`` gets a special reader) and its errors name neither file nor line.

:func:`add_first_stage_args` and :func:`requests_from_args` are shared by every command that
needs first-stage candidates.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from .java import JavaNotFoundError, ensure_java, java_exception
from .records import Candidate, Query, Request

NameKind = Literal["index", "topics", "qrels"]


class InputError(ValueError):
    """Bad input; the message starts with ``file:line:`` when a file and line are known."""

    def __init__(
        self,
        message: str,
        path: os.PathLike | str | None = None,
        line: int | None = None,
    ):
        if path is not None and line is not None:
            where = f"{path}:{line}: "
        else:
            where = f"{path}: " if path is not None else ""
        super().__init__(where + message)
        self.path = path
        self.line = line


# Errors a command reports as one line (bad input, missing files, no Java) rather than a traceback.
USER_ERRORS = (ValueError, OSError, JavaNotFoundError)


def error_line(error: BaseException) -> str:
    """``error: …`` on one line, for the command line."""
    return "error: " + (" ".join(str(error).splitlines()) or type(error).__name__)


# ---------------------------------------------------------------------------------------------
# Names: short aliases the way rank_llm has them, resolved per kind of resource.


@dataclass(frozen=True)
class Names:
    index: str
    topics: str
    qrels: str


_BEIR_SETS = """arguana bioasq climate-fever dbpedia-entity fever fiqa hotpotqa nfcorpus nq quora robust04
scidocs scifact signal1m trec-covid trec-news webis-touche2020 cqadupstack-android cqadupstack-english
cqadupstack-gaming cqadupstack-gis cqadupstack-mathematica cqadupstack-physics cqadupstack-programmers
cqadupstack-stats cqadupstack-tex cqadupstack-unix cqadupstack-webmasters cqadupstack-wordpress"""

ALIASES: dict[str, Names] = {
    "msmarco": Names(
        "msmarco-v1-passage", "msmarco-passage-dev-subset", "msmarco-passage-dev-subset"
    ),
    "dl19": Names("msmarco-v1-passage", "dl19-passage", "dl19-passage"),
    "dl20": Names("msmarco-v1-passage", "dl20", "dl20-passage"),
    **{
        n: Names(
            f"beir-v1.0.0-{n}.flat", f"beir-v1.0.0-{n}-test", f"beir-v1.0.0-{n}-test"
        )
        for n in _BEIR_SETS.split()
    },
}


def resolve_name(name: str, kind: NameKind) -> str:
    """The Pyserini name for a short alias (``dl19`` → ``dl19-passage`` …); other names pass through."""
    names = ALIASES.get(name)
    return getattr(names, kind) if names else name


def _is_file_spec(value: str) -> bool:
    """A file, or meant as one: a missing ``topics.tsv`` is a missing file, not an unknown name."""
    return (
        Path(value).exists()
        or os.sep in value
        or value.startswith(".")
        or Path(value).suffix.lower() in _TOPIC_SUFFIXES | {".gz"}
    )


# ---------------------------------------------------------------------------------------------
# Lines of text files, decoded strictly so that bad bytes are reported with their line.


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(
            f"file not found: {path}" if not path.exists() else f"not a file: {path}"
        )


def _open_binary(path: Path) -> IO[bytes]:
    _require_file(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def iter_lines(path: os.PathLike | str) -> Iterator[tuple[int, str]]:
    """``(line number, text without the newline)`` for each line; non-UTF-8 bytes are an error."""
    path = Path(path)
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(
                    f"bytes that are not UTF-8 at column {error.start + 1} ({raw[error.start : error.end]!r})",
                    path,
                    number,
                ) from None
            yield number, text.rstrip("\r\n")


def _json_line(path: Path, number: int, line: str) -> dict:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(
            f"not valid JSON: {error.msg} at column {error.colno}", path, number
        ) from None
    if not isinstance(value, dict):
        raise InputError(
            f"expected a JSON object, got {type(value).__name__}", path, number
        )
    return value


def _first_key(
    record: Mapping, keys: tuple[str, ...], what: str, path: Path, number: int
) -> str:
    for key in keys:
        if key in record:
            value = record[key]
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise InputError(
                    f"{what} field {key!r} must be a string, got {type(value).__name__}",
                    path,
                    number,
                )
            return str(value)
    raise InputError(f"no {what} field (looked for {', '.join(keys)})", path, number)


# ---------------------------------------------------------------------------------------------
# Topics


@dataclass(frozen=True)
class Topics:
    """Queries in their processing order, and where they came from (for error messages)."""

    source: str
    queries: dict[str, str]


_TOPIC_SUFFIXES = {".tsv", ".txt", ".jsonl", ".json", ".trec"}
_TOPIC_ID_KEYS = ("qid", "query_id", "_id", "id")
_TOPIC_TEXT_KEYS = ("query", "text", "title")


def _add_topic(
    queries: dict[str, str], qid: str, text: str, path: Path, number: int | None
) -> None:
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
        fields = line.split("\t")
        if len(fields) != 2:
            raise InputError(
                f"expected 'qid<TAB>query text', got {len(fields)} tab-separated fields",
                path,
                number,
            )
        _add_topic(queries, fields[0].strip(), fields[1], path, number)
    return queries


def _read_jsonl_topics(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, line in iter_lines(path):
        if line.strip():
            record = _json_line(path, number, line)
            qid = _first_key(record, _TOPIC_ID_KEYS, "query id", path, number)
            _add_topic(
                queries,
                qid,
                _first_key(record, _TOPIC_TEXT_KEYS, "query text", path, number),
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
        raise InputError(f"not valid JSON: {error.msg}", path, error.lineno) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object mapping query ids to topics", path)
    queries: dict[str, str] = {}
    for qid, topic in data.items():
        query = topic.get("title") if isinstance(topic, dict) else topic
        if not isinstance(query, str):
            raise InputError(f"topic {qid!r} has no string 'title'", path)
        _add_topic(queries, qid, query, path, None)
    return queries


_TREC_TOPIC = re.compile(
    r"<num>\s*(?:Number:)?\s*(?P<qid>\S+)(?P<body>.*?)(?=<num>|</top>|\Z)",
    re.DOTALL | re.IGNORECASE,
)
_TREC_TITLE = re.compile(
    r"<title>\s*(?:Topic:)?(?P<title>.*?)(?=<\w+>|</top>|\Z)", re.DOTALL | re.IGNORECASE
)


def _read_trec_topics(path: Path) -> dict[str, str]:
    """Classic TREC topics (``<top><num> Number: 301 <title> …``); the title is the query."""
    text = "\n".join(line for _, line in iter_lines(path))
    queries: dict[str, str] = {}
    for match in _TREC_TOPIC.finditer(text):
        title = _TREC_TITLE.search(match.group("body"))
        number = text.count("\n", 0, match.start()) + 1
        if title is None:
            raise InputError(
                f"topic {match.group('qid')!r} has no <title>", path, number
            )
        _add_topic(
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


def _pyserini_order(qids: Iterable[str]) -> list[str]:
    """Pyserini's query order: numeric when every id is a number, else by string."""
    qids = list(qids)
    return sorted(qids, key=int) if all(q.isdigit() for q in qids) else sorted(qids)


def fetch_from_pyserini(spec: str, kind: Literal["topics", "qrels"]) -> tuple[str, Any]:
    """``(name, get_topics(name))`` or ``(name, get_qrels_file(name))`` for a Pyserini name or alias.

    Pyserini downloads topics and qrels on first use; offline the download fails with a bare
    Java exception, which becomes an error suggesting to pass a file instead.
    """
    name = resolve_name(spec, kind)
    ensure_java()
    from pyserini.search import get_qrels_file, get_topics

    fetch = get_topics if kind == "topics" else get_qrels_file
    try:
        return name, fetch(name)
    except (
        ValueError,
        FileNotFoundError,
    ):  # how get_topics / get_qrels_file say "unknown name"
        raise InputError(
            f"unknown {kind} {spec!r}: not a file and not a Pyserini {kind} name "
            f"(aliases: {', '.join(list(ALIASES)[:5])}, …)"
        ) from None
    except java_exception() as error:
        raise InputError(
            f"could not fetch Pyserini {kind} {name!r} ({str(error).splitlines()[0]}); Pyserini "
            f"downloads {kind} on first use, so offline pass a file instead (--{kind} FILE)"
        ) from None


def read_topics(spec: str) -> Topics:
    """Topics from a file, or from a Pyserini topics name or alias (``dl19``, ``scifact`` …)."""
    if _is_file_spec(spec):
        return read_topics_file(spec)
    name, topics = fetch_from_pyserini(spec, "topics")
    by_qid = {str(qid): topic for qid, topic in topics.items()}
    queries: dict[str, str] = {}
    for qid in _pyserini_order(by_qid):
        _add_topic(queries, qid, by_qid[qid].get("title", ""), Path(name), None)
    return Topics(name, queries)


# ---------------------------------------------------------------------------------------------
# Qrels


def read_qrels_file(path: os.PathLike | str) -> dict[str, dict[str, int]]:
    """TREC qrels ``qid iteration docid grade`` as ``{qid: {docid: grade}}`` (ir_measures' dict form)."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    for number, line in iter_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise InputError(
                f"expected 'qid 0 docid grade', got {len(fields)} fields", path, number
            )
        qid, _, docid, grade = fields
        try:
            qrels.setdefault(qid, {})[docid] = int(grade)
        except ValueError:
            raise InputError(
                f"relevance grade {grade!r} is not an integer", path, number
            ) from None
    if not qrels:
        raise InputError("no judgements in this qrels file", path)
    return qrels


def read_qrels(spec: str) -> dict[str, dict[str, int]]:
    """Qrels from a file, or from a Pyserini qrels name or alias (``dl19`` → ``dl19-passage`` …)."""
    if _is_file_spec(spec):
        return read_qrels_file(spec)
    return read_qrels_file(fetch_from_pyserini(spec, "qrels")[1])


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
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise InputError(
                f"expected 'qid Q0 docid rank score tag', got {len(fields)} fields",
                path,
                number,
            )
        qid, _, docid, rank, score, _ = fields
        try:
            hit = RunHit(docid, float(score), int(rank), number)
        except ValueError:
            raise InputError(
                f"rank {rank!r} must be an integer and score {score!r} a number",
                path,
                number,
            ) from None
        if not math.isfinite(hit.score):
            raise InputError(f"score {score!r} is not finite", path, number)
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


_DOC_ID_KEYS = ("id", "docid", "_id")
_DOC_TEXT_KEYS = ("contents", "text")


def read_corpus(
    path: os.PathLike | str, wanted: set[str] | None = None
) -> dict[str, str]:
    """Passage texts from Pyserini JSONL (``{"id", "contents"}``; ``docid``/``text`` accepted too).

    Every line is validated (duplicate docids included), but only the ``wanted`` texts are kept
    when given, so that a large corpus can stand behind a small run.
    """
    path = Path(path)
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        record = _json_line(path, number, line)
        docid = _first_key(record, _DOC_ID_KEYS, "docid", path, number)
        if docid in first_line:
            raise InputError(
                f"docid {docid!r} appears twice (first on line {first_line[docid]})",
                path,
                number,
            )
        first_line[docid] = number
        text = _first_key(record, _DOC_TEXT_KEYS, "text", path, number)
        if wanted is None or docid in wanted:
            texts[docid] = text
    if not first_line:
        raise InputError("no documents in this corpus file", path)
    return texts


# ---------------------------------------------------------------------------------------------
# Requests for the reranker, from either first stage


def add_first_stage_args(parser: argparse.ArgumentParser) -> None:
    """The first-stage flags, named and defaulted as in ``pyserini.search.lucene`` where they overlap."""
    group = parser.add_argument_group(
        "first stage (either --index, or --run with --corpus)"
    )
    group.add_argument(
        "--topics",
        required=True,
        help="topics file (.tsv qid<TAB>text, .jsonl, .json, .trec) or name (dl19, dl20, msmarco, scifact, …)",
    )
    group.add_argument(
        "--index",
        help="Lucene index: a local path or a Pyserini prebuilt name/alias (msmarco, dl19, scifact, …)",
    )
    group.add_argument(
        "--run",
        help="first-stage TREC run to rerank instead of searching (needs --corpus)",
    )
    group.add_argument(
        "--corpus",
        help="JSONL with the passage texts of --run ({'id', 'contents'} per line)",
    )
    group.add_argument(
        "--bm25",
        action="store_true",
        help="BM25 first stage (the only one; accepted as in Pyserini)",
    )
    group.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    group.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    group.add_argument(
        "--hits",
        type=positive_int,
        default=100,
        help="first-stage hits per query (default 100)",
    )
    group.add_argument(
        "--max-queries", type=positive_int, help="only the first N queries of --topics"
    )


def positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _check_first_stage_args(args: argparse.Namespace) -> None:
    if args.index and (args.run or args.corpus):
        raise InputError(
            "give either --index (search with BM25) or --run with --corpus, not both"
        )
    if not args.index and not (args.run and args.corpus):
        raise InputError(
            "no first stage: give --index, or --run FILE with --corpus FILE.jsonl"
        )


def _limit(topics: Topics, max_queries: int | None) -> Topics:
    if max_queries is None:
        return topics
    return Topics(topics.source, dict(list(topics.queries.items())[:max_queries]))


def requests_from_run(
    topics: Topics,
    run: TrecRun,
    corpus_path: os.PathLike | str,
    hits: int,
    max_queries: int | None = None,
) -> list[Request]:
    """One request per topic from a run and its corpus; topics and run must match one to one.

    The match is checked on all topics before ``max_queries`` keeps the first few, so that a
    mismatched pair of files is caught on a short trial run too.
    """
    for qid, run_hits in run.hits.items():
        if qid not in topics.queries:
            raise InputError(
                f"query {qid!r} of the run is not in the topics {topics.source}",
                run.path,
                run_hits[0].line,
            )
    missing = [qid for qid in topics.queries if qid not in run.hits]
    if missing:
        shown = ", ".join(repr(q) for q in missing[:5]) + (
            " …" if len(missing) > 5 else ""
        )
        raise InputError(
            f"{len(missing)} queries of the topics have no hits in the run {run.path}: {shown}",
            topics.source,
        )
    queries = _limit(topics, max_queries).queries
    kept = {qid: run.hits[qid][:hits] for qid in queries}
    texts = read_corpus(
        corpus_path, {hit.docid for qid_hits in kept.values() for hit in qid_hits}
    )
    for qid_hits in kept.values():
        for hit in qid_hits:
            if hit.docid not in texts:
                raise InputError(
                    f"docid {hit.docid!r} is not in the corpus {corpus_path}",
                    run.path,
                    hit.line,
                )
    return [
        Request(
            Query(text, qid),
            [
                Candidate(h.docid, h.score, {"contents": texts[h.docid]})
                for h in kept[qid]
            ],
        )
        for qid, text in queries.items()
    ]


def requests_from_args(args: argparse.Namespace) -> list[Request]:
    """The first-stage candidates the flags of :func:`add_first_stage_args` ask for, one request per query."""
    _check_first_stage_args(args)
    topics = read_topics(args.topics)
    if args.index:
        from .firststage import bm25_requests, open_searcher

        searcher = open_searcher(args.index, k1=args.k1, b=args.b)
        return bm25_requests(searcher, _limit(topics, args.max_queries), hits=args.hits)
    return requests_from_run(
        topics, read_trec_run(args.run), args.corpus, args.hits, args.max_queries
    )
