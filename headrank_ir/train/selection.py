"""Head selection: which heads' calibrated attention ranks the judged candidates well.

For head ``h`` over the training queries ``Q``::

    quality(h) = mean_q nDCG@k(ranking of q's candidates by h's calibrated score)
    entropy(h) = mean_q H(p_hq) / log n,   p_hq(i) = a_hq(i) / sum_j a_hq(j)
    score(h)   = quality(h) - lambda * entropy(h)        (method "entropy")
    score(h)   = quality(h)                                (method "ndcg", QRHead's choice)

where ``a_hq(i)`` is the head's uncalibrated attention mass on passage ``i`` (query tokens
averaged) and ``n`` the number of candidates. A head whose attention is spread evenly over the
passages (entropy near 1) is homogenised: when its ranking looks fine on average, that is from
small differences that do not hold up on new queries. nDCG is computed by ir_measures against
the candidates' own judgements, so every query's ideal ranking is reachable by reranking.
The top ``k`` heads by score are kept with equal weights (QRHead's summation); the alignment
stage learns the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from headrank_ir.evaluation.measures import mean_measures
from headrank_ir.train.examples import HeadFeatures, TrainingQuery

SELECTION_METHODS = ("entropy", "ndcg")
DEFAULT_ENTROPY_WEIGHT = 0.1
DEFAULT_CUTOFF = 10


@dataclass(frozen=True)
class HeadQuality:
    layer: int
    head: int
    ndcg: float  # mean nDCG@cutoff of the head's own ranking
    entropy: float  # mean normalised entropy of its attention over the candidates
    score: float  # what selection sorts by

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def head_ndcg(
    features: HeadFeatures,
    queries: Sequence[TrainingQuery],
    cutoff: int = DEFAULT_CUTOFF,
) -> torch.Tensor:
    """Mean nDCG@cutoff, over ``queries``, of each profiled head's ranking: ``(heads,)``."""
    measure = f"nDCG@{cutoff}"
    qrels = {q.qid: q.qrels() for q in queries}
    values = []
    for row in range(len(features.heads)):
        run = {q.qid: dict(zip(q.docids, features.scores[q.qid][row].tolist())) for q in queries}
        values.append(mean_measures(run, qrels, [measure])[measure])
    return torch.tensor(values)


def head_quality(
    features: HeadFeatures,
    queries: Sequence[TrainingQuery],
    method: str = "entropy",
    entropy_weight: float = DEFAULT_ENTROPY_WEIGHT,
    cutoff: int = DEFAULT_CUTOFF,
) -> list[HeadQuality]:
    """Every profiled head's quality, entropy and selection score, in ``features.heads`` order."""
    if method not in SELECTION_METHODS:
        raise ValueError(f"selection method must be one of {', '.join(SELECTION_METHODS)}, got {method!r}")
    if not queries:
        raise ValueError("head selection needs at least one training query")
    ndcg = head_ndcg(features, queries, cutoff)
    entropy = torch.stack([features.entropy[q.qid] for q in queries]).mean(dim=0)
    score = ndcg - entropy_weight * entropy if method == "entropy" else ndcg
    return [
        HeadQuality(layer, head, float(n), float(e), float(s))
        for (layer, head), n, e, s in zip(features.heads, ndcg, entropy, score)
    ]


def select_heads(
    qualities: Sequence[HeadQuality], k: int, max_depth: int | None = None
) -> tuple[tuple[int, int, float], ...]:
    """The ``k`` best heads by score (ties: shallower layer, then lower head), equal weights.

    ``max_depth`` keeps the choice to layers below it: the truncation depth, and so the cost of
    every forward (and backward, in alignment), is then at most ``max_depth`` layers.
    """
    allowed = [q for q in qualities if max_depth is None or q.layer < max_depth]
    if not 1 <= k <= len(allowed):
        raise ValueError(f"--top-k must be between 1 and the {len(allowed)} heads that selection may choose, got {k}")
    best = sorted(allowed, key=lambda q: (-q.score, q.layer, q.head))[:k]
    return tuple((q.layer, q.head, 1.0 / k) for q in sorted(best, key=lambda q: (q.layer, q.head)))
