"""Every head's reading of every labelled query, one forward per query, cached one file per query
so that an interrupted pass resumes where it stopped (``train loco features``); and the cached
readings read back as ``LabelledSet``s, which every later stage uses without a model."""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from headrank_ir.atomic import write_atomic_with
from headrank_ir.bench.datasets import get_dataset, load, prepare
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.train.examples import HeadFeatures, LabelledSet, TrainingQuery, attention_entropy, training_queries
from headrank_ir.train.store import DATA, ROOT, feature_folder

logger = logging.getLogger(__name__)


def dataset_queries(name: str, depth: int, max_queries: int | None):
    """The first ``max_queries`` judged queries of ``name`` (in the bench's query order) that have
    a relevant passage in their BM25 top ``depth``, and the loaded requests and qrels."""
    collection = prepare(get_dataset(name), DATA, ROOT / "runs" / "bench", ROOT / ".cache" / "bench")
    loaded = load(collection)
    return training_queries(loaded.requests, loaded.qrels, depth)[:max_queries], loaded


def query_caps(args: argparse.Namespace) -> dict[str, int]:
    try:
        return {name: int(count) for name, count in (pair.split("=") for pair in args.max_queries)}
    except ValueError:
        raise ValueError(f"--max-queries takes SET=N pairs, got {' '.join(args.max_queries)!r}") from None


def feature_reader(args: argparse.Namespace):
    """A reader of every head of the first ``--max-depth`` layers, prompts as ``--passage-tokens`` says."""
    from headrank_ir.engine.models import load_model
    from headrank_ir.engine.ranker import HeadRanker

    model, tokenizer = load_model(args.model)
    config = model.config.get_text_config()
    prompt = PromptSettings(max_passage_tokens=args.passage_tokens)
    profile = HeadProfile.icr(args.model, args.max_depth, config.num_attention_heads, **asdict(prompt))
    return HeadRanker(model, tokenizer, profile, name=args.model).reader


def store_features(reader, folder: Path, query: TrainingQuery) -> None:
    """One forward: every head's calibrated scores and attention entropy, written atomically."""
    began = time.perf_counter()
    with torch.inference_mode():
        real, blank = reader.head_masses(query.text, query.passages)
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
    reader = feature_reader(args)
    for turn in itertools.zip_longest(*([(name, q) for q in queries] for name, queries in todo.items())):
        for name, query in filter(None, turn):
            store_features(reader, feature_folder(args, name), query)


def collect(args: argparse.Namespace) -> None:
    """Every head's calibrated scores and attention entropy on every evaluated query."""
    caps = query_caps(args)
    collect_sets(args, {name: dataset_queries(name, args.depth, caps.get(name))[0] for name in args.datasets})


def cached_features(folder: Path, queries: Sequence[TrainingQuery], heads) -> tuple[list, HeadFeatures]:
    """The queries whose features are cached in ``folder`` (a pass still running: what is read), and those."""
    queries = [q for q in queries if (folder / f"{q.qid}.pt").exists()]
    stored = {q.qid: torch.load(folder / f"{q.qid}.pt", weights_only=True) for q in queries}
    scores = {q: s["scores"] for q, s in stored.items()}
    return queries, HeadFeatures(heads, scores, {q: s["entropy"] for q, s in stored.items()})


def read_set(args: argparse.Namespace, name: str, heads) -> LabelledSet:
    """Dataset ``name``'s evaluated queries with their cached features."""
    queries, loaded = dataset_queries(name, args.depth, query_caps(args).get(name))
    queries, features = cached_features(feature_folder(args, name), queries, heads)
    requests = {r.query.qid: r for r in loaded.requests}
    return LabelledSet(name, queries, requests, {q.qid: loaded.qrels[q.qid] for q in queries}, features)


def all_heads(args: argparse.Namespace, sets: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Every (layer, head) the cached features hold, read off the first cached file."""
    first = next(feature_folder(args, sets[0]).glob("*.pt"), None)
    if first is None:
        raise ValueError(f"no features cached for {sets[0]}: run `python -m headrank_ir.train loco features` first")
    rows = torch.load(first, weights_only=True)["scores"].shape[0]
    return tuple((layer, head) for layer in range(args.max_depth) for head in range(rows // args.max_depth))
