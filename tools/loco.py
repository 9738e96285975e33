"""Leave-one-collection-out: choose the recipe and the fusion on three sets, test on the fourth.

    .venv/bin/python tools/loco.py features            # every head's reading, cached per query
    .venv/bin/python tools/loco.py evaluate            # runs/loco.<model>.md and .json
    .venv/bin/python tools/loco.py align               # runs/loco_align.<model>.q<N>.md and .json
    .venv/bin/python tools/loco.py weights             # runs/loco_weights.<model>.md and .json
    .venv/bin/python tools/loco.py ceiling             # runs/loco_ceiling.<model>.md and .json

``features`` reads every head (up to ``--max-depth`` layers) on the BM25 top ``--depth`` of
every judged query of DL19, DL20, Cranfield and Vaswani whose top ``--depth`` holds a relevant
passage (the others score nDCG@10 0 whatever the reranking), one forward per query, cached one
file per query under ``.cache/loco/`` so that an interrupted pass resumes where it stopped.
``evaluate`` then needs no model: for each held-out set, head selection (entropy-regularised or
by nDCG, ``--top-k`` heads) and the fusion (method and weight) are chosen on the other three
sets' queries, and tested on the held-out one, against BM25 with paired significance.
``ceiling`` is their optimistic reference: the same grid chosen on each set's own judgements.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headrank_ir.atomic import write_atomic, write_atomic_with  # noqa: E402
from headrank_ir.bench.datasets import BUILT_IN, get_dataset, load, prepare  # noqa: E402
from headrank_ir.engine.fusion import fuse  # noqa: E402
from headrank_ir.engine.profile import FusionSettings, HeadProfile, PromptSettings, parse_head_label  # noqa: E402
from headrank_ir.engine.ranker import first_stage, place  # noqa: E402
from headrank_ir.evaluation.measures import per_query  # noqa: E402
from headrank_ir.evaluation.selectivity import selectivity  # noqa: E402
from headrank_ir.evaluation.significance import compare  # noqa: E402
from headrank_ir.records import Request  # noqa: E402
from headrank_ir.train.examples import HeadFeatures, TrainingQuery, attention_entropy, training_queries  # noqa: E402
from headrank_ir.train.selection import head_quality, select_heads  # noqa: E402

logger = logging.getLogger("loco")

CACHE = ROOT / ".cache" / "loco"
DATA = Path(os.environ.get("HEADRANK_DATA", ROOT.parent / "shared" / "data"))
PASSAGE_TOKENS = 64


def output(stem: str, result: dict, markdown: str) -> None:
    """``runs/STEM.json`` and ``runs/STEM.md``."""
    write_atomic(ROOT / "runs" / f"{stem}.json", json.dumps(result, indent=1))
    write_atomic(ROOT / "runs" / f"{stem}.md", markdown)
    logger.info("wrote runs/%s.md and runs/%s.json", stem, stem)


def report_name(args: argparse.Namespace, kind: str) -> str:
    """``<kind>.<model>``, with ``.tok<N>`` when passages are not cut at the default 64 tokens: one
    report per passage length, the committed 64-token reports keeping their names."""
    length = [] if args.passage_tokens == PASSAGE_TOKENS else [f"tok{args.passage_tokens}"]
    return ".".join([f"{kind}.{args.model}", *length])


def feature_folder(args: argparse.Namespace, dataset: str) -> Path:
    return CACHE / f"{args.model}.{dataset}.top{args.depth}.tok{args.passage_tokens}.d{args.max_depth}"


def dataset_queries(name: str, depth: int, max_queries: int | None):
    """The first ``max_queries`` judged queries of ``name`` (in the bench's query order) that have
    a relevant passage in their BM25 top ``depth``, and the loaded requests and qrels."""
    collection = prepare(get_dataset(name), DATA, ROOT / "runs" / "bench", ROOT / ".cache" / "bench")
    loaded = load(collection)
    return training_queries(loaded.requests, loaded.qrels, depth)[:max_queries], loaded


def query_caps(args: argparse.Namespace) -> dict[str, int]:
    return {name: int(count) for name, count in (pair.split("=") for pair in args.max_queries)}


def feature_ranker(args: argparse.Namespace):
    """A ranker reading every head of the first ``--max-depth`` layers, prompts as ``--passage-tokens`` says."""
    from headrank_ir.engine.models import load_model
    from headrank_ir.engine.ranker import HeadRanker

    model, tokenizer = load_model(args.model)
    config = model.config.get_text_config()
    prompt = PromptSettings(max_passage_tokens=args.passage_tokens)
    profile = HeadProfile.icr(args.model, args.max_depth, config.num_attention_heads, **asdict(prompt))
    return HeadRanker(model, tokenizer, profile, name=args.model)


def store_features(ranker, folder: Path, query: TrainingQuery) -> None:
    """One forward: every head's calibrated scores and attention entropy, written atomically."""
    began = time.perf_counter()
    with torch.inference_mode():
        real, blank = ranker.head_masses(query.text, query.passages)
    stored = {"scores": real - blank, "entropy": attention_entropy(real)}
    write_atomic_with(folder / f"{query.qid}.pt", lambda handle: torch.save(stored, handle))
    logger.info("%s %s %.1f s", folder.name, query.qid, time.perf_counter() - began)


def collect_sets(args: argparse.Namespace, sets: dict[str, list[TrainingQuery]]) -> None:
    """Features for every query of every set not read yet (resumable), one file per query; the
    sets in turn, so that a pass stopped early leaves every set with some queries."""
    todo = {}
    for name, queries in sets.items():
        feature_folder(args, name).mkdir(parents=True, exist_ok=True)
        todo[name] = [q for q in queries if not (feature_folder(args, name) / f"{q.qid}.pt").exists()]
        logger.info("%s: %d queries, %d to read", name, len(queries), len(todo[name]))
    if not any(todo.values()):
        return
    ranker = feature_ranker(args)
    for turn in itertools.zip_longest(*([(name, q) for q in queries] for name, queries in todo.items())):
        for name, query in filter(None, turn):
            store_features(ranker, feature_folder(args, name), query)


def collect(args: argparse.Namespace) -> None:
    """Every head's calibrated scores and attention entropy on every evaluated query."""
    caps = query_caps(args)
    collect_sets(args, {name: dataset_queries(name, args.depth, caps.get(name))[0] for name in args.datasets})


# -- evaluation: everything from the cached readings, no model ------------------------------------

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


@dataclass(frozen=True)
class Collection:
    """One set's evaluated queries (those with a relevant passage in the top ``depth``)."""

    name: str
    queries: list[TrainingQuery]
    requests: dict[str, Request]
    qrels: dict[str, dict[str, int]]  # of the evaluated queries
    features: HeadFeatures


def cached_features(folder: Path, queries: Sequence[TrainingQuery], heads) -> tuple[list, HeadFeatures]:
    """The queries whose features are cached in ``folder`` (a pass still running: what is read), and those."""
    queries = [q for q in queries if (folder / f"{q.qid}.pt").exists()]
    stored = {q.qid: torch.load(folder / f"{q.qid}.pt", weights_only=True) for q in queries}
    scores = {q: s["scores"] for q, s in stored.items()}
    return queries, HeadFeatures(heads, scores, {q: s["entropy"] for q, s in stored.items()})


def read_collection(args: argparse.Namespace, name: str, heads) -> Collection:
    queries, loaded = dataset_queries(name, args.depth, query_caps(args).get(name))
    queries, features = cached_features(feature_folder(args, name), queries, heads)
    requests = {r.query.qid: r for r in loaded.requests}
    return Collection(name, queries, requests, {q.qid: loaded.qrels[q.qid] for q in queries}, features)


def pooled(collections: Sequence[Collection]) -> tuple[list[TrainingQuery], HeadFeatures]:
    """Several sets' queries as one training set (query ids prefixed by the set: they overlap)."""
    queries, scores, entropy = [], {}, {}
    for c in collections:
        for q in c.queries:
            key = f"{c.name}:{q.qid}"
            queries.append(replace(q, qid=key))
            scores[key], entropy[key] = c.features.scores[q.qid], c.features.entropy[q.qid]
    return queries, HeadFeatures(collections[0].features.heads, scores, entropy)


class Selector:
    """Head selection on a group of sets, the per-head quality computed once per group."""

    def __init__(self, collections: dict[str, Collection]):
        self.collections = collections
        self.qualities: dict[frozenset, list] = {}

    def heads(self, train: Sequence[str], recipe: dict) -> tuple[tuple[int, int, float], ...]:
        all_heads = self.collections[train[0]].features.heads
        if recipe["selection"] == "none":  # every head, up to the depth cap where the recipe has one
            cap = recipe.get("max_depth")
            kept = [(layer, head) for layer, head in all_heads if cap is None or layer < cap]
            return tuple((layer, head, 1.0 / len(kept)) for layer, head in kept)
        key = frozenset(train)
        if key not in self.qualities:
            queries, features = pooled([self.collections[n] for n in sorted(train)])
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


def rerank(collection: Collection, heads, fusion: FusionSettings, depth: int) -> Reranked:
    """The set's BM25 top 100 with the top ``depth`` reranked by ``heads`` and fused, as ``rerank_batch`` does."""
    chosen = [(layer, head) for layer, head, _ in heads]
    weights = [w for _, _, w in heads]
    scores = {q.qid: collection.features.combined(q.qid, chosen, weights).tolist() for q in collection.queries}
    return placed(collection, scores, fusion, depth)


def placed(collection: Collection, scores: dict[str, list[float]], fusion: FusionSettings, depth: int) -> Reranked:
    """Each query's top ``depth`` ordered by its window ``scores`` fused with BM25, the rest below."""
    run, top = {}, {}
    for q in collection.queries:
        request = collection.requests[q.qid]
        window = request.candidates[:depth]
        result = place(request, fuse(fusion, scores[q.qid], *first_stage(window)), 0, depth)
        run[q.qid] = {c.docid: c.score for c in result.candidates}
        top[q.qid] = [c.docid for c in result.candidates[:depth]]
    return Reranked(per_query(run, collection.qrels, ["nDCG@10"])["nDCG@10"], top)


def bm25(collection: Collection) -> dict[str, float]:
    run = {q: {c.docid: c.score for c in r.candidates} for q, r in collection.requests.items() if q in collection.qrels}
    return per_query(run, collection.qrels, ["nDCG@10"])["nDCG@10"]


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def loco_scores(selector: Selector, sets: Sequence[str], recipe: dict, depth: int) -> dict[str, dict[str, float]]:
    """For each fusion of the grid: each set's mean nDCG@10 when the heads are chosen on the others."""
    scores: dict[str, dict[str, float]] = {}
    for held_out in sets:
        heads = selector.heads([s for s in sets if s != held_out], recipe)
        for fusion in FUSIONS:
            value = mean(rerank(selector.collections[held_out], heads, fusion, depth).ndcg)
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


OLD_PROFILES = {  # the bench's DL20-trained selection-only profiles (their heads, equal weights)
    "old select (DL20)": "headrank-select",
    "old qrhead (DL20)": "qrhead",
}


def old_profiles(args: argparse.Namespace) -> dict[str, tuple[tuple[int, int, float], ...]]:
    """The old profiles' heads, from the bench's cells for the model (none where it has no cells)."""
    heads = {}
    for name, method in OLD_PROFILES.items():
        path = ROOT / "runs" / "bench" / args.model / "vaswani.all.d20" / f"{method}.json"
        if path.exists():
            record = json.loads(path.read_text())
            heads[name] = tuple((*parse_head_label(h), 1.0 / len(record["heads"])) for h in record["heads"])
    return heads


def held_out_record(args, selector: Selector, held_out: str, sets: Sequence[str]) -> dict:
    """Recipe and fusion chosen on the other sets (their own leave-one-out), tested on ``held_out``."""
    train = [s for s in sets if s != held_out]
    recipe, fusion, inner = choose(selector, train, args.depth)
    collection = selector.collections[held_out]
    chosen = selector.heads(train, recipe)
    systems = {
        "all heads": rerank(collection, selector.heads(train, RECIPES[0]), FusionSettings(), args.depth),
        **{name: rerank(collection, heads, FusionSettings(), args.depth) for name, heads in old_profiles(args).items()},
        "recipe": rerank(collection, chosen, FusionSettings(), args.depth),
        "recipe + fusion": rerank(collection, chosen, fusion, args.depth),
    }
    base = bm25(collection)
    dataset = get_dataset(held_out)
    first = {q.qid: list(q.docids) for q in collection.queries}
    settings = PromptSettings(max_passage_tokens=args.passage_tokens)
    rows = {"bm25": {"ndcg": mean(base)}}
    for name, reranked in systems.items():
        shares = selectivity(
            first, reranked.top, collection.qrels, settings, dataset.relevant_grade, dataset.unjudged_irrelevant
        )
        test = compare(reranked.ndcg, base)
        rows[name] = {"ndcg": mean(reranked.ndcg), "delta": test.mean_difference, "p": test.p_randomisation}
        rows[name].update(gap=shares.gap, wins=test.wins, losses=test.losses)
    return {
        "held_out": held_out,
        "train": train,
        "queries": len(collection.queries),
        "recipe": recipe,
        "fusion": asdict(fusion),
        "heads": [list(h[:2]) for h in chosen],
        "inner_loco_ndcg": inner,
        "systems": rows,
    }


def evaluate(args: argparse.Namespace) -> None:
    sets = list(args.datasets)
    selector = Selector({name: read_collection(args, name, all_heads(args, sets)) for name in sets})
    began = time.perf_counter()
    records = [held_out_record(args, selector, name, sets) for name in sets]
    recipe, fusion, value = choose(selector, sets, args.depth)
    unfused = choose(selector, sets, args.depth, fused=False)
    by_fusion = loco_scores(selector, sets, recipe, args.depth)
    heads_all = selector.heads(sets, recipe)
    shipped = {
        "recipe": recipe,
        "fusion": asdict(fusion),
        "loco_ndcg": value,
        "per_set": {
            name: {
                "bm25": mean(bm25(selector.collections[name])),
                "loco": by_fusion[fusion_label(fusion)][name],
                "loco_unfused": by_fusion["none"][name],
                "in_sample": mean(rerank(selector.collections[name], heads_all, fusion, args.depth).ndcg),
            }
            for name in sets
        },
        "best_unfused": {"loco_ndcg": unfused[2], "recipe": recipe_label(unfused[0])},
    }
    profile = HeadProfile(
        args.model,
        heads_all,
        PromptSettings(max_passage_tokens=args.passage_tokens),
        fusion=fusion,
        meta={
            "method": "headrank-loco",
            "trained_on": {name: len(selector.collections[name].queries) for name in sets},
            "rerank_depth": args.depth,
            "feature_depth": args.max_depth,
            **shipped,
            "made_by": f"tools/loco.py evaluate (see runs/{report_name(args, 'loco')}.md)",
        },
    )
    result = {
        "depth_curve": depth_curve(selector, sets, recipe, fusion, args.depth),
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
    output(report_name(args, "loco"), result, report(result))
    if args.ship:
        profile.save(ROOT / "headrank_ir" / "profiles" / f"{args.model}.json")
    logger.info("evaluated in %.0f s", result["seconds"])


def table_head(columns: Sequence[str]) -> list[str]:
    """A Markdown table's header and rule."""
    return ["| " + " | ".join(columns) + " |", "| --- " * len(columns) + "|"]


def report_head(title: str, paragraph: str, columns: Sequence[str]) -> list[str]:
    """A result's Markdown title, what it measured, and its table's header."""
    return [f"# {title}", "", paragraph, "", *table_head(columns)]


def measured(row: dict) -> str:
    """A system's cell: nDCG@10 (Δ against BM25, p)."""
    return f"{row['ndcg']:.4f} ({row['delta']:+.4f}, p {row['p']:.3f})"


def fold_means(folds: Sequence[dict], names: Sequence[str]) -> str:
    """The line of each system's mean nDCG@10 over the held-out sets."""
    means = {n: mean({f["held_out"]: f["systems"][n]["ndcg"] for f in folds}) for n in names}
    return "Mean over the held-out sets: " + ", ".join(f"{n} {v:.4f}" for n, v in means.items()) + "."


def capped_sets(result: dict) -> str:
    caps = result.get("max_queries") or {}
    if not caps:
        return "every such query"
    return "every such query, except " + ", ".join(f"{name}: the first {count}" for name, count in caps.items())


def report(result: dict) -> str:
    systems = list(result["held_out"][0]["systems"])  # bm25 first; the old profiles where the model has them
    lines = report_head(
        f"Leave-one-collection-out, {result['model']}",
        (
            f"BM25 top {result['depth']} reranked (rest in BM25 order), passages cut to {result['passage_tokens']} "
            f"tokens, heads from the first {result['max_depth']} layers. For each held-out set the recipe (head "
            "selection) and the fusion with BM25 are chosen by leave-one-out among the other three sets and trained "
            "on all three; the held-out set is never seen. nDCG@10 over the held-out set's evaluated queries "
            f"(those with a relevant passage in the BM25 top {result['depth']}; {capped_sets(result)}). "
            "Δ and p (paired randomisation, 10,000 resamples): against BM25 on the same queries. "
            "The old profiles (where the bench has them for the model) are its DL20-selected ones (in-sample on DL20)."
        ),
        ["held out", "queries", "chosen recipe", "chosen fusion", *systems],
    )
    for record in result["held_out"]:
        cells = [record["held_out"], str(record["queries"]), recipe_label(record["recipe"])]
        cells.append(fusion_label(FusionSettings(**record["fusion"])))
        for name in systems:
            row = record["systems"][name]
            cells.append(f"{row['ndcg']:.4f}" if name == "bm25" else measured(row))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Selectivity gap (middle zone, relevant share minus irrelevant share in the top quartile):", ""]
    lines += table_head(["held out", *systems[1:]])
    for record in result["held_out"]:
        gaps = [f"{record['systems'][n]['gap']:+.3f}" for n in systems[1:]]
        lines.append(f"| {record['held_out']} | " + " | ".join(gaps) + " |")
    shipped = result["shipped"]
    lines += [
        "",
        f"Shipped profile (all four sets): {recipe_label(shipped['recipe'])}, fusion "
        f"{fusion_label(FusionSettings(**shipped['fusion']))}; its leave-one-out mean nDCG@10 over the four sets "
        f"{shipped['loco_ndcg']:.4f}, the best unfused recipe ({shipped['best_unfused']['recipe']}) "
        f"{shipped['best_unfused']['loco_ndcg']:.4f}.",
        "",
        "The shipped recipe set by set (the same recipe and fusion throughout, not chosen per fold): trained on "
        "the other three (leave-one-out, fused and not) and trained on all four (in-sample):",
        "",
        "| set | bm25 | leave-one-out, fused | leave-one-out, unfused | in-sample, fused |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {name} | {row['bm25']:.4f} | {row['loco']:.4f} ({row['loco'] - row['bm25']:+.4f}) | "
            f"{row['loco_unfused']:.4f} ({row['loco_unfused'] - row['bm25']:+.4f}) | "
            f"{row['in_sample']:.4f} ({row['in_sample'] - row['bm25']:+.4f}) |"
            for name, row in shipped["per_set"].items()
        ],
        "",
        "Depth: the shipped recipe with its heads kept to the first L layers (a forward runs L layers), "
        "leave-one-out nDCG@10, fused / unfused:",
        "",
        *table_head(["layers", *shipped["per_set"], "mean"]),
        *[
            f"| {layers} | "
            + " | ".join(f"{row['fused'][n]:.4f} / {row['unfused'][n]:.4f}" for n in shipped["per_set"])
            + f" | {mean(row['fused']):.4f} / {mean(row['unfused']):.4f} |"
            for layers, row in result["depth_curve"].items()
        ],
        "",
        f"Grid: recipes {', '.join(result['recipes'])}; fusions {', '.join(result['fusions'])}.",
        "",
    ]
    return "\n".join(lines)


# -- alignment by leave-one-collection-out: a LoRA + head weights per fold, tested by forwards ---


def align_settings(args: argparse.Namespace) -> dict:
    """``--align-setting KEY=VALUE`` pairs as ``AlignConfig`` fields, typed like the defaults."""
    from headrank_ir.train.alignment import AlignConfig

    defaults = AlignConfig()
    settings = {}
    for pair in args.align_setting:
        key, _, value = pair.partition("=")
        if key not in ALIGN_SWEEPABLE:
            raise SystemExit(f"--align-setting: {key!r} is not one of {', '.join(ALIGN_SWEEPABLE)}")
        settings[key] = type(getattr(defaults, key))(value)
    return settings


ALIGN_SWEEPABLE = ("epochs", "lr", "head_lr", "temperature", "lora_rank", "lora_alpha", "max_pairs")


def align_name(args: argparse.Namespace, kind: str = "loco_align") -> str:
    """``<kind>.<model>[.tok<T>].q<N>`` with the non-default settings appended (one result per setting)."""
    settings = [f"{k}{v}" for k, v in align_settings(args).items()]
    return ".".join([report_name(args, kind), f"q{args.align_queries}", *settings])


def align_folder(args: argparse.Namespace, held_out: str, kind: str = "loco_align") -> Path:
    # loco's folders were named before other kinds existed: theirs stay unprefixed, as cached
    name = align_name(args, kind).removeprefix("loco_align.")
    return CACHE / "align" / f"{name}.without-{held_out}.top{args.depth}"


def capped(collections: Sequence[Collection], count: int) -> list[Collection]:
    """Each set's first ``count`` evaluated queries: alignment costs a backward pass per query."""
    return [replace(c, queries=c.queries[:count]) for c in collections]


def aligned_profile(args, folder: Path, heads, training: Sequence[Collection]) -> Path:
    """``heads`` aligned on the first ``--align-queries`` of each ``training`` set (resumable),
    written to ``folder`` as profile + adapter."""
    from headrank_ir.engine.adapter import save_adapter
    from headrank_ir.engine.models import load_model
    from headrank_ir.train.alignment import AlignConfig, align

    if (folder / "profile.json").exists():
        return folder / "profile.json"
    prompt = PromptSettings(max_passage_tokens=args.passage_tokens)
    profile = HeadProfile(args.model, heads, prompt)
    queries, features = pooled(capped(training, args.align_queries))
    chosen, weights = [h[:2] for h in heads], [h[2] for h in heads]
    references = {q.qid: features.combined(q.qid, chosen, weights) for q in queries}
    model, tokenizer = load_model(args.model)
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    config = AlignConfig(**align_settings(args))
    aligned = align(model, tokenizer, profile, queries, references, config, folder / "checkpoint.pt")
    save_adapter(aligned.adapter, aligned.spec, folder / "adapter.safetensors")
    meta = {"trained_on": [c.name for c in training], "queries": len(queries)}
    meta["seconds"] = round(time.perf_counter() - began, 1)
    meta["align"] = config.to_json()
    meta["loss"] = [round(h["loss"], 4) for h in aligned.history]
    replace(profile, heads=aligned.heads, adapter="adapter.safetensors", meta=meta).save(folder / "profile.json")
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return folder / "profile.json"


def rerank_aligned(args, collection: Collection, profile_path: Path, fusion: FusionSettings) -> dict[str, Reranked]:
    """The held-out set reranked by the aligned profile (a forward per query, the adapter merged),
    unfused and fused as ``rerank`` does from cached features."""
    from headrank_ir.engine.ranker import HeadRanker

    ranker = HeadRanker.from_pretrained(args.model, profile=profile_path)
    requests = [collection.requests[q.qid] for q in collection.queries]
    scores = {}
    with torch.inference_mode():
        for request, result in zip(requests, ranker.rerank_batch(requests, rank_end=args.depth)):
            by_docid = {c.docid: c.score for c in result.candidates}
            scores[request.query.qid] = [by_docid[c.docid] for c in request.candidates[: args.depth]]
    return {
        "aligned": placed(collection, scores, FusionSettings(), args.depth),
        "aligned + fusion": placed(collection, scores, fusion, args.depth),
    }


def aligned_fold(args, collection: Collection, recipe: dict, heads, fusion: FusionSettings, path: Path) -> dict:
    """A held-out set's record: ``heads`` unaligned and aligned (the profile at ``path``), each
    unfused and fused, against BM25; aligned + fusion against unaligned + fusion."""
    systems = {
        "recipe": rerank(collection, heads, FusionSettings(), args.depth),
        "recipe + fusion": rerank(collection, heads, fusion, args.depth),
        **rerank_aligned(args, collection, path, fusion),
    }
    base = bm25(collection)
    rows = {"bm25": {"ndcg": mean(base)}}
    for name, reranked in systems.items():
        test = compare(reranked.ndcg, base)
        rows[name] = {"ndcg": mean(reranked.ndcg), "delta": test.mean_difference, "p": test.p_randomisation}
    versus = compare(systems["aligned + fusion"].ndcg, systems["recipe + fusion"].ndcg)
    rows["aligned + fusion"]["vs_unaligned"] = {"delta": versus.mean_difference, "p": versus.p_randomisation}
    meta = HeadProfile.load(path).meta
    logger.info("%s: %s", collection.name, {k: round(v["ndcg"], 4) for k, v in rows.items()})
    return {
        "held_out": collection.name,
        "queries": len(collection.queries),
        "recipe": recipe,
        "fusion": asdict(fusion),
        "train_queries": meta["queries"],
        # queries without two candidates one grade apart have no pair and are skipped
        "aligned_queries": len(meta["loss"]) // meta.get("align", {}).get("epochs", 1),
        "align_seconds": meta["seconds"],
        "systems": rows,
    }


def align_result(args: argparse.Namespace, folds: list[dict]) -> dict:
    from headrank_ir.train.alignment import AlignConfig

    result = {"model": args.model, "depth": args.depth, "align_queries": args.align_queries, "folds": folds}
    result["align"] = AlignConfig(**align_settings(args)).to_json()
    return result


def align_folds(args: argparse.Namespace) -> None:
    """For each held-out set: the recipe and fusion chosen on the other three (as ``evaluate``),
    the selected heads aligned on the other three, the held-out set reranked with the adapter."""
    sets = list(args.datasets)
    selector = Selector({name: read_collection(args, name, all_heads(args, sets)) for name in sets})
    folds = []
    for held_out in sets:
        train = [s for s in sets if s != held_out]
        recipe, fusion, _ = choose(selector, train, args.depth)
        heads = selector.heads(train, recipe)
        training = [selector.collections[n] for n in sorted(train)]
        path = aligned_profile(args, align_folder(args, held_out), heads, training)
        folds.append(aligned_fold(args, selector.collections[held_out], recipe, heads, fusion, path))
    result = align_result(args, folds)
    output(align_name(args), result, loco_align_report(result))


ALIGN_SYSTEMS = ("recipe", "recipe + fusion", "aligned", "aligned + fusion")


def align_label(settings: dict) -> str:
    return (
        f"{settings['epochs']} epoch(s), lr {settings['lr']}, head lr {settings['head_lr']}, "
        f"tau {settings['temperature']}, LoRA rank {settings['lora_rank']} alpha {settings['lora_alpha']}, "
        f"{settings['max_pairs']} pairs per query"
    )


def loco_align_report(result: dict) -> str:
    return align_report(
        result,
        f"Alignment by leave-one-collection-out, {result['model']}",
        (
            "Per held-out set: the recipe and fusion chosen on the other three (as in runs/loco.<model>.md); "
            f"its heads' weights and a q/k LoRA aligned ({align_label(result['align'])}, regulariser on) on the first "
            f"{result['align_queries']} evaluated queries of each of the other three (those with two candidates one "
            "grade apart: the others have no pair, so Vaswani, judged relevant-only, adds none); the held-out "
            f"set reranked by a forward with the adapter merged (BM25 top {result['depth']}). nDCG@10, Δ and p "
            "(paired randomisation) against BM25; the last column: aligned + fusion against the same heads "
            "unaligned + fusion."
        ),
    )


def align_report(result: dict, title: str, paragraph: str) -> str:
    """The folds of an alignment result as a table, under ``title`` and ``paragraph``."""
    columns = ["held out", "queries", "aligned on", "align s", "bm25", *ALIGN_SYSTEMS, "aligned vs not"]
    lines = report_head(title, paragraph, columns)
    for fold in result["folds"]:
        rows = fold["systems"]
        cells = [fold["held_out"], str(fold["queries"]), f"{fold['aligned_queries']} of {fold['train_queries']}"]
        cells.append(f"{fold['align_seconds']:.0f}")
        cells.append(f"{rows['bm25']['ndcg']:.4f}")
        cells += [measured(rows[n]) for n in ALIGN_SYSTEMS]
        versus = rows["aligned + fusion"]["vs_unaligned"]
        cells.append(f"{versus['delta']:+.4f} (p {versus['p']:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", fold_means(result["folds"], ("bm25", *ALIGN_SYSTEMS)), ""]
    return "\n".join(lines)


# -- head weights aligned from the cached features (no LoRA, no forward), swept and nested ---------

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
            queries, features = pooled([self.selector.collections[n] for n in sorted(train)])
            profile = HeadProfile(self.args.model, heads, PromptSettings(max_passage_tokens=self.args.passage_tokens))
            self.trained[key] = align_weights(features, queries, profile, AlignConfig(**config))
        return self.trained[key]

    def score(self, train: Sequence[str], held_out: str, recipe: dict, settings, fusion: FusionSettings) -> Reranked:
        heads = self.heads(train, recipe, settings)
        return rerank(self.selector.collections[held_out], heads, fusion, self.args.depth)


def weight_folds(args: argparse.Namespace) -> None:
    """Per held-out set: the recipe and fusion chosen on the other three (as ``evaluate``), then
    the weight setting chosen by leave-one-out among those three, trained on all three, tested."""
    sets = list(args.datasets)
    selector = Selector({name: read_collection(args, name, all_heads(args, sets)) for name in sets})
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
        base = bm25(selector.collections[held_out])
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
                "queries": len(selector.collections[held_out].queries),
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


WEIGHT_SYSTEMS = ("recipe + fusion", "aligned weights", "aligned weights + fusion")


def weights_report(result: dict) -> str:
    lines = report_head(
        f"Head weights aligned from cached features, {result['model']}",
        (
            "Per held-out set: recipe and fusion chosen on the other three (as in runs/loco.<model>.md); the selected "
            "heads' weights trained on the alignment objective (pairs, reference KL, middle spread; the model frozen, "
            "so no LoRA: `train.alignment.align_weights`), the setting (epochs × head lr × tau, or equal weights) "
            "chosen by leave-one-out among the other three, trained on all three, tested on the held-out set "
            f"(BM25 top {result['depth']}). nDCG@10, Δ and p (paired randomisation) against BM25; the last column: "
            "aligned weights + fusion against the equal weights + fusion."
        ),
        ["held out", "queries", "chosen setting", "bm25", *WEIGHT_SYSTEMS, "aligned vs equal"],
    )
    for fold in result["folds"]:
        rows = fold["systems"]
        cells = [fold["held_out"], str(fold["queries"]), fold["chosen"], f"{rows['bm25']['ndcg']:.4f}"]
        cells += [measured(rows[n]) for n in WEIGHT_SYSTEMS]
        versus = rows["aligned weights + fusion"]["vs_equal"]
        lines.append("| " + " | ".join(cells) + f" | {versus['delta']:+.4f} (p {versus['p']:.3f}) |")
    held = [f["held_out"] for f in result["folds"]]
    lines += [
        "",
        "Every setting, not nested (each fold's own recipe and fusion, weights trained on the other three), fused:",
        "",
        *table_head(["weights", *held, "mean"]),
        *[
            f"| {label} | " + " | ".join(f"{by_set[h]:.4f}" for h in held) + f" | {mean(by_set):.4f} |"
            for label, by_set in result["sweep"].items()
        ],
        "",
    ]
    return "\n".join(lines)


# -- the ceiling: the grid chosen on the test set itself ------------------------------------------


def in_sample_grid(selector: Selector, name: str, depth: int) -> dict[tuple[str, str], float]:
    """``(recipe label, fusion label)`` → set ``name``'s mean nDCG@10, the heads selected on ``name`` itself."""
    grid = {}
    for recipe in RECIPES:
        heads = selector.heads([name], recipe)
        for fusion in FUSIONS:
            grid[recipe_label(recipe), fusion_label(fusion)] = mean(
                rerank(selector.collections[name], heads, fusion, depth).ndcg
            )
    return grid


def grid_best(grid: dict[tuple[str, str], float], fused: bool, base: float) -> dict:
    """The best entry (``fused`` false: of those without fusion; ties: the first in grid order)."""
    entry = max((key for key in grid if fused or key[1] == "none"), key=lambda key: grid[key])
    return {"entry": ", ".join(entry), "ndcg": grid[entry], "delta": grid[entry] - base}


CEILING_WEIGHTS_RECIPE = {"selection": "ndcg", "top_k": 64, "entropy_weight": 0.0}  # the grid's most heads


def in_sample_weights(args: argparse.Namespace, selector: Selector, name: str) -> dict[tuple[str, str], float] | None:
    """``(weight setting, fusion label)`` → set ``name``'s mean nDCG@10 with its 64 best heads by nDCG,
    their weights trained on its own judged queries (each setting of the weights grid on the
    recipe's heads); None where no query has two candidates one grade apart to train on."""
    from headrank_ir.train.pairs import adjacent_pairs

    if not any(adjacent_pairs(q.grades) for q in selector.collections[name].queries):
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
    selector = Selector({name: read_collection(args, name, all_heads(args, sets)) for name in sets})
    began = time.perf_counter()
    records = []
    for name in sets:
        base = mean(bm25(selector.collections[name]))
        record = {"set": name, "queries": len(selector.collections[name].queries), "bm25": base}
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


def ceiling_report(result: dict) -> str:
    top = f"top {TOP_K[0]}-{TOP_K[-1]}"
    paragraph = (
        f"BM25 top {result['depth']} reranked, passages cut to {result['passage_tokens']} tokens, heads from the "
        f"first {result['max_depth']} layers, {capped_sets(result)} with a relevant passage in the top "
        f"{result['depth']}. For each set, every recipe of the leave-one-out grid (all heads; {top} by nDCG; "
        f"{top} entropy-regularised) selects its heads on that set's own judged queries and every fusion "
        "is scored on the same queries: the best entry is what head selection and fusion can reach with this "
        "model's heads when they may look at the test judgements, which the nested figures never do. nDCG@10 "
        f"and Δ against BM25; no p-value: the best of {len(RECIPES) * len(FUSIONS)} entries scored on the queries "
        "that chose it is biased upwards by construction."
    )
    columns = ["set", "queries", "bm25", "best unfused", "entry", "best fused", "entry"]
    kinds = ["unfused", "fused"]
    if result.get("trained_weights"):
        paragraph += (
            f" Trained weights: the set's {CEILING_WEIGHTS_RECIPE['top_k']} best heads by nDCG, their weights trained "
            "on the alignment objective from cached features (as the `weights` stage does, the model frozen) on the "
            "set's own judged queries, "
            "each epochs × head lr × tau setting of that stage's grid with every fusion: what fitting the weights "
            "to the test judgements reaches (–: no query has two candidates one grade apart to train on)."
        )
        columns += ["trained weights, fused", "entry"]
        kinds.append("trained_weights")
    lines = report_head(f"The grid's ceiling, chosen on the test set itself, {result['model']}", paragraph, columns)
    for record in result["sets"]:
        cells = [record["set"], str(record["queries"]), f"{record['bm25']:.4f}"]
        for kind in kinds:
            best = record[kind]
            cells += [f"{best['ndcg']:.4f} ({best['delta']:+.4f})", best["entry"]] if best else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def all_heads(args: argparse.Namespace, sets: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Every (layer, head) the cached features hold, read off the first cached file."""
    first = next(feature_folder(args, sets[0]).glob("*.pt"))
    rows = torch.load(first, weights_only=True)["scores"].shape[0]
    return tuple((layer, head) for layer in range(args.max_depth) for head in range(rows // args.max_depth))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("features", "evaluate", "align", "weights", "ceiling"))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--datasets", nargs="+", default=list(BUILT_IN), choices=BUILT_IN)
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates reranked per query")
    parser.add_argument(
        "--passage-tokens",
        type=int,
        default=PASSAGE_TOKENS,
        help=f"prompt.max_passage_tokens (default {PASSAGE_TOKENS}; another length's reports are named .tok<N>)",
    )
    parser.add_argument(
        "--max-queries",
        nargs="*",
        default=["cranfield=40", "vaswani=40"],
        metavar="SET=N",
        help="per set, only the first N queries with a relevant passage (default cranfield=40 vaswani=40)",
    )
    parser.add_argument("--max-depth", type=int, default=24, help="heads from the first N layers only")
    add_align_arguments(parser, default_queries=40)
    parser.add_argument("--ship", action="store_true", help="write the chosen profile into headrank_ir/profiles/")
    parser.add_argument(
        "--trained-weights",
        action="store_true",
        help="ceiling: also the 64 best heads' weights trained on each set's own judgements (minutes per set)",
    )
    return parser


def add_align_arguments(parser: argparse.ArgumentParser, default_queries: int) -> None:
    parser.add_argument(
        "--align-queries",
        type=int,
        default=default_queries,
        help="align: the first N evaluated queries (or lists) of each training set",
    )
    parser.add_argument(
        "--align-setting",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=f"align: AlignConfig fields other than the defaults ({', '.join(ALIGN_SWEEPABLE)}); one result each",
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stages = {
        "features": collect,
        "evaluate": evaluate,
        "align": align_folds,
        "weights": weight_folds,
        "ceiling": ceiling,
    }
    stages[args.stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
