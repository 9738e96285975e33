"""The first stage: candidates for each query, as ``Request`` records for the ranker.

Either a BM25 search through Pyserini's ``LuceneSearcher`` (passage texts from the index's
stored raw documents, ``--storeRaw`` when indexing: a JSON raw document gives its ``contents``,
or BEIR's ``title`` + ``text``, anything else is the text), or a given TREC run with a corpus
file holding its passages.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headrank_ir.errors import InputError
from headrank_ir.pipeline.jvm import ensure_java, java_exception
from headrank_ir.pipeline.names import read_topics, resolve_name
from headrank_ir.pipeline.readers import Topics, TrecRun, add_topic, read_corpus, read_trec_run
from headrank_ir.pipeline.runfile import write_trec_run
from headrank_ir.records import Candidate, Query, Request, Result

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
        raise InputError(f"--index {path} is not a readable Lucene index ({_first_line(error)})") from None


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


def open_searcher(index: str, k1: float | None = None, b: float | None = None) -> LuceneSearcher:
    """A BM25 searcher over a local index folder or a Pyserini prebuilt index (name or alias).

    ``k1``/``b`` as ``python -m pyserini.search.lucene`` takes them: both or neither; neither
    means Pyserini's choice for that index (0.82/0.68 for MS MARCO v1 passage, Lucene's 0.9/0.4
    for every other index).
    """
    if (k1 is None) != (b is None):
        raise InputError("give both --k1 and --b, or neither (Pyserini's defaults for the index)")
    ensure_java()
    path = Path(index)
    searcher = _open_local(path) if path.exists() else _open_prebuilt(index)
    if k1 is not None:
        searcher.set_bm25(k1, b)
    else:
        from pyserini.search.lucene.__main__ import set_bm25_parameters

        chatter = io.StringIO()  # it announces its choice with print()
        with contextlib.redirect_stdout(chatter):
            set_bm25_parameters(searcher, resolve_name(index, "index"))
        logger.info("BM25 parameters: %s", chatter.getvalue().strip() or "Lucene's defaults (k1=0.9, b=0.4)")
    return searcher


def passage_text(raw: str | None, docid: str) -> str:
    """The passage text of a stored raw document."""
    if raw is None:
        raise InputError(f"document {docid!r} has no stored raw text: index with --storeRaw, or pass --run/--corpus")
    try:
        record: Any = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if not isinstance(record, dict):
        return raw
    if "contents" in record:
        return str(record["contents"])
    if "text" in record:
        return " ".join(str(part) for part in (record.get("title"), record["text"]) if part)
    raise InputError(f"stored document {docid!r} has neither 'contents' nor 'text' (keys: {sorted(record)})")


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


def rerank_hits(ranker: Any, query: str, hits: Iterable[Any], rank_end: int = 100, *, qid: str | int) -> Result:
    """Rerank the hits of Pyserini's ``LuceneSearcher.search()`` (texts from the stored raw
    documents) with ``ranker.rerank`` (a ``HeadRanker``): the top ``rank_end``, the rest below.
    ``qid`` names the query in the result (and in a run written from it); for every topic at once,
    :func:`rerank_topics`."""
    return ranker.rerank(Request(Query(query, str(qid)), candidates_from_hits(hits)), rank_end=rank_end)


def bm25_requests(searcher: LuceneSearcher, topics: Topics, hits: int, threads: int = 1) -> list[Request]:
    """One request per query with its top ``hits`` candidates in the searcher's order (BM25 for
    :func:`open_searcher`'s), searched with Pyserini's ``batch_search`` over ``threads`` threads,
    passage texts from the stored raw documents; a query with no hit is left out, with a line."""
    qids = list(topics.queries)
    found = searcher.batch_search([topics.queries[q] for q in qids], qids, k=hits, threads=threads)
    requests = [Request(Query(topics.queries[q], q), candidates_from_hits(found.get(q, []))) for q in qids]
    return _without_empty(requests, "BM25 found nothing")


def rerank_topics(
    ranker: Any,
    searcher: LuceneSearcher,
    topics: Topics | Mapping[Any, Any] | os.PathLike | str,
    output: os.PathLike | str | None = None,
    hits: int = 100,
    rank_end: int | None = None,
    threads: int = 1,
    batch_size: int = 1,
    tag: str = "headrank",
) -> list[Result]:
    """Every topic searched with ``searcher`` (a ``LuceneSearcher``: its top ``hits``, see
    :func:`bm25_requests`), its top ``rank_end`` (default: all ``hits``) reranked by ``ranker``
    (a ``HeadRanker``, ``batch_size`` queries per forward) and the rest kept below, in one call;
    with ``output``, written there as a TREC run tagged ``tag`` (atomically, ties by docid).

    ``topics``: a topics file or Pyserini topics name (what ``--topics`` takes), ``Topics``, or a
    mapping qid → text or qid → ``{"title": text}`` (what Pyserini's ``get_topics`` returns);
    qids become strings, as in a run file. For an interruptible run with a journal, use the
    ``headrank_ir.rerank`` command instead.
    """
    if isinstance(topics, (str, os.PathLike)):
        topics = read_topics(os.fspath(topics))
    elif isinstance(topics, Mapping):
        queries: dict[str, str] = {}
        for qid, topic in topics.items():
            text = topic.get("title", "") if isinstance(topic, Mapping) else topic
            add_topic(queries, str(qid), text, Path("topics"), None)
        topics = Topics("the given topics", queries)
    elif not isinstance(topics, Topics):
        raise TypeError(
            "topics must be a file, a Pyserini topics name, Topics or a mapping qid -> text, "
            f"got {type(topics).__name__}"
        )
    requests = bm25_requests(searcher, topics, hits, threads)
    batches = [requests[i : i + batch_size] for i in range(0, len(requests), batch_size)]
    results = [
        r for batch in ranker.rerank_batches(batches, rank_end=hits if rank_end is None else rank_end) for r in batch
    ]
    if output is not None:
        write_trec_run(output, results, tag)
        logger.info("reranked run of %d queries written to %s", len(results), output)
    return results


def _without_empty(requests: list[Request], why: str) -> list[Request]:
    empty = [r.query.qid for r in requests if not r.candidates]
    if empty:
        logger.warning("%d queries have no first-stage hits (%s) and are left out: %s", len(empty), why, _shown(empty))
    return [r for r in requests if r.candidates]


def _shown(qids: list[str], limit: int = 5) -> str:
    return ", ".join(qids[:limit]) + (f" … ({len(qids) - limit} more)" if len(qids) > limit else "")


def requests_from_run(
    topics: Topics, run: TrecRun, corpus_path: os.PathLike | str, hits: int, max_queries: int | None = None
) -> list[Request]:
    """One request per topic (the first ``max_queries``) with its top ``hits`` hits of ``run``.

    Topics may name a subset of the run's queries (a dev subset, a quick trial): exactly those
    are reranked, said in one line. A topic the run has no hits for is left out, with a line;
    topics that share no query with the run are an error (files of different collections).
    """
    matched = [qid for qid in topics.queries if qid in run.hits]
    if not matched:
        raise InputError(
            f"no query of the topics {topics.source} has hits in the run {run.path}: are they of the same collection?"
        )
    if len(run.hits) > len(matched):
        logger.info("the topics name %d of the run's %d queries: reranking those", len(matched), len(run.hits))
    chosen = list(topics.queries)[:max_queries] if max_queries else list(topics.queries)
    kept = {qid: run.hits.get(qid, [])[:hits] for qid in chosen}
    texts = read_corpus(corpus_path, {hit.docid for qid_hits in kept.values() for hit in qid_hits})
    for qid_hits in kept.values():
        for hit in qid_hits:
            if hit.docid not in texts:
                raise InputError(f"docid {hit.docid!r} is not in the corpus {corpus_path}", run.path, hit.line)
    requests = [
        Request(
            Query(topics.queries[qid], qid),
            [Candidate(h.docid, h.score, {"contents": texts[h.docid]}) for h in kept[qid]],
        )
        for qid in chosen
    ]
    return _without_empty(requests, f"not in the run {run.path}")


def first_stage_requests(
    topics: str,
    index: str | None = None,
    run: str | None = None,
    corpus: str | None = None,
    k1: float | None = None,
    b: float | None = None,
    hits: int = 100,
    threads: int = 1,
    max_queries: int | None = None,
) -> list[Request]:
    """One request per query of ``topics`` (a file or a Pyserini name): BM25 over ``index``, or
    the given ``run`` with its passages from ``corpus``; the commands' first-stage flags."""
    if index and (run or corpus):
        raise InputError("give either --index (search with BM25) or --run with --corpus, not both")
    if not index and not (run and corpus):
        raise InputError("no first stage: give --index, or --run FILE with --corpus FILE.jsonl")
    queries = read_topics(topics)
    if index:
        searcher = open_searcher(index, k1=k1, b=b)
        limited = Topics(queries.source, dict(list(queries.queries.items())[:max_queries]))
        return bm25_requests(searcher, limited, hits=hits, threads=threads)
    return requests_from_run(queries, read_trec_run(run), corpus, hits, max_queries)


def write_bm25_run(
    index: os.PathLike | str,
    topics_path: os.PathLike | str,
    run_path: os.PathLike | str,
    hits: int = 100,
    threads: int = 1,
) -> list[Request]:
    """Search every topic of a topics file with BM25 (the index's Pyserini defaults) and write the
    top ``hits`` as a TREC run tagged ``bm25``; returns the requests, passage texts included."""
    from headrank_ir.pipeline.readers import read_topics_file

    requests = bm25_requests(open_searcher(str(index)), read_topics_file(topics_path), hits, threads)
    write_trec_run(run_path, requests, "bm25")
    logger.info("BM25 run of %d queries written to %s", len(requests), run_path)
    return requests
