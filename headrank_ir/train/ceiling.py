"""The grid's ceiling (``train loco ceiling``): per set, the best entry of the selection-and-fusion
grid chosen on that set's own judgements, the optimistic reference of the nested figures."""

from __future__ import annotations

import argparse
import logging
import time

from headrank_ir.train.features import all_heads, query_caps, read_set
from headrank_ir.train.grid import (
    CEILING_WEIGHTS_RECIPE,
    FUSIONS,
    RECIPES,
    Selector,
    bm25,
    fusion_label,
    mean,
    recipe_label,
    rerank,
)
from headrank_ir.train.reports import ceiling_report
from headrank_ir.train.store import output, report_name
from headrank_ir.train.weights import Weigher, weight_label, weight_settings

logger = logging.getLogger(__name__)


def in_sample_grid(selector: Selector, name: str, depth: int) -> dict[tuple[str, str], float]:
    """``(recipe label, fusion label)`` → set ``name``'s mean nDCG@10, the heads selected on ``name`` itself."""
    grid = {}
    for recipe in RECIPES:
        heads = selector.heads([name], recipe)
        for fusion in FUSIONS:
            grid[recipe_label(recipe), fusion_label(fusion)] = mean(
                rerank(selector.sets[name], heads, fusion, depth).ndcg
            )
    return grid


def grid_best(grid: dict[tuple[str, str], float], fused: bool, base: float) -> dict:
    """The best entry (``fused`` false: of those without fusion; ties: the first in grid order)."""
    entry = max((key for key in grid if fused or key[1] == "none"), key=lambda key: grid[key])
    return {"entry": ", ".join(entry), "ndcg": grid[entry], "delta": grid[entry] - base}


def in_sample_weights(args: argparse.Namespace, selector: Selector, name: str) -> dict[tuple[str, str], float] | None:
    """``(weight setting, fusion label)`` → set ``name``'s mean nDCG@10 with its 64 best heads by nDCG,
    their weights trained on its own judged queries (each setting of the weights grid on the
    recipe's heads); None where no query has two candidates one grade apart to train on."""
    from headrank_ir.train.pairs import adjacent_pairs

    if not any(adjacent_pairs(q.grades) for q in selector.sets[name].queries):
        return None
    weigher = Weigher(args, selector)
    settings = [s for s in weight_settings()[1:] if s["top_k"] is None]  # [0]: equal weights, in the grid already
    return {
        (weight_label(s), fusion_label(fusion)): mean(
            weigher.score([name], name, CEILING_WEIGHTS_RECIPE, s, fusion).ndcg
        )
        for s in settings
        for fusion in FUSIONS
    }


def ceiling(args: argparse.Namespace) -> None:
    """Per set, the best the selection-and-fusion grid reaches when it may look at that set's own
    judgements, which the nested figures never see: their optimistic reference (not a strict bound:
    heads selected on other sets are not among its entries)."""
    sets = list(args.datasets)
    selector = Selector({name: read_set(args, name, all_heads(args, sets)) for name in sets})
    began = time.perf_counter()
    records = []
    for name in sets:
        base = mean(bm25(selector.sets[name]))
        record = {"set": name, "queries": len(selector.sets[name].queries), "bm25": base}
        grid = in_sample_grid(selector, name, args.depth)
        record.update(unfused=grid_best(grid, False, base), fused=grid_best(grid, True, base))
        if args.trained_weights:
            weighted = in_sample_weights(args, selector, name)
            record["trained_weights"] = grid_best(weighted, True, base) if weighted else None
        logger.info("%s: %s", name, record)
        records.append(record)
    result = {
        "model": args.model,
        "depth": args.depth,
        "passage_tokens": args.passage_tokens,
        "max_queries": query_caps(args),
        "max_depth": args.max_depth,
        "trained_weights": args.trained_weights,
        "sets": records,
        "seconds": round(time.perf_counter() - began, 1),
    }
    output(report_name(args, "loco_ceiling"), result, ceiling_report(result))
