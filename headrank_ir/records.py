"""Typed records exchanged between the stages, shaped like the anchors' own.

``Query``/``Candidate``/``Request``/``Result`` mirror rank_llm's data classes (attribute for
attribute, ``invocations_history`` included) but are frozen, as every record here is: results the
engine hands on cannot be changed under it. rank_llm's stages change their records in place, so
rank_llm's own objects are what moves between the packages: ``HeadRanker.rerank_batch`` given
rank_llm's ``Request``/``Result`` returns rank_llm's ``Result`` objects with the qids and docids as
given (``headrank_ir.integrations.rank_llm``; ``to_rank_llm`` converts these records).
``Document``/``ScoredDocument``/``RankedResults`` mirror rerankers' result objects, which
``HeadRanker.rank`` returns for plain texts; given rerankers' ``Document`` objects it returns
rerankers' own (``headrank_ir.integrations.rerankers_results``; ``headrank_ir.rerankers_ranker``
holds a rerankers ``BaseRanker``).

One tie rule everywhere (:func:`best_first`): larger score first, equal scores by docid, as
Pyserini's run writer does; a passage given without an id has its input position as docid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

DocId = Union[str, int]


@dataclass(frozen=True)
class Query:
    text: str
    qid: str = ""


@dataclass(frozen=True)
class Candidate:
    docid: str
    score: float
    doc: Dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The passage text: rank_llm keeps it under ``contents`` (or ``text``/``segment``)."""
        for key in ("contents", "text", "segment", "body"):
            if key in self.doc:
                return self.doc[key]
        raise KeyError(f"candidate {self.docid!r} has no text field (looked for contents/text/segment/body)")


@dataclass(frozen=True)
class Request:
    query: Query
    candidates: List[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class Invocation:
    """One window of a query as the engine read it, in rank_llm's ``invocations_history`` slot:
    where rank_llm logs a prompt and a response, HeadRank logs the per-head scores it read."""

    docids: List[str]  # the window's candidates, in first-stage order
    positions: List[int]  # each one's place in the prompt (0 = shown first)
    head_scores: List[List[float]]  # the profile's heads (``heads_by_layer`` order) × the window's candidates
    forward_passes: int  # truncated forwards: the query's, and the calibration query's unless folded into it


@dataclass(frozen=True)
class Result:
    query: Query
    candidates: List[Candidate] = field(default_factory=list)
    # rank_llm's field; filled when rerank_batch is asked to populate_invocations_history
    invocations_history: List[Invocation] = field(default_factory=list)


def tie_key(docid: DocId) -> tuple:
    """Orders docids of either kind (ints before strings) so that equal scores sort the same way."""
    return (isinstance(docid, str), docid)


def in_given_order(request: Request) -> Result:
    """The request's candidates as its first stage ranked them, rescored ``n … 1`` so that no two
    tie: a run's rounded scores can tie, and trec_eval breaks ties by docid rather than by the
    given rank (DL20's BM25 run, 4 decimals, reads nDCG@10 0.4803 that way, not its published 0.4796).
    Reranked results keep this order below the reranked window too."""
    n = len(request.candidates)
    return Result(request.query, [Candidate(c.docid, float(n - i), c.doc) for i, c in enumerate(request.candidates)])


def best_first(candidates: Sequence[Candidate]) -> List[Candidate]:
    """Larger score first, ties by docid; a non-finite score is an error (it has no place in a run)."""
    for candidate in candidates:
        if not math.isfinite(candidate.score):
            raise ValueError(f"candidate {candidate.docid!r} has a non-finite score {candidate.score!r}")
    return sorted(candidates, key=lambda c: (-c.score, tie_key(c.docid)))


@dataclass(frozen=True)
class Document:
    """rerankers' ``Document``: the text and its id (its input position when none was given)."""

    text: str
    doc_id: DocId
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredDocument:
    """rerankers' ``Result``: one ranked document, ``rank`` from 1, larger ``score`` more relevant."""

    document: Document
    score: float
    rank: int

    @property
    def text(self) -> str:
        return self.document.text

    @property
    def doc_id(self) -> DocId:
        return self.document.doc_id

    @property
    def metadata(self) -> Dict[str, Any]:
        return self.document.metadata


@dataclass(frozen=True)
class RankedResults:
    """rerankers' ``RankedResults``: the documents best first, with rerankers' accessors."""

    results: List[ScoredDocument]
    query: str
    has_scores: bool = True

    def __iter__(self) -> Iterator[ScoredDocument]:
        return iter(self.results)

    def __getitem__(self, index: int) -> ScoredDocument:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def results_count(self) -> int:
        return len(self.results)

    def top_k(self, k: int) -> List[ScoredDocument]:
        return self.results[:k]

    def get_result_by_docid(self, doc_id: DocId) -> Optional[ScoredDocument]:
        return next((r for r in self.results if r.document.doc_id == doc_id), None)

    def get_score_by_docid(self, doc_id: DocId) -> Optional[float]:
        result = self.get_result_by_docid(doc_id)
        return result.score if result else None


def as_request(request: Any) -> Request:
    """Our ``Request`` from any object shaped like rank_llm's (``rank_llm.data.Request``)."""
    if isinstance(request, Request):
        return request
    try:
        query = Query(str(request.query.text), str(request.query.qid))
        candidates = [Candidate(str(c.docid), float(c.score), dict(c.doc)) for c in request.candidates]
    except (AttributeError, TypeError, ValueError) as error:
        raise TypeError(
            "expected a rank_llm-style Request: .query.text, .query.qid and .candidates with "
            f".docid, .score and .doc (got {type(request).__name__}: {error})"
        ) from None
    return Request(query, candidates)


def is_document(doc: Any) -> bool:
    """Document-shaped: ``.text`` and ``.doc_id`` (rerankers' ``Document`` or ``Result``, ours)."""
    return hasattr(doc, "text") and hasattr(doc, "doc_id")


def documents_given(docs: Any, doc_ids: Any = None, metadata: Any = None) -> Tuple[Any, Any, Any]:
    """rerankers' input forms as ``(texts, doc_ids, metadata)``: one text, a list of texts, one
    Document-shaped object (:func:`is_document`) or a list of them. A document's own id and
    metadata are used unless ``doc_ids``/``metadata`` are given; documents without ids get their
    positions (all or none must have one). Anything else comes back as given, for the input checks."""
    if isinstance(docs, str) or is_document(docs):
        docs = [docs]
    if isinstance(docs, (bytes, Mapping)) or not isinstance(docs, Sequence):
        return docs, doc_ids, metadata
    shaped = [is_document(d) for d in docs]
    if not any(shaped):
        return list(docs), doc_ids, metadata
    if not all(shaped):
        raise TypeError("docs mixes Document objects and other values: give all texts or all Documents")
    if doc_ids is None:
        own = [d.doc_id for d in docs]
        if any(i is None for i in own) and not all(i is None for i in own):
            raise ValueError("some Documents have a doc_id and some not: give every one an id, or none")
        doc_ids = list(range(len(docs))) if own and own[0] is None else own
    if metadata is None:
        metadata = [dict(getattr(d, "metadata", None) or {}) for d in docs]
    return [d.text for d in docs], doc_ids, metadata
