"""Test collections and their BM25 first stage.

The built-in ones live under the shared data folder (``--data`` or ``$HEADRANK_DATA``):
DL19/DL20 come with the standard Pyserini BM25 top-100 run; Cranfield and Vaswani get a real
Pyserini BM25 search over their full corpora. A collection of one's own is given as files
(``--collection NAME topics=… qrels=… corpus=…|index=…|run=…``, :func:`parse_collection`) and
is benched the same way. Indexes are built once into the cache by ``pipeline.index``, runs are
written once next to the bench's other run files by ``pipeline.firststage``; the JVM runs in a
child process, so that the bench process itself never starts one and each measured cell
starts clean.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from headrank_ir.errors import InputError
from headrank_ir.pipeline.firststage import requests_from_run
from headrank_ir.pipeline.readers import Topics, read_qrels_file, read_topics_file, read_trec_run
from headrank_ir.records import Request

logger = logging.getLogger(__name__)

HITS = 100
DATA_VARIABLE = "HEADRANK_DATA"


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str  # under the data root; "" for a collection given as files (absolute paths below)
    relevant_grade: int  # lowest grade counted as relevant by selectivity
    bm25_run: str | None = None  # a given first-stage run; None: search the corpus with Pyserini
    # qrels that list relevant passages only: selectivity's irrelevant ones are the unjudged
    unjudged_irrelevant: bool = False
    topics: str = "topics.tsv"
    qrels: str = "qrels.txt"
    corpus: str | None = "corpus.jsonl"  # None: the texts are read out of ``index``
    index: str | None = None  # a given Lucene index; None: built from ``corpus`` into the cache
    # The DL set whose queries trained the profiles used here, so that no method is tested on the
    # queries it was trained on; DL20 for the others, having more training queries (54) than DL19.
    train_set: str = "dl20"

    def path(self, data_root: Path | None, name: str) -> Path:
        """One of the dataset's files: as given for a collection of files, else under the data root."""
        if not self.folder:
            return Path(name)
        return (data_root or default_data_root()) / self.folder / name


DATASETS: dict[str, Dataset] = {
    "dl19": Dataset("dl19", "msmarco-passage/dl19", 2, "run.bm25.txt", train_set="dl20"),
    "dl20": Dataset("dl20", "msmarco-passage/dl20", 2, "run.bm25.txt", train_set="dl19"),
    # Cranfield grades run 4 (complete answer) .. 1 (minimal interest): >= 2 excludes "minimal"
    "cranfield": Dataset("cranfield", "cranfield", 2, unjudged_irrelevant=True),
    "vaswani": Dataset("vaswani", "vaswani", 1, unjudged_irrelevant=True),  # binary
}
BUILT_IN = tuple(DATASETS)


def default_data_root() -> Path:
    """The shared data folder of the built-in datasets: ``$HEADRANK_DATA``."""
    env = os.environ.get(DATA_VARIABLE)
    if not env:
        raise InputError(
            f"the built-in datasets ({', '.join(BUILT_IN)}) need their data folder: "
            f"pass --data DIR or set {DATA_VARIABLE}=DIR"
        )
    return Path(env)


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}, or give your own with --collection"
        )
    return DATASETS[name]


_COLLECTION_KEYS = ("topics", "qrels", "corpus", "index", "run", "grade")


def parse_collection(values: Sequence[str]) -> Dataset:
    """``NAME topics=FILE qrels=FILE corpus=FILE.jsonl|index=DIR [run=FILE] [grade=N]`` as a
    :class:`Dataset` of absolute paths. Without ``run`` the first stage is BM25 over ``index``
    (built from ``corpus`` when not given); passage texts come from ``corpus``, else ``index``."""
    usage = "--collection NAME topics=FILE qrels=FILE corpus=FILE.jsonl|index=DIR [run=FILE] [grade=N]"
    name, *pairs = values
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name in BUILT_IN:
        raise InputError(f"{usage}: NAME must be letters, digits, - or _ and not a built-in name, got {name!r}")
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in _COLLECTION_KEYS or not value or key in given:
            raise InputError(f"{usage}: cannot read {pair!r} (keys: {', '.join(_COLLECTION_KEYS)}, each once)")
        given[key] = value
    if "topics" not in given or "qrels" not in given or not ({"corpus", "index"} & set(given)):
        raise InputError(f"{usage}: {name} needs topics=, qrels= and corpus= or index=")
    files = {k: _existing(k, v) for k, v in given.items() if k != "grade"}
    return Dataset(
        name,
        "",
        _grade(given.get("grade", "1")),
        bm25_run=files.get("run"),
        topics=files["topics"],
        qrels=files["qrels"],
        corpus=files.get("corpus"),
        index=files.get("index"),
    )


