"""Typed records exchanged between the stages, shaped like rank_llm's data classes.

``Query``/``Candidate``/``Request``/``Result`` mirror rank_llm so that results move between
the two packages without conversion; ``RankedPassage`` is what ``HeadRanker.rerank`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


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
class Result:
    query: Query
    candidates: List[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class RankedPassage:
    """One passage of a reranked list.

    ``index`` is its position in the input list; ``rank`` starts at 1; ``score`` is the
    profile-weighted, calibrated attention mass (larger is more relevant).
    """

    rank: int
    index: int
    score: float
    text: str
    docid: Optional[str] = None
