"""Selectivity in the middle of the context (the reference paper's homogenisation measure).

Of the passages the prompt showed in the middle half of the context, the share of relevant ones
(grade >= ``relevant_grade``) and of judged-irrelevant ones (grade 0) that the reranker placed
in the top quartile of its list. Counts are pooled over queries; unjudged passages count in
neither share. A reranker that homogenises the middle gives both shares alike: a gap near 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Sequence

from .profile import PromptSettings
from .prompt import display_order


@dataclass(frozen=True)
class Selectivity:
    relevant: float  # share of relevant middle-zone passages in the top quartile
    irrelevant: float  # share of irrelevant middle-zone passages in the top quartile
    relevant_count: int
    irrelevant_count: int

    @property
    def gap(self) -> float:
        return self.relevant - self.irrelevant


def middle_zone(first_stage: Sequence[str], settings: PromptSettings) -> set:
    """Docids that the prompt shows in the middle half of the context."""
    shown = [first_stage[i] for i in display_order(len(first_stage), settings)]
    quarter = len(shown) / 4
    # a position's centre decides, so the zone is symmetric for any list length
    return {docid for position, docid in enumerate(shown) if quarter <= position + 0.5 < 3 * quarter}


def selectivity(
    first_stage: Mapping[str, Sequence[str]],
    reranked: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Dict[str, int]],
    settings: PromptSettings = PromptSettings(),
    relevant_grade: int = 2,
) -> Selectivity:
    """``first_stage``/``reranked``: per qid, the reranked docids in first-stage / new order."""
    hits = {"rel": 0, "irr": 0}
    counts = {"rel": 0, "irr": 0}
    for qid, docids in reranked.items():
        middle = middle_zone(first_stage[qid], settings)
        top = set(docids[: max(1, len(docids) // 4)])
        grades = qrels.get(qid, {})
        for docid in middle:
            grade = grades.get(docid)
            kind = "rel" if grade is not None and grade >= relevant_grade else "irr" if grade == 0 else None
            if kind:
                counts[kind] += 1
                hits[kind] += docid in top
    share = {k: hits[k] / counts[k] if counts[k] else 0.0 for k in hits}
    return Selectivity(share["rel"], share["irr"], counts["rel"], counts["irr"])
