"""Alignment by leave-one-collection-out (``train loco align``): per held-out set, the heads chosen
on the others get their weights and a q/k LoRA aligned on the others' queries, and the held-out
set is reranked by forwards with the adapter merged. ``train pseudo align`` trains the same folds
on pseudo-query lists."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

from headrank_ir.engine.profile import FusionSettings, HeadProfile, PromptSettings
from headrank_ir.evaluation.significance import compare
from headrank_ir.train.examples import LabelledSet, pooled
from headrank_ir.train.features import all_heads, read_set
from headrank_ir.train.grid import Reranked, Selector, bm25, choose, mean, placed, rerank
from headrank_ir.train.reports import loco_align_report
from headrank_ir.train.store import CACHE, output, report_name

logger = logging.getLogger(__name__)

ALIGN_SWEEPABLE = ("epochs", "lr", "head_lr", "temperature", "lora_rank", "lora_alpha", "max_pairs")


def align_settings(args: argparse.Namespace) -> dict:
    """``--align-setting KEY=VALUE`` pairs as ``AlignConfig`` fields, typed like the defaults."""
    from headrank_ir.train.alignment import AlignConfig

    defaults = AlignConfig()
    settings = {}
    for pair in args.align_setting:
        key, _, value = pair.partition("=")
        if key not in ALIGN_SWEEPABLE:
            raise ValueError(f"--align-setting: {key!r} is not one of {', '.join(ALIGN_SWEEPABLE)}")
        settings[key] = type(getattr(defaults, key))(value)
    return settings


def align_name(args: argparse.Namespace, kind: str = "loco_align") -> str:
    """``<kind>.<model>[.tok<T>].q<N>`` with the non-default settings appended (one result per setting)."""
    settings = [f"{k}{v}" for k, v in align_settings(args).items()]
    return ".".join([report_name(args, kind), f"q{args.align_queries}", *settings])


def align_folder(args: argparse.Namespace, held_out: str, kind: str = "loco_align") -> Path:
    # loco's folders were named before other kinds existed: theirs stay unprefixed, as cached
    name = align_name(args, kind).removeprefix("loco_align.")
    return CACHE / "align" / f"{name}.without-{held_out}.top{args.depth}"


def capped(sets: Sequence[LabelledSet], count: int) -> list[LabelledSet]:
    """Each set's first ``count`` evaluated queries: alignment costs a backward pass per query."""
    return [replace(s, queries=s.queries[:count]) for s in sets]


def aligned_profile(args, folder: Path, heads, training: Sequence[LabelledSet]) -> Path:
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


def rerank_aligned(args, labelled: LabelledSet, profile_path: Path, fusion: FusionSettings) -> dict[str, Reranked]:
    """The held-out set reranked by the aligned profile (a forward per query, the adapter merged),
    unfused and fused as ``rerank`` does from cached features."""
    from headrank_ir.engine.ranker import HeadRanker

    ranker = HeadRanker.from_pretrained(args.model, profile=profile_path)
    requests = [labelled.requests[q.qid] for q in labelled.queries]
    scores = {}
    with torch.inference_mode():
        for request, result in zip(requests, ranker.rerank_batch(requests, rank_end=args.depth)):
            by_docid = {c.docid: c.score for c in result.candidates}
            scores[request.query.qid] = [by_docid[c.docid] for c in request.candidates[: args.depth]]
    return {
        "aligned": placed(labelled, scores, FusionSettings(), args.depth),
        "aligned + fusion": placed(labelled, scores, fusion, args.depth),
    }


def aligned_fold(args, labelled: LabelledSet, recipe: dict, heads, fusion: FusionSettings, path: Path) -> dict:
    """A held-out set's record: ``heads`` unaligned and aligned (the profile at ``path``), each
    unfused and fused, against BM25; aligned + fusion against unaligned + fusion."""
    systems = {
        "recipe": rerank(labelled, heads, FusionSettings(), args.depth),
        "recipe + fusion": rerank(labelled, heads, fusion, args.depth),
        **rerank_aligned(args, labelled, path, fusion),
    }
    base = bm25(labelled)
    rows = {"bm25": {"ndcg": mean(base)}}
    for name, reranked in systems.items():
        test = compare(reranked.ndcg, base)
        rows[name] = {"ndcg": mean(reranked.ndcg), "delta": test.mean_difference, "p": test.p_randomisation}
    versus = compare(systems["aligned + fusion"].ndcg, systems["recipe + fusion"].ndcg)
    rows["aligned + fusion"]["vs_unaligned"] = {"delta": versus.mean_difference, "p": versus.p_randomisation}
    meta = HeadProfile.load(path).meta
    logger.info("%s: %s", labelled.name, {k: round(v["ndcg"], 4) for k, v in rows.items()})
    return {
        "held_out": labelled.name,
        "queries": len(labelled.queries),
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
    selector = Selector({name: read_set(args, name, all_heads(args, sets)) for name in sets})
    folds = []
    for held_out in sets:
        train = [s for s in sets if s != held_out]
        recipe, fusion, _ = choose(selector, train, args.depth)
        heads = selector.heads(train, recipe)
        training = [selector.sets[n] for n in sorted(train)]
        path = aligned_profile(args, align_folder(args, held_out), heads, training)
        folds.append(aligned_fold(args, selector.sets[held_out], recipe, heads, fusion, path))
    result = align_result(args, folds)
    output(align_name(args), result, loco_align_report(result))
