"""Head weights aligned from the cached features (``train loco weights``): no LoRA and no forward,
the alignment objective on the selected heads' weights alone, swept over a grid and nested."""

from __future__ import annotations

import argparse
import itertools
import logging
from collections.abc import Sequence
from dataclasses import asdict

from headrank_ir.engine.profile import FusionSettings, HeadProfile, PromptSettings
from headrank_ir.evaluation.significance import compare
from headrank_ir.train.examples import pooled
from headrank_ir.train.features import all_heads, read_set
from headrank_ir.train.grid import Reranked, Selector, bm25, choose, mean, recipe_label, rerank
from headrank_ir.train.reports import weights_report
from headrank_ir.train.store import output, report_name

logger = logging.getLogger(__name__)

WEIGHT_GRID = {
    "top_k": (None, 32),  # None: the recipe's own heads; 32: its criterion, 32 heads
    "epochs": (1, 5, 20, 50),
    "head_lr": (1e-3, 1e-2, 1e-1),
    "temperature": (0.25, 0.5, 1.0),
}


def weight_settings() -> list[dict | None]:
    """None (equal weights, as selected) and every point of ``WEIGHT_GRID``."""
    keys = list(WEIGHT_GRID)
    return [None] + [dict(zip(keys, values)) for values in itertools.product(*WEIGHT_GRID.values())]


def weight_label(settings: dict | None) -> str:
    if settings is None:
        return "equal (as selected)"
    heads = "recipe's heads" if settings["top_k"] is None else f"top-{settings['top_k']}"
    return f"{heads}, {settings['epochs']} ep, lr {settings['head_lr']}, tau {settings['temperature']}"


class Weigher:
    """A group of sets' selected heads with their weights aligned on the group's judged queries
    (``train.alignment.align_weights``), each (group, recipe, setting) trained once."""

    def __init__(self, args: argparse.Namespace, selector: Selector):
        self.args, self.selector = args, selector
        self.trained: dict[tuple, tuple] = {}

    def heads(self, train: Sequence[str], recipe: dict, settings: dict | None) -> tuple[tuple[int, int, float], ...]:
        from headrank_ir.train.alignment import AlignConfig, align_weights

        if settings is None:
            return self.selector.heads(train, recipe)
        config = {k: v for k, v in settings.items() if k != "top_k"}
        if settings["top_k"] is not None and recipe["selection"] != "none":
            recipe = {**recipe, "top_k": settings["top_k"]}
        heads = self.selector.heads(train, recipe)
        key = (frozenset(train), recipe_label(recipe), weight_label(settings))
        if key not in self.trained:
            queries, features = pooled([self.selector.sets[n] for n in sorted(train)])
            profile = HeadProfile(self.args.model, heads, PromptSettings(max_passage_tokens=self.args.passage_tokens))
            self.trained[key] = align_weights(features, queries, profile, AlignConfig(**config))
        return self.trained[key]

    def score(self, train: Sequence[str], held_out: str, recipe: dict, settings, fusion: FusionSettings) -> Reranked:
        heads = self.heads(train, recipe, settings)
        return rerank(self.selector.sets[held_out], heads, fusion, self.args.depth)


def weight_folds(args: argparse.Namespace) -> None:
    """Per held-out set: the recipe and fusion chosen on the other three (as ``evaluate``), then
    the weight setting chosen by leave-one-out among those three, trained on all three, tested."""
    sets = list(args.datasets)
    selector = Selector({name: read_set(args, name, all_heads(args, sets)) for name in sets})
    weigher = Weigher(args, selector)
    grid = weight_settings()
    folds, sweep = [], {}
    for held_out in sets:
        train = [s for s in sets if s != held_out]
        recipe, fusion, _ = choose(selector, train, args.depth)
        inner = {}
        for index, settings in enumerate(grid):
            values = [weigher.score([t for t in train if t != i], i, recipe, settings, fusion) for i in train]
            inner[index] = sum(mean(v.ndcg) for v in values) / len(values)
        best = max(inner, key=lambda i: (inner[i], -i))  # ties: the earlier (equal weights first)
        base = bm25(selector.sets[held_out])
        rows = {"bm25": {"ndcg": mean(base)}}
        systems = {
            "recipe + fusion": weigher.score(train, held_out, recipe, None, fusion),
            "aligned weights": weigher.score(train, held_out, recipe, grid[best], FusionSettings()),
            "aligned weights + fusion": weigher.score(train, held_out, recipe, grid[best], fusion),
        }
        for name, reranked in systems.items():
            test = compare(reranked.ndcg, base)
            rows[name] = {"ndcg": mean(reranked.ndcg), "delta": test.mean_difference, "p": test.p_randomisation}
        versus = compare(systems["aligned weights + fusion"].ndcg, systems["recipe + fusion"].ndcg)
        rows["aligned weights + fusion"]["vs_equal"] = {"delta": versus.mean_difference, "p": versus.p_randomisation}
        folds.append(
            {
                "held_out": held_out,
                "queries": len(selector.sets[held_out].queries),
                "recipe": recipe,
                "fusion": asdict(fusion),
                "chosen": weight_label(grid[best]),
                "inner": {weight_label(grid[i]): v for i, v in inner.items()},
                "systems": rows,
            }
        )
        for settings in grid:  # the un-nested sweep: this fold's recipe, every setting
            value = mean(weigher.score(train, held_out, recipe, settings, fusion).ndcg)
            sweep.setdefault(weight_label(settings), {})[held_out] = value
        logger.info("%s: %s, %s", held_out, weight_label(grid[best]), {k: round(v["ndcg"], 4) for k, v in rows.items()})
    result = {"model": args.model, "depth": args.depth, "grid": WEIGHT_GRID, "folds": folds, "sweep": sweep}
    output(report_name(args, "loco_weights"), result, weights_report(result))
