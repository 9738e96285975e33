"""The leave-one-collection-out grid: head-selection recipes × fusions with BM25, scored from the
cached features (no model): each held-out set reranked by heads chosen on the others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from headrank_ir.engine.fusion import fuse
from headrank_ir.engine.profile import FusionSettings
from headrank_ir.engine.ranker import first_stage, place
from headrank_ir.evaluation.measures import per_query
from headrank_ir.train.examples import LabelledSet, pooled
from headrank_ir.train.selection import head_quality, select_heads

TOP_K = (4, 8, 16, 32, 64)
ENTROPY_WEIGHTS = (0.05, 0.1, 0.2, 0.4, 0.8)
RECIPES = (
    [{"selection": "none", "top_k": 0, "entropy_weight": 0.0}]  # every head (up to --max-depth): ICR's choice
    + [{"selection": "ndcg", "top_k": k, "entropy_weight": 0.0} for k in TOP_K]
    + [{"selection": "entropy", "top_k": k, "entropy_weight": w} for k in TOP_K for w in ENTROPY_WEIGHTS]
)
FUSIONS = (
    [FusionSettings()]
    + [FusionSettings("interpolate", a) for a in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    + [FusionSettings("rrf", a) for a in (0.3, 0.5, 0.7)]
)
# the ceiling's trained weights: the grid's most heads
CEILING_WEIGHTS_RECIPE = {"selection": "ndcg", "top_k": 64, "entropy_weight": 0.0}


class Selector:
    """Head selection on a group of sets, the per-head quality computed once per group."""

    def __init__(self, sets: dict[str, LabelledSet]):
        self.sets = sets
        self.qualities: dict[frozenset, list] = {}

    def heads(self, train: Sequence[str], recipe: dict) -> tuple[tuple[int, int, float], ...]:
        all_heads = self.sets[train[0]].features.heads
        if recipe["selection"] == "none":  # every head, up to the depth cap where the recipe has one
            cap = recipe.get("max_depth")
            kept = [(layer, head) for layer, head in all_heads if cap is None or layer < cap]
            return tuple((layer, head, 1.0 / len(kept)) for layer, head in kept)
        key = frozenset(train)
        if key not in self.qualities:
            queries, features = pooled([self.sets[n] for n in sorted(train)])
            self.qualities[key] = head_quality(features, queries, "entropy", 0.0)
        weight = recipe["entropy_weight"] if recipe["selection"] == "entropy" else 0.0
        scored = [replace(q, score=q.ndcg - weight * q.entropy) for q in self.qualities[key]]
        cap = recipe.get("max_depth")
        # a depth cap can leave fewer heads than the recipe's k (qwen: 56 in 4 layers): then all of them
        allowed = sum(1 for q in scored if cap is None or q.layer < cap)
        return select_heads(scored, min(recipe["top_k"], allowed), cap)


@dataclass(frozen=True)
class Reranked:
    ndcg: dict[str, float]  # nDCG@10 per query of the reranked top 100
    top: dict[str, list[str]]  # the reranked top ``depth``, best first


def rerank(labelled: LabelledSet, heads, fusion: FusionSettings, depth: int) -> Reranked:
    """The set's BM25 top 100 with the top ``depth`` reranked by ``heads`` and fused, as ``rerank_batch`` does."""
    chosen = [(layer, head) for layer, head, _ in heads]
    weights = [w for _, _, w in heads]
    scores = {q.qid: labelled.features.combined(q.qid, chosen, weights).tolist() for q in labelled.queries}
    return placed(labelled, scores, fusion, depth)


def placed(labelled: LabelledSet, scores: dict[str, list[float]], fusion: FusionSettings, depth: int) -> Reranked:
    """Each query's top ``depth`` ordered by its window ``scores`` fused with BM25, the rest below."""
    run, top = {}, {}
    for q in labelled.queries:
        request = labelled.requests[q.qid]
        window = request.candidates[:depth]
        result = place(request, fuse(fusion, scores[q.qid], *first_stage(window)), 0, depth)
        run[q.qid] = {c.docid: c.score for c in result.candidates}
        top[q.qid] = [c.docid for c in result.candidates[:depth]]
    return Reranked(per_query(run, labelled.qrels, ["nDCG@10"])["nDCG@10"], top)


def bm25(labelled: LabelledSet) -> dict[str, float]:
    run = {q: {c.docid: c.score for c in r.candidates} for q, r in labelled.requests.items() if q in labelled.qrels}
    return per_query(run, labelled.qrels, ["nDCG@10"])["nDCG@10"]


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def loco_scores(selector: Selector, sets: Sequence[str], recipe: dict, depth: int) -> dict[str, dict[str, float]]:
    """For each fusion of the grid: each set's mean nDCG@10 when the heads are chosen on the others."""
    scores: dict[str, dict[str, float]] = {}
    for held_out in sets:
        heads = selector.heads([s for s in sets if s != held_out], recipe)
        for fusion in FUSIONS:
            value = mean(rerank(selector.sets[held_out], heads, fusion, depth).ndcg)
            scores.setdefault(fusion_label(fusion), {})[held_out] = value
    return scores


DEPTHS = (4, 8, 12, 16, 24)


def depth_curve(selector: Selector, sets: Sequence[str], recipe: dict, fusion: FusionSettings, depth: int) -> dict:
    """The shipped recipe with its heads kept to the first L layers (the truncation depth, so the
    cost of a forward): each set's leave-one-out nDCG@10, fused and not."""
    curve = {}
    for layers in DEPTHS:
        scores = loco_scores(selector, sets, {**recipe, "max_depth": layers}, depth)
        curve[layers] = {"fused": scores[fusion_label(fusion)], "unfused": scores["none"]}
    return curve


def loco_table(selector: Selector, sets: Sequence[str], depth: int) -> dict[tuple[int, str], float]:
    """``(recipe index, fusion label)`` → mean over ``sets`` of its leave-one-out nDCG@10."""
    table = {}
    for index, recipe in enumerate(RECIPES):
        for label, by_set in loco_scores(selector, sets, recipe, depth).items():
            table[index, label] = sum(by_set.values()) / len(sets)
    return table


def choose(
    selector: Selector, sets: Sequence[str], depth: int, fused: bool = True
) -> tuple[dict, FusionSettings, float]:
    """The recipe and fusion (``fused`` false: no fusion) with the best leave-one-out mean over ``sets``."""
    table = loco_table(selector, sets, depth)
    fusions = {fusion_label(f): f for f in FUSIONS if fused or f.method == "none"}
    # ties: the first in grid order (fewer heads, no fusion, lower weight)
    index, label = max((key for key in table if key[1] in fusions), key=lambda key: table[key])
    return RECIPES[index], fusions[label], table[index, label]


def fusion_label(fusion: FusionSettings) -> str:
    return "none" if fusion.method == "none" else f"{fusion.method} a={fusion.weight}"


def recipe_label(recipe: dict) -> str:
    if recipe["selection"] == "none":
        return "all heads"
    extra = f", lambda {recipe['entropy_weight']}" if recipe["selection"] == "entropy" else ""
    return f"{recipe['selection']} top-{recipe['top_k']}{extra}"