def _existing(key: str, value: str) -> str:
    path = Path(value).expanduser().resolve()
    if not (path.is_dir() if key == "index" else path.is_file()):
        raise InputError(f"--collection {key}={value}: no such {'folder' if key == 'index' else 'file'}")
    return str(path)


def _grade(value: str) -> int:
    if not value.isdigit():
        raise InputError(f"--collection grade= takes the lowest relevant qrels grade (a whole number), got {value!r}")
    return int(value)


def register(dataset: Dataset) -> Dataset:
    """Make a collection given as files known like the built-in ones (its profiles: DL20's, as for
    Cranfield and Vaswani)."""
    DATASETS[dataset.name] = dataset
    return dataset


def train_set(dataset: str) -> str:
    """The DL set whose trained profiles are tested on ``dataset``."""
    return DATASETS[dataset].train_set


@dataclass(frozen=True)
class Collection:
    """One dataset, ready to rank: its files and the BM25 first stage."""

    dataset: Dataset
    corpus: Path  # every passage text, Pyserini JSONL
    topics: Path
    qrels: Path
    run: Path  # first-stage top-100, TREC format


def prepare(dataset: Dataset, data_root: Path | None, runs_dir: Path, cache: Path) -> Collection:
    """The dataset's files, with its index, corpus and BM25 run made first where missing."""
    corpus, index = corpus_file(dataset, data_root, cache), index_folder(dataset, cache)
    run = first_stage_run(dataset, data_root, runs_dir)
    if dataset.corpus and not corpus.exists():
        raise InputError(f"{corpus} does not exist; point --data at the shared data folder")
    topics = dataset.path(data_root, dataset.topics)
    if not (run.exists() and corpus.exists()):
        source = dataset.path(data_root, dataset.corpus) if dataset.corpus else None
        _in_child(_first_stage_files, source, index, corpus, topics, run)
    return Collection(dataset, corpus, topics, dataset.path(data_root, dataset.qrels), run)


def _digest(*paths: object) -> str:
    """A short tag for a collection given as files, so that two of the same name do not share a cache entry."""
    return hashlib.sha256("\0".join(map(str, paths)).encode()).hexdigest()[:10]


def corpus_file(dataset: Dataset, data_root: Path | None, cache: Path) -> Path:
    """The passage texts: the given corpus, or the one read out of the given index into the cache."""
    if dataset.corpus:
        return dataset.path(data_root, dataset.corpus)
    return cache / "corpora" / f"{dataset.name}-{_digest(dataset.index)}.jsonl"


def index_folder(dataset: Dataset, cache: Path) -> Path:
    """The Lucene index: the given one, or built from the corpus once into the cache."""
    if dataset.index:
        return Path(dataset.index)
    tag = f"-{_digest(dataset.corpus)}" if not dataset.folder else ""
    return cache / "indexes" / f"{dataset.name}{tag}"


def first_stage_run(dataset: Dataset, data_root: Path | None, runs_dir: Path) -> Path:
    """Where the dataset's first-stage top-100 is: given, or searched once into ``runs_dir``."""
    if dataset.bm25_run:
        return dataset.path(data_root, dataset.bm25_run)
    tag = f"-{_digest(dataset.corpus, dataset.index, dataset.topics)}" if not dataset.folder else ""
    return runs_dir / "firststage" / f"{dataset.name}{tag}.bm25.trec"


def _in_child(target, *args) -> None:
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"{target.__name__}{args} failed in its child process (exit code {child.exitcode})")


def _first_stage_files(source: Path | None, index: Path, corpus: Path, topics: Path, run: Path) -> None:
    """Child process: build the index from ``source`` if missing, export its texts to ``corpus``
    if missing, search every topic into ``run`` if missing."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from headrank_ir.pipeline.firststage import write_bm25_run
    from headrank_ir.pipeline.index import build_index, export_corpus

    if not index.exists():
        build_index(source, index, threads=min(2, os.cpu_count() or 1))
    if not corpus.exists():
        export_corpus(index, corpus)
    if not run.exists():
        write_bm25_run(index, topics, run, HITS)


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
    if not collection.dataset.folder:
        register(collection.dataset)  # a cell's own process knows only the built-in datasets until now
    topics = read_topics_file(collection.topics)
    qrels = read_qrels_file(collection.qrels)
    judged = [q for q in query_order(topics.queries) if q in qrels]
    if len(judged) < len(topics.queries):
        logger.info(
            "%d of %d topics have no judgements and are left out",
            len(topics.queries) - len(judged),
            len(topics.queries),
        )
    ordered = Topics(topics.source, {q: topics.queries[q] for q in judged})
    requests = requests_from_run(ordered, read_trec_run(collection.run), collection.corpus, HITS, max_queries)
    return Loaded(requests, {r.query.qid: qrels[r.query.qid] for r in requests})
