"""Label-free training lists (``train pseudo``): inverse-cloze pseudo-queries from the four public
corpora, graded by construction, as training data of head selection and alignment.

``build`` draws ``--per-corpus`` passages of each corpus (DL19's and DL20's are the passage texts
of their BM25 runs; Cranfield's and Vaswani's the full collections) and cuts a span out of each:
a sentence where the passage has two or more, else a ``SPAN_WORDS``-word window (Vaswani's
abstracts have no punctuation). The span is the query, as in the inverse cloze task; its
candidates are its Pyserini BM25 top ``--depth`` over the corpus, in a random order (BM25 ranks
the source first, so the first place would otherwise be the answer), and the passage it came
from is shown without the span. Grades come from no judge: the source passage 2, the MiniLM
bi-encoder's ``MINILM_RELEVANT`` closest other candidates 1, the rest 0 (soft labels that
distil what the bench's best method prefers). A list whose source is not in its top ``--depth``
is dropped.

``evaluate`` keeps the shipped recipe and fusion fixed (runs/loco.<model>.json) and, for each
held-out set, selects heads from different training data: the other three sets' judged
queries (as ``train loco``), their pseudo-queries, the pseudo-queries of all four corpora (the
held-out corpus's texts but none of its queries or judgements), and judged + pseudo together.

``align`` keeps the judged selection (the shipped recipe's heads, chosen on the other three sets'
judged queries) and aligns them, head weights and a q/k LoRA as ``train loco align`` does, on the
other three corpora's pseudo-query lists instead of judged queries: label-free preference pairs
(source over the bi-encoder's closest, those over the rest).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from headrank_ir.atomic import write_atomic
from headrank_ir.bench.datasets import Dataset, get_dataset, prepare
from headrank_ir.engine.profile import FusionSettings
from headrank_ir.evaluation.significance import compare
from headrank_ir.pipeline.firststage import requests_from_run
from headrank_ir.pipeline.readers import read_corpus, read_topics_file, read_trec_run
from headrank_ir.train import store
from headrank_ir.train.align_folds import align_folder, align_name, align_result, aligned_fold, aligned_profile
from headrank_ir.train.examples import LabelledSet, TrainingQuery
from headrank_ir.train.features import all_heads, cached_features, collect_sets, read_set
from headrank_ir.train.grid import Selector, bm25, mean, rerank
from headrank_ir.train.reports import align_pseudo_report, pseudo_report
from headrank_ir.train.store import CACHE, DATA, feature_folder, output, report_name

logger = logging.getLogger(__name__)


logger = logging.getLogger("pseudo")

PSEUDO = CACHE.parent / "pseudo"
SPAN_WORDS = 8
MIN_SPAN_WORDS = 5
MIN_REST_WORDS = 12  # what is left of the source passage must still say something
MINILM_RELEVANT = 3
SOURCE, CLOSE, OTHER = 2, 1, 0


def pseudo_name(corpus: str) -> str:
    return f"ict-{corpus}"


def cloze(text: str, rng: random.Random) -> tuple[str, str] | None:
    """``(span, rest)``: a sentence (or a word window) of ``text`` and the text without it, or
    None when the passage is too short to lose one and still be worth ranking."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    usable = [i for i, s in enumerate(sentences) if len(s.split()) >= MIN_SPAN_WORDS]
    if len(sentences) >= 2 and usable:
        i = rng.choice(usable)
        span, rest = sentences[i], " ".join(sentences[:i] + sentences[i + 1 :])
    else:
        words = text.split()
        if len(words) < SPAN_WORDS + MIN_REST_WORDS:
            return None
        start = rng.randrange(len(words) - SPAN_WORDS + 1)
        span, rest = " ".join(words[start : start + SPAN_WORDS]), " ".join(words[:start] + words[start + SPAN_WORDS :])
    span = span.strip(" .")
    if len(span.split()) < MIN_SPAN_WORDS or len(rest.split()) < MIN_REST_WORDS:
        return None
    return span, rest


