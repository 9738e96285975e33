"""This package's ranked results as rerankers' own ``RankedResults``: what ``HeadRanker.rank``
returns when given rerankers' ``Document`` objects, and what ``HeadRankRanker`` always returns.
Imports rerankers, nothing of the engine (the engine imports this, lazily, not the other way).
"""

from __future__ import annotations

try:
    from rerankers.documents import Document
    from rerankers.results import RankedResults, Result
except ImportError as error:  # only a missing rerankers is caught: its own bugs stay visible
    raise ImportError(f"rerankers is not installed ({error}): pip install rerankers==0.10.0") from error

from headrank_ir import records


def to_rerankers(ranked: records.RankedResults) -> RankedResults:
    """This package's ``RankedResults`` as rerankers' own: new ``Document`` objects (the caller's
    are not changed), each ``Result`` with its score and rank, ``has_scores`` true."""
    results = [
        Result(Document(r.text, doc_id=r.doc_id, metadata=dict(r.metadata)), score=r.score, rank=r.rank)
        for r in ranked.results
    ]
    return RankedResults(results=results, query=ranked.query, has_scores=True)
