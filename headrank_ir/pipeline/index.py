"""Build a Lucene index from a JSONL corpus, with the settings reranking needs.

Pyserini's ``JsonCollection`` reads a *folder* of JSONL files (``{"id": …, "contents": …}`` per
line). The corpus (a file or a folder of them) is read with the reader ``--corpus`` uses and
handed to it as one such file in a private folder, so that every document is checked first and
indexed as ``--corpus`` reads it; the index is then counted against the corpus.
``--storeRaw`` keeps each document as written there, which is where the first stage reads the
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
from headrank_ir.outputs import locked, make_parents
from headrank_ir.pipeline.firststage import passage_text
from headrank_ir.pipeline.jvm import ensure_java, java_exception, quiet_anserini_logs
from headrank_ir.pipeline.readers import corpus_documents

logger = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class IndexSummary:
    path: Path
    documents: int


MARKER = ".headrank-index"  # written into every index this package builds; --overwrite needs it


def corpus_files(corpus: Path) -> list[Path]:
    """The JSONL files of ``corpus`` (a file, or a folder of them)."""
    if corpus.is_dir():
        files = sorted(p for p in corpus.iterdir() if p.is_file() and p.name.endswith(CORPUS_SUFFIXES))
        if not files:
            raise InputError(f"corpus folder {corpus} holds no {'/'.join(CORPUS_SUFFIXES)} file")
    elif corpus.is_file():
        files = [corpus]
    else:
        raise InputError(f"corpus {corpus} does not exist (give a JSONL file or a folder of them)")
    return files


def write_documents(files: list[Path], out: IO[bytes]) -> int:
    """Read every line of ``files`` with the reader ``--corpus`` uses and write it as Pyserini's
    ``{"id", "contents"}`` JSONL to ``out``; returns the count written (a document with empty
    text is left out with a warning naming its line, as Anserini would skip it).

    So the index holds exactly what ``--corpus`` would read (BEIR's ``title`` + ``text`` joined
    by the same rule), and a broken line, a document without text or a docid given twice is an
    error naming its file and line before Java starts, never a document silently skipped.
    """
    count = 0
    empty: list[str] = []
    for docid, contents, path, number in corpus_documents(files):
        count += 1
        if not contents.strip():
            empty.append(f"{path}:{number}")  # Anserini skips these ("empty"); said here, by line
            continue
        out.write((json.dumps({"id": docid, "contents": contents}, ensure_ascii=False) + "\n").encode("utf-8"))
    if not count:
        raise InputError(f"no documents in this corpus {'folder' if len(files) > 1 else 'file'}", files[0])
    if empty:
        logger.warning(
            "%d document(s) with empty text are not indexed, as Pyserini skips them: %s",
            len(empty),
            ", ".join(empty[:3]) + (" …" if len(empty) > 3 else ""),
        )
    if len(empty) == count:
        raise InputError(f"every document of this corpus has empty text ({count})", files[0])
    return count - len(empty)


def build_index(
    corpus: os.PathLike | str, index: os.PathLike | str, threads: int = 1, overwrite: bool = False
) -> IndexSummary:
    """Index ``corpus`` (a JSONL file or a folder of JSONL files) into the folder ``index``.

    Raises :class:`InputError` when the corpus is unusable (any line, see
    :func:`write_documents`), when ``index`` exists and ``overwrite`` is false or it is not an
    index this package built, when another build into ``index`` is running, or when Anserini
    indexes another number of documents than the corpus holds.
    """
    corpus, index = Path(corpus), Path(index)
    files = corpus_files(corpus)
    _check_target(index, files, overwrite)
    make_parents(index, "--index")  # the output guard's: a parent that is a file is one line
    with _IndexLock(index):
        _check_target(index, files, overwrite)  # again, now that no other build can change it
        staging = index.with_name(f".{index.name}.building-{os.getpid()}")
        source = index.with_name(f".{index.name}.input-{os.getpid()}")
        try:
            source.mkdir()
            with open(source / "corpus.jsonl", "wb") as out:
                expected = write_documents(files, out)
            _run_indexer(source, staging, threads)
            documents = count_documents(staging)
            if documents != expected:
                raise InputError(
                    f"Anserini indexed {documents} of the {expected} documents of {corpus}; the index is not kept"
                )
            (staging / MARKER).write_text(
                json.dumps({"made_by": "headrank_ir.index", "corpus": str(corpus), "documents": documents}) + "\n"
            )
            _move_into_place(staging, index)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(source, ignore_errors=True)
    logger.debug("indexed %d documents of %s into %s", documents, corpus, index)
    return IndexSummary(index, documents)


def _check_target(index: Path, files: list[Path], overwrite: bool) -> None:
    """``index`` may be replaced only when it is an index this package built and holds no input."""
    if not index.exists() and not index.is_symlink():
        return
    if not overwrite:
        raise InputError(f"--index {index} already exists; pass --overwrite to rebuild it")
    if index.is_symlink() or not index.is_dir():
        raise InputError(f"--index {index} is not a folder; --overwrite replaces only an index this command built")
    inside = [f for f in files if f.resolve().is_relative_to(index.resolve())]
    if inside:
        raise InputError(f"--index {index} holds the corpus {inside[0]}; --overwrite never replaces an input")
    if not (index / MARKER).is_file():
        raise InputError(
            f"--index {index} was not built by this command (no {MARKER} in it); --overwrite replaces only "
            "such an index: remove the folder yourself or choose another --index"
        )


def _IndexLock(index: Path):  # noqa: N802 (was a class; the one output lock now)
    """The output guard's lock on ``.INDEX.lock`` beside the index, for the whole build: a second
    build into the same folder fails at once instead of both 'succeeding'."""
    return locked(index, "--index")


def _run_indexer(source: Path, staging: Path, threads: int) -> None:
    ensure_java()
    from pyserini.pyclass import autoclass  # puts Anserini's jar on the JVM's classpath

    quiet_anserini_logs()  # its ~35 INFO lines on stdout; warnings and errors still show

    args = [
        "-collection", "JsonCollection",
        "-input", str(source.resolve()),
        "-index", str(staging.resolve()),
        "-generator", "DefaultLuceneDocumentGenerator",
        "-threads", str(threads),
        "-storePositions", "-storeDocvectors", "-storeRaw",
        "-quiet",  # else IndexCollection sets its AbstractIndexer logger back to INFO
    ]  # fmt: skip
    logger.debug("indexing %s with %d thread(s)", source, threads)
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
