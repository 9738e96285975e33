"""Test collections and their BM25 first stage.

DL19/DL20 come with the standard Pyserini BM25 top-100 run. Cranfield and Vaswani get a real
Pyserini BM25 search over their full corpora: the Lucene index is built once into the cache
(``JsonCollection`` wants a folder holding only the corpus, hence a symlink), and the run is
written once next to the bench's other run files. The JVM runs in a child process, so that the
bench process itself never starts one and each measured cell starts clean.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from headrank_ir.bench.store import write_atomic
from headrank_ir.pipeline.errors import InputError
from headrank_ir.pipeline.firststage import requests_from_run
from headrank_ir.pipeline.readers import Topics, read_qrels_file, read_topics_file, read_trec_run
from headrank_ir.records import Request

logger = logging.getLogger(__name__)

HITS = 100
BM25_K1, BM25_B = 0.9, 0.4


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str  # under the data root
    relevant_grade: int  # lowest grade counted as relevant by selectivity
    bm25_run: str | None = None  # a given first-stage run; None: search the corpus with Pyserini
    # qrels that list relevant passages only: selectivity's irrelevant ones are the unjudged
    unjudged_irrelevant: bool = False


DATASETS: dict[str, Dataset] = {
    "dl19": Dataset("dl19", "msmarco-passage/dl19", 2, "run.bm25.txt"),
    "dl20": Dataset("dl20", "msmarco-passage/dl20", 2, "run.bm25.txt"),
    # Cranfield grades run 4 (complete answer) .. 1 (minimal interest): >= 2 excludes "minimal"
    "cranfield": Dataset("cranfield", "cranfield", 2, unjudged_irrelevant=True),
    "vaswani": Dataset("vaswani", "vaswani", 1, unjudged_irrelevant=True),  # binary
}


def default_data_root() -> Path:
    """``$HEADRANK_DATA``, else ``shared/data`` beside the repository (the project's layout)."""
    env = os.environ.get("HEADRANK_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass(frozen=True)
class Collection:
    """One dataset, ready to rank: files and the BM25 first stage."""

    dataset: Dataset
    folder: Path
    run: Path  # BM25 top-100, TREC format

    @property
    def corpus(self) -> Path:
        return self.folder / "corpus.jsonl"

    @property
    def topics(self) -> Path:
        return self.folder / "topics.tsv"

    @property
    def qrels(self) -> Path:
        return self.folder / "qrels.txt"


def prepare(dataset: Dataset, data_root: Path, runs_dir: Path, cache: Path) -> Collection:
    """The dataset's files, with its BM25 run written first when it has to be searched."""
    folder = data_root / dataset.folder
    if not (folder / "corpus.jsonl").exists():
        raise InputError(f"{folder} holds no corpus.jsonl; point --data at the shared data folder")
    run = first_stage_run(dataset, data_root, runs_dir)
    if not run.exists():
        _in_child(_search_bm25, folder, cache / "indexes" / dataset.name, run)
    return Collection(dataset, folder, run)


def first_stage_run(dataset: Dataset, data_root: Path, runs_dir: Path) -> Path:
    """Where the dataset's BM25 top-100 is: given with the data, or searched once into ``runs_dir``."""
    if dataset.bm25_run:
        return data_root / dataset.folder / dataset.bm25_run
    return runs_dir / "firststage" / f"{dataset.name}.bm25.trec"


def _in_child(target, *args) -> None:
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"{target.__name__}{args} failed in its child process (exit code {child.exitcode})")


def _search_bm25(folder: Path, index: Path, run: Path) -> None:
    """Child process: index the corpus if needed, then write the BM25 top-100 of every topic."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from headrank_ir.pipeline.firststage import open_searcher
    from headrank_ir.pipeline.jvm import ensure_java
    from headrank_ir.pipeline.runfile import format_trec
    from headrank_ir.records import Candidate, Query, Result

    ensure_java()
    if not index.exists():
        build_index(folder / "corpus.jsonl", index)
    searcher = open_searcher(str(index), k1=BM25_K1, b=BM25_B)
    topics = read_topics_file(folder / "topics.tsv")
    lines = []
    for qid, text in topics.queries.items():
        hits = searcher.search(text, k=HITS)
        lines.append(
            format_trec(
                Result(Query(text, qid), [Candidate(h.docid, h.score) for h in hits]),
                "bm25",
            )
        )
    write_atomic(run, "".join(lines))
    logger.info("BM25 run of %d queries written to %s", len(topics.queries), run)


def build_index(corpus: Path, index: Path) -> None:
    """Pyserini's ``JsonCollection`` indexing, as ``python -m pyserini.index.lucene`` does it."""
    from pyserini.pyclass import autoclass  # puts Anserini's jar on the JVM's classpath

    staging = index.with_name(index.name + ".building")
    source = staging.with_name(staging.name + ".input")
    source.mkdir(parents=True, exist_ok=True)
    link = source / "corpus.jsonl"
    if not link.exists():
        link.symlink_to(corpus.resolve())
    logger.info("indexing %s into %s", corpus, index)
    args = [
        "-collection",
        "JsonCollection",
        "-input",
        str(source),
        "-index",
        str(staging),
        "-generator",
        "DefaultLuceneDocumentGenerator",
        "-threads",
        "2",
        "-storePositions",
        "-storeDocvectors",
        "-storeRaw",
    ]
    autoclass("io.anserini.index.IndexCollection").main(args)
    os.replace(staging, index)
    shutil.rmtree(source)


def query_order(qids) -> list[str]:
    """Numeric order when every id is a number, else string order: the subsample is the first N."""
    qids = list(qids)
    return sorted(qids, key=int) if all(q.isdigit() for q in qids) else sorted(qids)


@dataclass(frozen=True)
class Loaded:
    requests: list[Request]  # first-stage top-100 with texts, in query order
    qrels: dict[str, dict[str, int]]  # restricted to the loaded queries


def load(collection: Collection, max_queries: int | None = None) -> Loaded:
    """The first ``max_queries`` queries (in :func:`query_order`) with their first-stage candidates."""
    topics = read_topics_file(collection.topics)
    qrels = read_qrels_file(collection.qrels)
    ordered = Topics(topics.source, {q: topics.queries[q] for q in query_order(topics.queries)})
    requests = requests_from_run(ordered, read_trec_run(collection.run), collection.corpus, HITS, max_queries)
    return Loaded(requests, {r.query.qid: qrels[r.query.qid] for r in requests})
