"""HeadRank inside other people's pipelines: Pyserini hits, rank_llm requests, pygaggle texts.

None of those packages is imported here: their objects are read by attribute (duck typing), so
rank_llm and pygaggle stay optional. What comes back is this package's ``Result`` (attribute for
attribute rank_llm's shape, so rank_llm's writers and evaluators accept it) or, for pygaggle,
copies of the caller's own ``Text`` objects.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .records import Candidate, Query, Request, Result


class RequestReranker(Protocol):
    """What the adapters need from a ranker; ``HeadRanker`` is one."""

    def rerank_batch(self, requests: Sequence[Request]) -> list[Result]: ...


def rerank_top_batch(
    ranker: RequestReranker, requests: Sequence[Request], depth: int | None = None
) -> list[Result]:
    """Rerank the first ``depth`` candidates of each request (all when None); the rest keep
    their order below.

    The candidates below ``depth`` are scored 1, 2, 3 … below the lowest reranked score, so
    that sorting by score keeps them in first-stage order under the reranked ones. A request
    without candidates gives an empty result.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be a positive number of candidates, got {depth}")
    heads = [Request(r.query, list(r.candidates[:depth])) for r in requests]
    reranked = iter(ranker.rerank_batch([h for h in heads if h.candidates]))
    results = []
    for request, head in zip(requests, heads):
        on_top = list(next(reranked).candidates) if head.candidates else []
        tail = request.candidates[depth:] if depth is not None else []
        floor = min((c.score for c in on_top), default=0.0)
        below = [
            Candidate(c.docid, floor - offset, c.doc)
            for offset, c in enumerate(tail, start=1)
        ]
        results.append(Result(request.query, on_top + below))
    return results


def rerank_top(
    ranker: RequestReranker, request: Request, depth: int | None = None
) -> Result:
    """:func:`rerank_top_batch` for one request."""
    return rerank_top_batch(ranker, [request], depth)[0]


# -- Pyserini --------------------------------------------------------------------------------------


def rerank_hits(
    ranker: RequestReranker,
    query: str,
    hits: Iterable[Any],
    depth: int | None = None,
    qid: str = "",
) -> Result:
    """Rerank the hits of ``LuceneSearcher.search()`` (texts from the index's stored raw docs)."""
    from .firststage import candidates_from_hits

    return rerank_top(
        ranker, Request(Query(query, qid), candidates_from_hits(hits)), depth
    )


# -- rank_llm --------------------------------------------------------------------------------------


def as_request(request: Any) -> Request:
    """This package's ``Request`` from any object shaped like rank_llm's (``rank_llm.data.Request``)."""
    try:
        query = Query(str(request.query.text), str(request.query.qid))
        candidates = [
            Candidate(str(c.docid), float(c.score), dict(c.doc))
            for c in request.candidates
        ]
    except (AttributeError, TypeError, ValueError) as error:
        raise TypeError(
            "expected a rank_llm-style Request: .query.text, .query.qid and .candidates with "
            f".docid, .score and .doc (got {type(request).__name__}: {error})"
        ) from None
    return Request(query, candidates)


class RankLLMReranker:
    """rank_llm's reranker interface (``rerank``/``rerank_batch`` with ``rank_start``/``rank_end``).

    A decoding-free ranker needs no prompts, windows or sliding: it implements ``rerank_batch``
    directly. Candidates from ``rank_start`` to ``rank_end`` are reranked; those before keep
    their place above and those after keep theirs below, as in rank_llm.
    """

    def __init__(self, ranker: RequestReranker):
        self.ranker = ranker

    def rerank(
        self, request: Any, rank_start: int = 0, rank_end: int = 100, **_: Any
    ) -> Result:
        ours = as_request(request)
        before = ours.candidates[:rank_start]
        window = rerank_top(
            self.ranker,
            Request(ours.query, ours.candidates[rank_start:]),
            rank_end - rank_start,
        )
        if not before:
            return window
        # Lift the reranked window and what follows it below the untouched top ones.
        lift = (
            min(c.score for c in before) - max(c.score for c in window.candidates) - 1.0
            if window.candidates
            else 0.0
        )
        return Result(
            ours.query,
            before
            + [Candidate(c.docid, c.score + lift, c.doc) for c in window.candidates],
        )

    def rerank_batch(
        self,
        requests: Sequence[Any],
        rank_start: int = 0,
        rank_end: int = 100,
        **kwargs: Any,
    ) -> list[Result]:
        return [self.rerank(r, rank_start, rank_end, **kwargs) for r in requests]


# -- pygaggle --------------------------------------------------------------------------------------


class PygaggleReranker:
    """pygaggle's ``Reranker.rerank(query, texts)``: copies of ``texts`` with ``.score`` set.

    ``query`` is a ``Query``-like object with ``.text`` (or a plain string); each text has
    ``.text``. As in pygaggle, the texts come back in input order: sort them by score.
    """

    def __init__(self, ranker: Any):
        self.ranker = ranker

    def rerank(self, query: Any, texts: Sequence[Any]) -> list[Any]:
        query_text = query if isinstance(query, str) else query.text
        ranked = self.ranker.rerank(query_text, [t.text for t in texts])
        scored = copy.deepcopy(list(texts))
        for passage in ranked:
            scored[passage.index].score = passage.score
        return scored