def draw(corpus: dict[str, str], count: int, seed: int) -> dict[str, tuple[str, str, str]]:
    """Up to ``count`` pseudo-queries: qid → (source docid, span, source without the span)."""
    rng = random.Random(seed)
    drawn = {}
    for docid in rng.sample(sorted(corpus), len(corpus)):
        cut = cloze(corpus[docid], rng)
        if cut is not None:
            drawn[f"ict{len(drawn)}"] = (docid, *cut)
        if len(drawn) == count:
            break
    return drawn


def shuffled(query: TrainingQuery, seed: int) -> TrainingQuery:
    """The list in a seeded random order. BM25 puts the source first (it still holds the span),
    so in BM25 order a head that favours whatever is shown first would pass for a relevance head."""
    order = list(range(len(query.docids)))
    random.Random(f"{seed}:{query.qid}").shuffle(order)
    docids, passages, grades = (
        tuple(column[i] for i in order) for column in (query.docids, query.passages, query.grades)
    )
    return TrainingQuery(query.qid, query.text, docids, passages, grades)


def graded(spans: dict[str, tuple[str, str, str]], requests, encoder, seed: int) -> list[TrainingQuery]:
    """Each span's BM25 list in a random order, the source shown without the span and graded by
    construction, the others by the bi-encoder's closeness to the span."""
    lists = []
    for request in requests:
        source, span, rest = spans[request.query.qid]
        docids = [c.docid for c in request.candidates]
        if source not in docids:
            continue
        passages = [rest if d == source else c.text for d, c in zip(docids, request.candidates)]
        closeness = encoder.scores(span, passages)
        others = sorted((i for i, d in enumerate(docids) if d != source), key=lambda i: -closeness[i])
        close = set(others[:MINILM_RELEVANT])
        grades = [SOURCE if d == source else CLOSE if i in close else OTHER for i, d in enumerate(docids)]
        lists.append(
            shuffled(TrainingQuery(request.query.qid, span, tuple(docids), tuple(passages), tuple(grades)), seed)
        )
    return lists


def lists_path(args: argparse.Namespace, corpus: str) -> Path:
    return PSEUDO / f"{pseudo_name(corpus)}.n{args.per_corpus}.top{args.depth}.jsonl"


def build(args: argparse.Namespace) -> None:
    """The pseudo-query lists of every corpus (one JSONL per corpus, written once)."""
    from headrank_ir.bench.baselines.dense import MiniLM

    encoder = None
    for offset, name in enumerate(args.datasets):
        path = lists_path(args, name)
        if path.exists():
            logger.info("%s exists", path)
            continue
        dataset = get_dataset(name)
        corpus_path = dataset.path(DATA, dataset.corpus)
        spans = draw(read_corpus(corpus_path), args.per_corpus, args.seed + offset)
        folder = PSEUDO / pseudo_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        topics = folder / f"topics.n{args.per_corpus}.tsv"
        topics.write_text("".join(f"{qid}\t{span}\n" for qid, (_, span, _) in spans.items()), encoding="utf-8")
        # the JVM in a child process (prepare's way): the index built once, the BM25 run searched once
        files = Dataset(pseudo_name(name), "", SOURCE, topics=str(topics), qrels="", corpus=str(corpus_path))
        collection = prepare(files, None, folder, PSEUDO)
        requests = requests_from_run(read_topics_file(topics), read_trec_run(collection.run), corpus_path, args.depth)
        encoder = encoder or MiniLM()
        lists = graded(spans, requests, encoder, args.seed + offset)
        logger.info(
            "%s: %d spans, %d lists with the source in the BM25 top %d", name, len(spans), len(lists), args.depth
        )
        write_atomic(path, "".join(json.dumps(asdict(q)) + "\n" for q in lists))


def read_lists(args: argparse.Namespace, corpus: str) -> list[TrainingQuery]:
    path = lists_path(args, corpus)
    if not path.exists():
        raise ValueError(f"{path} does not exist: run `python -m headrank_ir.train pseudo build` first")
    with path.open(encoding="utf-8") as lines:
        return [
            TrainingQuery(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(line).items()})
            for line in lines
        ]


def features(args: argparse.Namespace) -> None:
    collect_sets(args, {pseudo_name(name): read_lists(args, name) for name in args.datasets})


