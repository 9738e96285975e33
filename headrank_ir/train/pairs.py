"""Preference pairs between candidates whose grades differ by exactly one level (3>2, 2>1, 1>0).

Adjacent levels are the distinctions a reranker gets wrong; a 3-vs-0 pair is easy and teaches
little. Among them, hard pairs come first: ones the current scorer orders wrongly or nearly ties
(margin below ``hard_margin`` in standardised score units), then pairs with more passages in the
middle of the context, where attention homogenises, then smaller margins.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    better: int  # candidate index of the higher-graded passage
    worse: int
    hard: bool  # misordered or within the margin under the current scorer
    middle: int  # how many of the two passages sit in the middle half of the context (0-2)


def adjacent_pairs(grades: Sequence[int | None]) -> list[tuple[int, int]]:
    """Every ``(better, worse)`` index pair of judged candidates whose grades differ by exactly 1."""
    return [
        (i, j)
        for i, gi in enumerate(grades)
        for j, gj in enumerate(grades)
        if gi is not None and gj is not None and gi - gj == 1
    ]


def choose_pairs(
    grades: Sequence[int | None],
    scores: Sequence[float],
    middle: AbstractSet[int],
    max_pairs: int,
    hard_margin: float,
) -> list[Pair]:
    """Up to ``max_pairs`` adjacent-level pairs, hardest first (see the module docstring)."""
    if len(scores) != len(grades):
        raise ValueError(f"{len(scores)} scores for {len(grades)} graded candidates")
    pairs = [
        Pair(i, j, scores[i] - scores[j] < hard_margin, (i in middle) + (j in middle))
        for i, j in adjacent_pairs(grades)
    ]
    pairs.sort(
        key=lambda p: (
            not p.hard,
            -p.middle,
            scores[p.better] - scores[p.worse],
            p.better,
            p.worse,
        )
    )
    return pairs[:max_pairs]
