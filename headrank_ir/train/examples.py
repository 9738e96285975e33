"""Training data: judged queries with their candidates, the attention every head pays them, and a
set's queries with their features as the research commands read them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from headrank_ir.evaluation.measures import Qrels
from headrank_ir.records import Request

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingQuery:
    """A query and its top first-stage candidates, in first-stage order; grade ``None``: unjudged."""

    qid: str
    text: str
    docids: tuple[str, ...]
    passages: tuple[str, ...]
    grades: tuple[int | None, ...]

    def qrels(self) -> dict[str, int]:
        """The judgements of the candidates only: the ideal ranking is one reranking can reach."""
        return {d: g for d, g in zip(self.docids, self.grades) if g is not None}


def judged_queries(requests: Sequence[Request], qrels: Qrels, depth: int) -> list[TrainingQuery]:
    """Every query with judgements, its top ``depth`` candidates labelled from ``qrels``."""
    if depth < 2:
        raise ValueError(f"the candidate depth must be at least 2, got {depth}")
    queries = []
    for request in requests:
        if request.query.qid not in qrels:
            continue
        grades = qrels[request.query.qid]
        top = request.candidates[:depth]
        queries.append(
            TrainingQuery(
                request.query.qid,
                request.query.text,
                tuple(c.docid for c in top),
                tuple(c.text for c in top),
                tuple(grades.get(c.docid) for c in top),
            )
        )
    return queries


def training_queries(requests: Sequence[Request], qrels: Qrels, depth: int) -> list[TrainingQuery]:
    """The judged queries whose top ``depth`` candidates hold a relevant passage: only they can
    tell good heads from bad ones."""
    queries = [q for q in judged_queries(requests, qrels, depth) if any(g for g in q.grades if g is not None)]
    if not queries:
        raise ValueError(
            f"none of the {len(requests)} queries has a judged relevant passage in its top {depth}; check --qrels"
        )
    logger.info(
        "%d of %d queries have a relevant passage in their top %d",
        len(queries),
        len(requests),
        depth,
    )
    return queries


@dataclass(frozen=True)
class HeadFeatures:
    """Per query, every profiled head's calibrated scores ``(heads, passages)`` and the normalised
    entropy ``(heads,)`` of its uncalibrated attention over the passages (1: spread evenly)."""

    heads: tuple[tuple[int, int], ...]  # (layer, head) of each row
    scores: dict[str, torch.Tensor]
    entropy: dict[str, torch.Tensor]

    def rows(self, heads: Sequence[tuple[int, int]]) -> list[int]:
        index = {h: i for i, h in enumerate(self.heads)}
        missing = [h for h in heads if h not in index]
        if missing:
            raise ValueError(f"heads {missing[:3]} were not profiled; collect features with every head")
        return [index[h] for h in heads]

    def combined(self, qid: str, heads: Sequence[tuple[int, int]], weights: Sequence[float]) -> torch.Tensor:
        """What a profile with these heads and weights scores, without running the model again."""
        return torch.tensor(weights, dtype=torch.float32) @ self.scores[qid][self.rows(heads)]


def attention_entropy(masses: torch.Tensor) -> torch.Tensor:
    """Entropy of each row's attention over the passages, divided by its maximum ``log n``."""
    if masses.shape[-1] < 2:
        raise ValueError("attention entropy needs at least two passages")
    p = masses.clamp_min(1e-12)
    p = p / p.sum(dim=-1, keepdim=True)
    return -(p * p.log()).sum(dim=-1) / torch.log(torch.tensor(float(masses.shape[-1])))


def collect_features(reader, queries: Sequence[TrainingQuery], progress: bool = True) -> HeadFeatures:
    """One forward per query with the ``HeadReader``'s profile (use an all-heads one for selection)."""
    from headrank_ir.progress import progress as progress_bar

    heads = tuple((layer, head) for layer, layer_heads, _ in reader.profile.heads_by_layer() for head in layer_heads)
    scores, entropy = {}, {}
    with torch.inference_mode():
        for query in progress_bar(
            queries,
            desc="head features",
            unit="query",
            disable=not progress,
            dynamic_ncols=True,
        ):
            real, blank = reader.head_masses(query.text, query.passages)
            # features live on the CPU, whatever the model's device: selection reads them there
            scores[query.qid] = (real if blank is None else real - blank).cpu()
            entropy[query.qid] = attention_entropy(real).cpu()
    return HeadFeatures(heads, scores, entropy)


@dataclass(frozen=True)
class LabelledSet:
    """One dataset's labelled queries (a bench ``Dataset``'s judged queries, or pseudo-query lists
    graded by construction) with their first-stage requests, grades and every head's features."""

    name: str
    queries: list[TrainingQuery]
    requests: dict[str, Request]  # by qid; empty for pseudo-query lists, which are never reranked
    qrels: dict[str, dict[str, int]]
    features: HeadFeatures


def pooled(sets: Sequence[LabelledSet]) -> tuple[list[TrainingQuery], HeadFeatures]:
    """Several sets' queries as one training set (query ids prefixed by the set: they overlap)."""
    queries, scores, entropy = [], {}, {}
    for labelled in sets:
        for q in labelled.queries:
            key = f"{labelled.name}:{q.qid}"
            queries.append(replace(q, qid=key))
            scores[key], entropy[key] = labelled.features.scores[q.qid], labelled.features.entropy[q.qid]
    return queries, HeadFeatures(sets[0].features.heads, scores, entropy)
