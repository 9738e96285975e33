"""Build a Lucene index from a JSONL corpus, with the settings reranking needs.

Pyserini's ``JsonCollection`` reads a *folder* of JSONL files (``{"id": …, "contents": …}`` per
line); a single corpus file is handed to it through a private folder holding only a link to
it. ``--storeRaw`` keeps each document as given, which is where the first stage reads the
passage texts back from (``firststage.passage_text``); positions and document vectors are
stored as ``pyserini.index.lucene``'s documented BM25 recipe does. The index is built into a
temporary folder beside the target and renamed into place only when complete, so an
interrupted build never leaves a half index where a searcher would open it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from headrank_ir.atomic import write_atomic_with
from headrank_ir.errors import InputError
from headrank_ir.pipeline.firststage import passage_text
from headrank_ir.pipeline.jvm import ensure_java, java_exception

logger = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class IndexSummary:
    path: Path
    documents: int


def corpus_files(corpus: Path) -> list[Path]:
    """The JSONL files of ``corpus`` (a file, or a folder of them), checked as far as indexing
    needs: they exist, and the first document of each has the ``id`` and ``contents`` that
    Pyserini's ``JsonCollection`` indexes."""
    if corpus.is_dir():
        files = sorted(p for p in corpus.iterdir() if p.is_file() and p.name.endswith(CORPUS_SUFFIXES))
        if not files:
            raise InputError(f"corpus folder {corpus} holds no {'/'.join(CORPUS_SUFFIXES)} file")
    elif corpus.is_file():
        files = [corpus]
    else:
        raise InputError(f"corpus {corpus} does not exist (give a JSONL file or a folder of them)")
    for path in files:
        _check_first_document(path)
    return files


def _check_first_document(path: Path) -> None:
    if path.name.endswith(".gz"):
        return  # JsonCollection reads gzip itself; peeking would mean decompressing here too
    with path.open(encoding="utf-8", errors="replace") as handle:
        line = next((line for line in handle if line.strip()), None)
    if line is None:
        raise InputError("no documents in this corpus file", path)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"not JSONL: {error.msg}", path, 1) from None
    if not isinstance(record, dict) or "id" not in record or "contents" not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise InputError(
            f'Pyserini indexes {{"id": …, "contents": …}} per line; the first document has {keys}', path, 1
        )


def build_index(
    corpus: os.PathLike | str, index: os.PathLike | str, threads: int = 1, overwrite: bool = False
) -> IndexSummary:
    """Index ``corpus`` (a JSONL file or a folder of JSONL files) into the folder ``index``.

    Raises :class:`InputError` when the corpus is unusable, when ``index`` exists and
    ``overwrite`` is false, or when Anserini fails or indexes no document.
    """
    corpus, index = Path(corpus), Path(index)
    files = corpus_files(corpus)
    if index.exists() and not overwrite:
        raise InputError(f"--index {index} already exists; pass --overwrite to rebuild it")
    index.parent.mkdir(parents=True, exist_ok=True)
    staging = index.with_name(f".{index.name}.building-{os.getpid()}")
    source = index.with_name(f".{index.name}.input-{os.getpid()}")
    try:
        _run_indexer(_input_folder(corpus, files, source), staging, threads)
        documents = count_documents(staging)
        if documents == 0:
            raise InputError(
                f"Anserini indexed no document of {corpus}: are its lines JSON objects with id and contents?"
            )
        _move_into_place(staging, index)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)
    logger.info("indexed %d documents of %s into %s", documents, corpus, index)
    return IndexSummary(index, documents)


def _input_folder(corpus: Path, files: list[Path], source: Path) -> Path:
    """The folder to hand ``JsonCollection``: the corpus folder itself, or one linking to the file."""
    if corpus.is_dir():
        return corpus
    source.mkdir()
    (source / files[0].name).symlink_to(files[0].resolve())
    return source


def _run_indexer(source: Path, staging: Path, threads: int) -> None:
    ensure_java()
    from pyserini.pyclass import autoclass  # puts Anserini's jar on the JVM's classpath

    args = [
        "-collection", "JsonCollection",
        "-input", str(source.resolve()),
        "-index", str(staging.resolve()),
        "-generator", "DefaultLuceneDocumentGenerator",
        "-threads", str(threads),
        "-storePositions", "-storeDocvectors", "-storeRaw",
    ]  # fmt: skip
    logger.info("indexing %s with %d thread(s)", source, threads)
    try:
        autoclass("io.anserini.index.IndexCollection").main(args)
    except java_exception() as error:
        raise InputError(f"Anserini could not index {source}: {(str(error).splitlines() or ['?'])[0]}") from None


def count_documents(index: Path) -> int:
    ensure_java()
    from pyserini.index.lucene import LuceneIndexReader

    return int(LuceneIndexReader(str(index.resolve())).stats()["documents"])


def _move_into_place(staging: Path, index: Path) -> None:
    """Rename the finished index into place; an old one is moved aside first, removed after."""
    old = index.with_name(f".{index.name}.old-{os.getpid()}")
    if index.exists():
        os.replace(index, old)
    os.replace(staging, index)
    shutil.rmtree(old, ignore_errors=True)


def export_corpus(index: os.PathLike | str, corpus: os.PathLike | str) -> int:
    """Write every document's stored raw text of ``index`` as ``{"id", "contents"}`` JSONL (for a
    collection given by its index only); atomic like the index itself. Returns the count."""
    ensure_java()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(Path(index).resolve()))

    def write(out: IO[bytes]) -> None:
        for number in range(searcher.num_docs):
            document = searcher.doc(number)
            docid = document.docid()
            record = {"id": docid, "contents": passage_text(document.raw(), docid)}
            out.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

    write_atomic_with(corpus, write)
    logger.info("wrote the %d stored documents of %s to %s", searcher.num_docs, index, corpus)
    return searcher.num_docs
