"""Train on one TREC DL year, test on the other: the HeadRank ablation table (``train ablation``).

For each split it trains (on the training year's BM25 top ``--depth``) the profiles of the
ablation — top-k by nDCG (QRHead-style), entropy-regularised selection, selection + alignment,
selection + alignment + regulariser — and tests them with BM25 and ICR (all heads) on the other
year: its BM25 top-100, the top ``--depth`` reranked, the rest kept in BM25 order below.
Reported: nDCG@10 (ir_measures) over every judged query, and middle-zone selectivity (share of
relevant, grade >= 2, and irrelevant, grade 0, passages shown in the middle half of the
context that reach the top quartile of the reranked list).

Every head's attention on both years is computed once (one full-depth forward per query) and
cached; selection-only profiles and ICR are scored from it, trained adapters by a forward of
their own. Writes ``runs/train_eval.json`` (one record per split and system), ``runs/train_eval.md``
and the profiles under ``profiles/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from headrank_ir.engine.models import cache_dir, load_model
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.evaluation.measures import mean_measures
from headrank_ir.evaluation.selectivity import selectivity
from headrank_ir.pipeline.firststage import requests_from_run
from headrank_ir.pipeline.names import read_qrels, read_topics
from headrank_ir.pipeline.readers import read_trec_run
from headrank_ir.train.examples import HeadFeatures, LabelledSet, TrainingQuery, judged_queries
from headrank_ir.train.recipe import TrainingConfig, all_head_features, train
from headrank_ir.train.settings import config_from_args
from headrank_ir.train.store import DATA, ROOT

logger = logging.getLogger(__name__)

MSMARCO = DATA / "msmarco-passage"  # the default --data: dl19/ and dl20/ with their BM25 runs
SYSTEMS = ("bm25", "icr", "ndcg", "entropy", "align", "headrank")
# the command's own flags, which are no settings of the table
DISPATCH = ("command", "handler")


@dataclass(frozen=True)
class System:
    """One row of the table: how to train it (None: nothing to train) and what it is."""

    slug: str  # for --systems and profile folder names
    name: str
    config: TrainingConfig | None


def systems(args: argparse.Namespace) -> list[System]:
    headrank = config_from_args(args, train_depth=args.depth)  # entropy selection + alignment + regulariser
    base = replace(headrank, align=None)
    rows = [
        System("bm25", "BM25", None),
        System("icr", "ICR (all heads)", None),
        System("ndcg", "top-k by nDCG (QRHead-style)", replace(base, selection="ndcg")),
        System("entropy", "entropy-regularised selection", base),
        System(
            "align",
            "selection + alignment",
            replace(headrank, align=replace(headrank.align, regularizer=None)),
        ),
        System(
            "headrank",
            "selection + alignment + regulariser",
            headrank,
        ),
    ]
    return [row for row in rows if row.slug in args.systems]


# -- data and features ---------------------------------------------------------------------------


def load_dataset(name: str, args: argparse.Namespace, prompt: PromptSettings, model) -> LabelledSet:
    folder = Path(args.data) / name
    requests = requests_from_run(
        read_topics(str(folder / "topics.tsv")),
        read_trec_run(folder / "run.bm25.txt"),
        folder / "corpus.jsonl",
        100,
    )
    qrels = read_qrels(str(folder / "qrels.txt"))
    queries = judged_queries(requests, qrels, args.depth)
    cache = cache_dir() / "train_eval" / f"{args.model}.{name}.top{args.depth}.tok{prompt.max_passage_tokens}.pt"
    if cache.exists():
        stored = torch.load(cache, weights_only=True)
        features = HeadFeatures(tuple(map(tuple, stored["heads"])), stored["scores"], stored["entropy"])
    else:
        began = time.perf_counter()
        features = all_head_features(*model, args.model, queries, prompt)
        logger.info(
            "%s: every head on %d queries in %.0f s",
            name,
            len(queries),
            time.perf_counter() - began,
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "heads": features.heads,
                "scores": features.scores,
                "entropy": features.entropy,
            },
            cache,
        )
    return LabelledSet(name, queries, {r.query.qid: r for r in requests}, qrels, features)


# -- scoring and measuring -----------------------------------------------------------------------

Scorer = Callable[[TrainingQuery], list[float]]


def measure(dataset: LabelledSet, scorer: Scorer | None, prompt: PromptSettings) -> dict:
    """nDCG@10 of the reranked top-100 and the middle-zone selectivity of the reranked top."""
    run, first, reranked = {}, {}, {}
    for query in dataset.queries:
        top = list(query.docids)
        if scorer is not None:
            scores = scorer(query)
            top = [top[i] for i in sorted(range(len(top)), key=lambda i: (-scores[i], i))]
        rest = [c.docid for c in dataset.requests[query.qid].candidates[len(top) :]]
        ordered = top + rest
        run[query.qid] = {docid: float(len(ordered) - rank) for rank, docid in enumerate(ordered)}
        first[query.qid], reranked[query.qid] = list(query.docids), top
    shares = selectivity(first, reranked, dataset.qrels, prompt)
    return {
        "nDCG@10": mean_measures(run, {q.qid: dataset.qrels[q.qid] for q in dataset.queries}, ["nDCG@10"])["nDCG@10"],
        "selectivity": {
            "relevant": shares.relevant,
            "irrelevant": shares.irrelevant,
            "gap": shares.gap,
        },
        "middle_counts": {
            "relevant": shares.relevant_count,
            "irrelevant": shares.irrelevant_count,
        },
    }


def feature_scorer(dataset: LabelledSet, profile: HeadProfile) -> Scorer:
    heads = [(layer, head) for layer, head, _ in profile.heads]
    weights = [w for _, _, w in profile.heads]
    return lambda query: dataset.features.combined(query.qid, heads, weights).tolist()


def model_scorer(args: argparse.Namespace, profile_path: Path) -> Scorer:
    from headrank_ir.engine.ranker import HeadRanker

    ranker = HeadRanker.from_pretrained(args.model, profile=str(profile_path))
    return lambda query: ranker.score(query.text, list(query.passages))


# -- one split -----------------------------------------------------------------------------------


def run_split(train_set: LabelledSet, test_set: LabelledSet, args, prompt: PromptSettings) -> list[dict]:
    records = []
    for system in systems(args):
        record = {
            "train": train_set.name,
            "test": test_set.name,
            "system": system.name,
            "rerank_depth": args.depth,
        }
        if system.config is None:
            icr = (
                None
                if system.name == "BM25"
                else HeadProfile(
                    args.model,
                    tuple((l, h, 1.0) for l, h in test_set.features.heads),
                    prompt,
                )
            )
            scorer = None if icr is None else feature_scorer(test_set, icr)
        else:
            path, train_seconds = trained_profile(system, train_set, args)
            profile = HeadProfile.load(path)
            scorer = model_scorer(args, path) if profile.adapter else feature_scorer(test_set, profile)
            record.update(
                profile=os.path.relpath(path, ROOT),
                train_seconds=train_seconds,
                heads=len(profile.heads),
                depth=profile.depth,
            )
        began = time.perf_counter()
        record.update(
            measure(test_set, scorer, prompt),
            test_seconds=round(time.perf_counter() - began, 1),
        )
        logger.info(
            "%s → %s  %-38s nDCG@10 %.4f  gap %+.3f",
            train_set.name,
            test_set.name,
            system.name,
            record["nDCG@10"],
            record["selectivity"]["gap"],
        )
        records.append(record)
    return records


def trained_profile(system: System, train_set: LabelledSet, args) -> tuple[Path, dict]:
    output = Path(args.profiles) / f"{args.model}.{train_set.name}.{system.slug}{args.tag}"
    if args.reuse and (output / "profile.json").exists():
        return output / "profile.json", HeadProfile.load(output).meta["seconds"]
    trained = train(
        args.model,
        list(train_set.requests.values()),
        train_set.qrels,
        system.config,
        output,
        features=train_set.features,
    )
    return trained.path, {k: round(v, 1) for k, v in trained.seconds.items()}


# -- output --------------------------------------------------------------------------------------


def markdown(records: Sequence[dict], args) -> str:
    lines = [
        f"# Train on one TREC DL year, test on the other ({args.model})",
        "",
        (
            f"BM25 top-100; the top {args.depth} reranked (the rest keep BM25 order), passages cut to "
            f"{args.max_passage_tokens} tokens. nDCG@10 by ir_measures over every judged query. Selectivity: of the "
            "passages shown in the middle half of the context, the share of relevant (grade >= 2) and irrelevant "
            f"(grade 0) ones that reach the top quartile (top {max(1, args.depth // 4)}) of the reranked list."
        ),
        "",
        "| train → test | system | nDCG@10 | rel. in top ¼ | irr. in top ¼ | gap | heads | depth | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        s = r["selectivity"]
        seconds = f"{sum(r['train_seconds'].values()):.0f}" if "train_seconds" in r else ""
        cells = [f"{r['train']} → {r['test']}", r["system"], f"{r['nDCG@10']:.4f}", f"{s['relevant']:.3f}"]
        cells += [
            f"{s['irrelevant']:.3f}",
            f"{s['gap']:+.3f}",
            str(r.get("heads", "")),
            str(r.get("depth", "")),
            seconds,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Training seconds per stage (features: the all-heads pass over the training queries, shared by a split):",
        "",
    ]
    lines += [f"- {r['train']}, {r['system']}: {r['train_seconds']}" for r in records if "train_seconds" in r]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Every split's table: the features of both years first, then each system trained and tested."""
    prompt = PromptSettings(max_passage_tokens=args.max_passage_tokens)
    splits = [tuple(s.split(":")) for s in args.splits]
    model = load_model(args.model)
    names = sorted({n for pair in splits for n in pair})
    datasets = {name: load_dataset(name, args, prompt, model) for name in names}
    del model  # each training loads a fresh copy: alignment changes the weights in place
    records = [
        r
        for train_name, test_name in splits
        for r in run_split(datasets[train_name], datasets[test_name], args, prompt)
    ]
    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in DISPATCH},
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "records": records,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.output}.json").write_text(json.dumps(result, indent=1) + "\n")
    Path(f"{args.output}.md").write_text(markdown(records, args))
    print(markdown(records, args))
    return 0