def pseudo_set(args: argparse.Namespace, corpus: str, heads) -> LabelledSet:
    """A corpus's pseudo-query lists with their cached features (selection reads nothing else)."""
    queries, features = cached_features(feature_folder(args, pseudo_name(corpus)), read_lists(args, corpus), heads)
    return LabelledSet(pseudo_name(corpus), queries, {}, {}, features)


def training_sources(held_out: str, sets: Sequence[str]) -> dict[str, list[str]]:
    """What the heads are selected on, per system, when ``held_out`` is tested."""
    others = [s for s in sets if s != held_out]
    return {
        "judged": others,
        "pseudo": [pseudo_name(s) for s in others],
        "pseudo, all four corpora": [pseudo_name(s) for s in sets],
        "judged + pseudo": others + [pseudo_name(s) for s in others],
    }


def shipped_selection(args: argparse.Namespace) -> tuple[dict, FusionSettings, dict[str, LabelledSet]]:
    """The shipped recipe and fusion (runs/loco.<model>.json), and every judged set and pseudo-query
    list set with its cached features."""
    sets = list(args.datasets)
    heads = all_heads(args, sets)
    shipped = json.loads((store.ROOT / "runs" / f"{report_name(args, 'loco')}.json").read_text())["shipped"]
    sets_read = {name: read_set(args, name, heads) for name in sets}
    sets_read.update({pseudo_name(name): pseudo_set(args, name, heads) for name in sets})
    return shipped["recipe"], FusionSettings(**shipped["fusion"]), sets_read


def evaluate(args: argparse.Namespace) -> None:
    sets = list(args.datasets)
    recipe, fusion, labelled = shipped_selection(args)
    selector = Selector(labelled)
    folds = []
    for held_out in sets:
        held = labelled[held_out]
        base = bm25(held)
        rows = {"bm25": {"ndcg": mean(base)}}
        fused = {}
        for system, train in training_sources(held_out, sets).items():
            chosen = selector.heads(train, recipe)
            for suffix, settings in (("", FusionSettings()), (" + fusion", fusion)):
                reranked = rerank(held, chosen, settings, args.depth)
                test = compare(reranked.ndcg, base)
                rows[system + suffix] = {
                    "ndcg": mean(reranked.ndcg),
                    "delta": test.mean_difference,
                    "p": test.p_randomisation,
                }
            fused[system] = reranked.ndcg  # the loop's last: fused
        for system in fused:
            versus = compare(fused[system], fused["judged"])
            rows[system + " + fusion"]["vs_judged"] = {"delta": versus.mean_difference, "p": versus.p_randomisation}
        folds.append({"held_out": held_out, "queries": len(held.queries), "systems": rows})
        logger.info("%s: %s", held_out, {k: round(v["ndcg"], 4) for k, v in rows.items()})
    result = {
        "model": args.model,
        "depth": args.depth,
        "per_corpus": args.per_corpus,
        "lists": {name: len(labelled[pseudo_name(name)].queries) for name in sets},
        "recipe": recipe,
        "fusion": asdict(fusion),
        "folds": folds,
    }
    output(report_name(args, "pseudo"), result, pseudo_report(result))


def align(args: argparse.Namespace) -> None:
    """For each held-out set: the judged selection's heads aligned on the other three corpora's
    pseudo-query lists (the first ``--align-queries`` of each), the held-out set reranked with them."""
    sets = list(args.datasets)
    recipe, fusion, labelled = shipped_selection(args)
    selector = Selector(labelled)
    folds = []
    for held_out in sets:
        others = sorted(s for s in sets if s != held_out)
        heads = selector.heads(others, recipe)
        training = [labelled[pseudo_name(s)] for s in others]
        path = aligned_profile(args, align_folder(args, held_out, "pseudo_align"), heads, training)
        folds.append(aligned_fold(args, labelled[held_out], recipe, heads, fusion, path))
    result = align_result(args, folds)
    result["per_corpus"] = args.per_corpus
    output(align_name(args, "pseudo_align"), result, align_pseudo_report(result))
