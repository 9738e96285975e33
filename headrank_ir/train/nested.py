"""Leave-one-collection-out, nested (``train loco evaluate``): for each held-out set the recipe and
the fusion are chosen by leave-one-out among the other sets and tested on the held-out one,
against BM25 with paired significance; then the recipe chosen on every set, which ``--ship``
writes as the package's profile for the model."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict

from headrank_ir.bench.datasets import get_dataset
from headrank_ir.engine.profile import FusionSettings, HeadProfile, PromptSettings, parse_head_label
from headrank_ir.evaluation.selectivity import selectivity
from headrank_ir.evaluation.significance import compare
from headrank_ir.train import store
from headrank_ir.train.features import all_heads, query_caps, read_set
from headrank_ir.train.grid import (
    FUSIONS,
    RECIPES,
    Selector,
    bm25,
    choose,
    depth_curve,
    fusion_label,
    loco_scores,
    mean,
    recipe_label,
    rerank,
)
from headrank_ir.train.reports import loco_report
from headrank_ir.train.store import report_name

logger = logging.getLogger(__name__)

OLD_PROFILES = {  # the bench's DL20-trained selection-only profiles (their heads, equal weights)
    "old select (DL20)": "headrank-select",
    "old qrhead (DL20)": "qrhead",
}


def old_profiles(args: argparse.Namespace) -> dict[str, tuple[tuple[int, int, float], ...]]:
    """The old profiles' heads, from the bench's cells for the model (none where it has no cells)."""
    heads = {}
    for name, method in OLD_PROFILES.items():
        path = store.ROOT / "runs" / "bench" / args.model / "vaswani.all.d20" / f"{method}.json"
        if path.exists():
            record = json.loads(path.read_text())
            heads[name] = tuple((*parse_head_label(h), 1.0 / len(record["heads"])) for h in record["heads"])
    return heads


def held_out_record(args, selector: Selector, held_out: str, sets: Sequence[str]) -> dict:
    """Recipe and fusion chosen on the other sets (their own leave-one-out), tested on ``held_out``."""
    train = [s for s in sets if s != held_out]
    recipe, fusion, inner = choose(selector, train, args.depth)
    labelled = selector.sets[held_out]
    chosen = selector.heads(train, recipe)
    systems = {
        "all heads": rerank(labelled, selector.heads(train, RECIPES[0]), FusionSettings(), args.depth),
        **{name: rerank(labelled, heads, FusionSettings(), args.depth) for name, heads in old_profiles(args).items()},
        "recipe": rerank(labelled, chosen, FusionSettings(), args.depth),
        "recipe + fusion": rerank(labelled, chosen, fusion, args.depth),
    }
    base = bm25(labelled)
    dataset = get_dataset(held_out)
    first = {q.qid: list(q.docids) for q in labelled.queries}
    settings = PromptSettings(max_passage_tokens=args.passage_tokens)
    rows = {"bm25": {"ndcg": mean(base)}}
    for name, reranked in systems.items():
        shares = selectivity(
            first, reranked.top, labelled.qrels, settings, dataset.relevant_grade, dataset.unjudged_irrelevant
        )
        test = compare(reranked.ndcg, base)
        rows[name] = {"ndcg": mean(reranked.ndcg), "delta": test.mean_difference, "p": test.p_randomisation}
        rows[name].update(gap=shares.gap, wins=test.wins, losses=test.losses)
    return {
        "held_out": held_out,
        "train": train,
        "queries": len(labelled.queries),
        "recipe": recipe,
        "fusion": asdict(fusion),
        "heads": [list(h[:2]) for h in chosen],
        "inner_loco_ndcg": inner,
        "systems": rows,
    }


def shipped_choice(selector: Selector, sets: Sequence[str], depth: int) -> tuple[dict, tuple]:
    """The recipe and fusion chosen by leave-one-out over every set, set by set, and the heads
    they select on all of them: what ``--ship`` writes."""
    recipe, fusion, value = choose(selector, sets, depth)
    unfused = choose(selector, sets, depth, fused=False)
    by_fusion = loco_scores(selector, sets, recipe, depth)
    heads = selector.heads(sets, recipe)
    shipped = {
        "recipe": recipe,
        "fusion": asdict(fusion),
        "loco_ndcg": value,
        "per_set": {
            name: {
                "bm25": mean(bm25(selector.sets[name])),
                "loco": by_fusion[fusion_label(fusion)][name],
                "loco_unfused": by_fusion["none"][name],
                "in_sample": mean(rerank(selector.sets[name], heads, fusion, depth).ndcg),
            }
            for name in sets
        },
        "best_unfused": {"loco_ndcg": unfused[2], "recipe": recipe_label(unfused[0])},
    }
    return shipped, heads


def shipped_profile(args: argparse.Namespace, selector: Selector, shipped: dict, heads) -> HeadProfile:
    return HeadProfile(
        args.model,
        heads,
        PromptSettings(max_passage_tokens=args.passage_tokens),
        fusion=FusionSettings(**shipped["fusion"]),
        meta={
            "method": "headrank-loco",
            "trained_on": {name: len(labelled.queries) for name, labelled in selector.sets.items()},
            "rerank_depth": args.depth,
            "feature_depth": args.max_depth,
            **shipped,
            "made_by": f"python -m headrank_ir.train loco evaluate (see runs/{report_name(args, 'loco')}.md)",
        },
    )


def evaluate(args: argparse.Namespace) -> None:
    sets = list(args.datasets)
    selector = Selector({name: read_set(args, name, all_heads(args, sets)) for name in sets})
    began = time.perf_counter()
    records = [held_out_record(args, selector, name, sets) for name in sets]
    shipped, heads = shipped_choice(selector, sets, args.depth)
    profile = shipped_profile(args, selector, shipped, heads)
    result = {
        "depth_curve": depth_curve(selector, sets, shipped["recipe"], profile.fusion, args.depth),
        "model": args.model,
        "depth": args.depth,
        "passage_tokens": args.passage_tokens,
        "max_queries": query_caps(args),
        "max_depth": args.max_depth,
        "recipes": [recipe_label(r) for r in RECIPES],
        "fusions": [fusion_label(f) for f in FUSIONS],
        "held_out": records,
        "shipped": {**shipped, "heads": [list(h[:2]) for h in profile.heads]},
        "seconds": round(time.perf_counter() - began, 1),
    }
    store.output(report_name(args, "loco"), result, loco_report(result))
    if args.ship:
        profile.save(store.ROOT / "headrank_ir" / "profiles" / f"{args.model}.json")
    logger.info("evaluated in %.0f s", result["seconds"])
