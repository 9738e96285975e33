"""Selectivity in the middle of the context (the reference paper's homogenisation measure).

Of the passages the prompt showed in the middle half of the context, the share of relevant ones
(grade >= ``relevant_grade``) and of irrelevant ones (grade 0) that the reranker placed in the
top quartile of its list. Counts are pooled over queries. Unjudged passages count in neither
share, unless the qrels list relevant passages only (Cranfield, Vaswani): there they are the
irrelevant ones, as trec_eval treats them. A share with no passages to count is NaN. A reranker
that homogenises the middle gives both shares alike: a gap near 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

from headrank_ir.engine.profile import PromptSettings
from headrank_ir.engine.prompt import display_order


@dataclass(frozen=True)
class Selectivity:
    relevant: float  # share of relevant middle-zone passages in the top quartile
    irrelevant: float  # share of irrelevant middle-zone passages in the top quartile
    relevant_count: int
    irrelevant_count: int

    @property
    def gap(self) -> float:
        return self.relevant - self.irrelevant


def relevance_kind(grade: Optional[int], relevant_grade: int, unjudged_irrelevant: bool = False) -> Optional[str]:
    """``"relevant"``, ``"irrelevant"`` or None (in neither share) for a passage's qrels grade."""
    if grade is None:
        return "irrelevant" if unjudged_irrelevant else None
    if grade >= relevant_grade:
        return "relevant"
    return "irrelevant" if grade == 0 else None  # e.g. Cranfield's 1, "minimal interest": neither


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
    unjudged_irrelevant: bool = False,
) -> Selectivity:
    """``first_stage``/``reranked``: per qid, the reranked docids in first-stage / new order."""
    hits = {"relevant": 0, "irrelevant": 0}
    counts = {"relevant": 0, "irrelevant": 0}
    for qid, docids in reranked.items():
        middle = middle_zone(first_stage[qid], settings)
        top = set(docids[: max(1, len(docids) // 4)])
        grades = qrels.get(qid, {})
        for docid in middle:
            kind = relevance_kind(grades.get(docid), relevant_grade, unjudged_irrelevant)
            if kind:
                counts[kind] += 1
                hits[kind] += docid in top
    share = {k: hits[k] / counts[k] if counts[k] else math.nan for k in hits}
    return Selectivity(share["relevant"], share["irrelevant"], counts["relevant"], counts["irrelevant"])
