"""Short names for Pyserini resources (``dl19``, ``msmarco``, ``scifact`` …), and topics and qrels
given either as a file or as such a name.

Names go through Pyserini; files are read by :mod:`headrank_ir.pipeline.readers`, because
Pyserini dispatches topic files partly by path (any path containing ``beir`` or ``cacm`` gets a
special reader) and its errors name neither file nor line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from headrank_ir.errors import InputError
from headrank_ir.pipeline.jvm import ensure_java, java_exception
from headrank_ir.pipeline.readers import TOPIC_SUFFIXES, Topics, add_topic, read_qrels_file, read_topics_file

NameKind = Literal["index", "topics", "qrels"]


@dataclass(frozen=True)
class Names:
    index: str
    topics: str
    qrels: str


_BEIR_SETS = """arguana bioasq climate-fever dbpedia-entity fever fiqa hotpotqa nfcorpus nq quora robust04
scidocs scifact signal1m trec-covid trec-news webis-touche2020 cqadupstack-android cqadupstack-english
cqadupstack-gaming cqadupstack-gis cqadupstack-mathematica cqadupstack-physics cqadupstack-programmers
cqadupstack-stats cqadupstack-tex cqadupstack-unix cqadupstack-webmasters cqadupstack-wordpress"""

ALIASES: dict[str, Names] = {
    "msmarco": Names("msmarco-v1-passage", "msmarco-passage-dev-subset", "msmarco-passage-dev-subset"),
    "dl19": Names("msmarco-v1-passage", "dl19-passage", "dl19-passage"),
    "dl20": Names("msmarco-v1-passage", "dl20", "dl20-passage"),
    **{n: Names(f"beir-v1.0.0-{n}.flat", f"beir-v1.0.0-{n}-test", f"beir-v1.0.0-{n}-test") for n in _BEIR_SETS.split()},
}


def resolve_name(name: str, kind: NameKind) -> str:
    """The Pyserini name for a short alias (``dl19`` → ``dl19-passage`` …); other names pass through."""
    names = ALIASES.get(name)
    return getattr(names, kind) if names else name


def _is_file_spec(value: str) -> bool:
    """A file, or meant as one: a missing ``topics.tsv`` is a missing file, not an unknown name."""
    return (
        Path(value).exists()
        or os.sep in value
        or value.startswith(".")
        or Path(value).suffix.lower() in TOPIC_SUFFIXES | {".gz"}
    )


def _pyserini_order(qids: Iterable[str]) -> list[str]:
    """Pyserini's query order: numeric when every id is a number, else by string."""
    qids = list(qids)
    return sorted(qids, key=int) if all(q.isdigit() for q in qids) else sorted(qids)


def fetch_from_pyserini(spec: str, kind: Literal["topics", "qrels"]) -> tuple[str, Any]:
    """``(name, get_topics(name))`` or ``(name, get_qrels_file(name))`` for a Pyserini name or alias.

    Pyserini downloads topics and qrels on first use; offline the download fails with a bare
    Java exception, which becomes an error suggesting to pass a file instead.
    """
    name = resolve_name(spec, kind)
    ensure_java()
    from pyserini.search import get_qrels_file, get_topics

    fetch = get_topics if kind == "topics" else get_qrels_file
    try:
        return name, fetch(name)
    except (
        ValueError,
        FileNotFoundError,
    ):  # how get_topics / get_qrels_file say "unknown name"
        raise InputError(
            f"unknown {kind} {spec!r}: not a file and not a Pyserini {kind} name "
            f"(aliases: {', '.join(list(ALIASES)[:5])}, …)"
        ) from None
    except java_exception() as error:
        raise InputError(
            f"could not fetch Pyserini {kind} {name!r} ({str(error).splitlines()[0]}); Pyserini "
            f"downloads {kind} on first use, so offline pass a file instead (--{kind} FILE)"
        ) from None


def read_topics(spec: str) -> Topics:
    """Topics from a file, or from a Pyserini topics name or alias (``dl19``, ``scifact`` …)."""
    if _is_file_spec(spec):
        return read_topics_file(spec)
    name, topics = fetch_from_pyserini(spec, "topics")
    by_qid = {str(qid): topic for qid, topic in topics.items()}
    queries: dict[str, str] = {}
    for qid in _pyserini_order(by_qid):
        add_topic(queries, qid, by_qid[qid].get("title", ""), Path(name), None)
    return Topics(name, queries)


def read_qrels(spec: str) -> dict[str, dict[str, int]]:
    """Qrels from a file, or from a Pyserini qrels name or alias (``dl19`` → ``dl19-passage`` …)."""
    if _is_file_spec(spec):
        return read_qrels_file(spec)
    return read_qrels_file(fetch_from_pyserini(spec, "qrels")[1])
