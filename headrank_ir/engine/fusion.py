"""Fusion of the reranker's scores with the first stage's, over the reranked window.

With ``a = fusion.weight``, per query over the reranked candidates::

    interpolate:  a * norm(reranker) + (1 - a) * norm(first stage)
    rrf:          a / (k + rank by reranker) + (1 - a) / (k + first-stage rank)

``norm`` is the z-score (population standard deviation; a constant list gives zeros) or min-max
(a constant list gives ones, as ``pyserini.fusion.normalize``). Ranks count from 1: the
reranker's by ``(-score, docid)`` as the run writer breaks ties, the first stage's by the given
order. At ``a = 0.5`` RRF ranks as ``pyserini.fusion.reciprocal_rank_fusion`` (tested); the
arithmetic is ours because pyserini's fusion works on whole ``TrecRun`` pandas tables (a deep
copy per call), interpolates raw scores only (reranker and BM25 scores are on unrelated scales)
and has no z-score and no weighted RRF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from headrank_ir.engine.profile import FusionSettings
from headrank_ir.records import tie_key


def fuse(
    settings: FusionSettings,
    reranker: Sequence[float],
    first_stage: Sequence[float | None],
    docids: Sequence[str],
) -> list[float]:
    """The fused score of each candidate (first-stage order in, same order out)."""
    if len(reranker) != len(first_stage) or len(reranker) != len(docids):
        raise ValueError(f"{len(reranker)} reranker and {len(first_stage)} first-stage scores for {len(docids)} docids")
    if settings.method == "none" or not reranker:
        return list(reranker)
    a = settings.weight
    if settings.method == "rrf":
        k = settings.rrf_k
        ranks = reranker_ranks(reranker, docids)
        return [a / (k + ranks[i]) + (1 - a) / (k + i + 1) for i in range(len(reranker))]
    check_first_stage(first_stage, docids)
    norm = NORMALISERS[settings.normalise]
    return [a * r + (1 - a) * f for r, f in zip(norm(reranker), norm(first_stage))]


def reranker_ranks(scores: Sequence[float], docids: Sequence[str]) -> list[int]:
    """Each candidate's rank (from 1) by ``(-score, docid)``."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], tie_key(docids[i])))
    ranks = [0] * len(scores)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def zscore(values: Sequence[float]) -> list[float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / spread if spread > 0 else 0.0 for v in values]


def minmax(values: Sequence[float]) -> list[float]:
    low, high = min(values), max(values)
    return [(v - low) / (high - low) if high > low else 1.0 for v in values]


NORMALISERS = {"zscore": zscore, "minmax": minmax}


def check_first_stage(scores: Sequence[float | None], docids: Sequence[str]) -> None:
    """Interpolation needs a finite first-stage score for every candidate."""
    for score, docid in zip(scores, docids):
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(
                f"fusion 'interpolate' needs the first-stage score of every candidate, got {score!r} for docid "
                f"{docid!r}; give the candidates their first-stage scores or use a profile with fusion 'rrf' or 'none'"
            )
