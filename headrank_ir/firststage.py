"""BM25 first stage through Pyserini's ``LuceneSearcher``, with passage texts from the index.

The texts come from the stored raw documents (``--storeRaw`` when indexing); a JSON raw
document gives its ``contents`` (or BEIR's ``title`` + ``text``), anything else is the text.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .inputs import InputError, Topics, resolve_name
from .java import ensure_java, java_exception
from .records import Candidate, Query, Request

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pyserini.search.lucene import LuceneSearcher


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def _open_local(path: Path) -> LuceneSearcher:
    from pyserini.search.lucene import LuceneSearcher

    if not path.is_dir():
        raise InputError(f"--index {path} is not a folder holding a Lucene index")
    try:
        # Absolute: the JVM resolves relative paths against the folder it started in, which
        # need not be the current one any more.
        return LuceneSearcher(str(path.resolve()))
    except java_exception() as error:
        raise InputError(
            f"--index {path} is not a readable Lucene index ({_first_line(error)})"
        ) from None


def _open_prebuilt(index: str) -> LuceneSearcher:
    from pyserini.prebuilt_index_info import TF_INDEX_INFO
    from pyserini.search.lucene import LuceneSearcher

    name = resolve_name(index, "index")
    if name not in TF_INDEX_INFO:
        raise InputError(
            f"--index {index!r} is neither a local folder nor a Pyserini prebuilt inverted index "
            "(e.g. msmarco-v1-passage, beir-v1.0.0-scifact.flat, or the aliases msmarco, dl19, scifact)"
        )
    logger.info(
        "opening Pyserini's prebuilt index %s (downloaded on first use; can take minutes)",
        name,
    )
    # Pyserini reports download progress and failures with print() and tqdm: keep them off the
    # terminal, where the one-line error below (or the results) should stand alone.
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        searcher = LuceneSearcher.from_prebuilt_index(name)
    logger.debug("pyserini said: %s", chatter.getvalue())
    if searcher is None:  # what from_prebuilt_index returns when the download fails
        raise InputError(
            f"could not download Pyserini's prebuilt index {name!r} (offline?); "
            "rerank an existing first-stage run instead with --run FILE --corpus FILE.jsonl"
        )
    return searcher


def open_searcher(index: str, k1: float = 0.9, b: float = 0.4) -> LuceneSearcher:
    """A BM25 searcher over a local index folder or a Pyserini prebuilt index (name or alias)."""
    ensure_java()
    path = Path(index)
    searcher = _open_local(path) if path.exists() else _open_prebuilt(index)
    searcher.set_bm25(k1, b)
    return searcher


def passage_text(raw: str | None, docid: str) -> str:
    """The passage text of a stored raw document."""
    if raw is None:
        raise InputError(
            f"document {docid!r} has no stored raw text: index with --storeRaw, or pass --run/--corpus"
        )
    try:
        record: Any = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if not isinstance(record, dict):
        return raw
    if "contents" in record:
        return str(record["contents"])
    if "text" in record:
        return " ".join(
            str(part) for part in (record.get("title"), record["text"]) if part
        )
    raise InputError(
        f"stored document {docid!r} has neither 'contents' nor 'text' (keys: {sorted(record)})"
    )


def candidates_from_hits(hits: Iterable[Any]) -> list[Candidate]:
    """Candidates, in the given order, from the hits of ``LuceneSearcher.search()``."""
    return [
        Candidate(
            hit.docid,
            float(hit.score),
            {"contents": passage_text(hit.lucene_document.get("raw"), hit.docid)},
        )
        for hit in hits
    ]


def bm25_requests(searcher: LuceneSearcher, topics: Topics, hits: int) -> list[Request]:
    """One request per query with the top ``hits`` BM25 candidates in Lucene's order."""
    return [
        Request(Query(text, qid), candidates_from_hits(searcher.search(text, k=hits)))
        for qid, text in topics.queries.items()
    ]
