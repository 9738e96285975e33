"""HeadRank inside Pyserini, rank_llm and pygaggle pipelines, on a tiny model with a real tokenizer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from pipeline_support import CRANFIELD, cranfield_index

from headrank_ir.inputs import read_corpus
from headrank_ir.integrations import (
    PygaggleReranker,
    RankLLMReranker,
    as_request,
    rerank_hits,
    rerank_top,
)
from headrank_ir.records import Candidate, Query, Request, Result
from headrank_ir.reranker import HeadRanker
from headrank_ir.runfile import format_jsonl

PASSAGES = {
    "d1": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "d2": "Bananas are rich in potassium and fibre.",
    "d3": "Lobster rolls are a New England dish: lobster meat on a grilled bun.",
    "d4": "Gustave Eiffel's company designed and built the tower.",
    "d5": "The 2019 TREC Deep Learning track judged passages on a four-level scale.",
}
QUERY = "when was the eiffel tower built?"


@pytest.fixture(scope="module")
def ranker(tiny_model_dir):
    return HeadRanker.from_pretrained(tiny_model_dir)


def request(scores=(5.0, 4.0, 3.0, 2.0, 1.0)) -> Request:
    return Request(
        Query(QUERY, "q1"),
        [
            Candidate(d, s, {"contents": t})
            for (d, t), s in zip(PASSAGES.items(), scores)
        ],
    )


class Reverse:
    """A stand-in ranker with an obvious answer: the first-stage order reversed."""

    def rerank_batch(self, requests):
        return [
            Result(
                r.query,
                [
                    Candidate(c.docid, float(i), c.doc)
                    for i, c in enumerate(r.candidates)
                ][::-1],
            )
            for r in requests
        ]


def test_depth_reranks_the_top_and_keeps_the_rest_below_in_order():
    result = rerank_top(Reverse(), request(), depth=3)
    assert [c.docid for c in result.candidates] == ["d3", "d2", "d1", "d4", "d5"]
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert (
        rerank_top(Reverse(), Request(Query(QUERY, "q"), []), depth=3).candidates == []
    )
    with pytest.raises(ValueError, match="depth must be a positive"):
        rerank_top(Reverse(), request(), depth=0)


def test_full_depth_is_the_engine_result(ranker):
    assert rerank_top(ranker, request()) == ranker.rerank_request(request())


def test_rerank_hits_of_a_lucene_searcher(ranker, tmp_path_factory):
    from headrank_ir.java import ensure_java

    ensure_java()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(cranfield_index(tmp_path_factory.getbasetemp())))
    query = "what similarity laws must be obeyed when constructing aeroelastic models"
    hits = searcher.search(query, k=8)
    result = rerank_hits(ranker, query, hits, depth=5, qid="1")
    corpus = read_corpus(CRANFIELD / "corpus.jsonl", {h.docid for h in hits})
    expected = [
        hits[p.index].docid
        for p in ranker.rerank(query, [corpus[h.docid] for h in hits[:5]])
    ]
    assert [c.docid for c in result.candidates] == expected + [
        h.docid for h in hits[5:]
    ]
    assert all(c.doc["contents"] == corpus[c.docid] for c in result.candidates)


def test_relative_index_paths_follow_the_current_folder(tmp_path_factory, monkeypatch):
    from headrank_ir.firststage import open_searcher

    index = cranfield_index(tmp_path_factory.getbasetemp())
    open_searcher(str(index))  # the JVM is running, started in another folder
    monkeypatch.chdir(index.parent)
    assert open_searcher(index.name).search("aeroelastic models", k=1)


# -- rank_llm: these mirror rank_llm.data, which is not installed here -----------------------------


@dataclass
class RLQuery:
    text: str
    qid: str | int


@dataclass
class RLCandidate:
    docid: str | int
    score: float
    doc: dict[str, Any]


@dataclass
class RLRequest:
    query: RLQuery
    candidates: list[RLCandidate] = field(default_factory=list)


def rank_llm_request() -> RLRequest:
    r = request()
    return RLRequest(
        RLQuery(r.query.text, 1),
        [RLCandidate(c.docid, c.score, dict(c.doc)) for c in r.candidates],
    )


def test_rank_llm_requests_in_results_out_in_its_jsonl_shape(ranker):
    (result,) = RankLLMReranker(ranker).rerank_batch(
        [rank_llm_request()], rank_start=0, rank_end=3
    )
    expected = rerank_top(ranker, as_request(rank_llm_request()), depth=3)
    assert result == expected and result.query.qid == "1"
    # rank_llm's DataWriter.write_in_jsonl_format writes exactly these attribute dicts.
    as_rank_llm_writes = {
        "query": result.query.__dict__,
        "candidates": [c.__dict__ for c in result.candidates],
    }
    assert json.loads(format_jsonl(result)) == json.loads(
        json.dumps(as_rank_llm_writes)
    )


def test_rank_llm_rank_start_keeps_the_top_in_place(ranker):
    result = RankLLMReranker(ranker).rerank(
        rank_llm_request(), rank_start=1, rank_end=4
    )
    window = rerank_top(
        ranker, Request(Query(QUERY, "1"), request().candidates[1:]), depth=3
    )
    assert [c.docid for c in result.candidates] == ["d1"] + [
        c.docid for c in window.candidates
    ]
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)


def test_not_a_request_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"rank_llm-style Request: \.query\.text"):
        as_request({"query": "x"})


# -- pygaggle: Query/Text shaped like pygaggle.rerank.base ---------------------------------------


class PGQuery:
    def __init__(self, text: str):
        self.text = text


class PGText:
    def __init__(self, text: str, metadata: dict | None = None, score: float = 0.0):
        self.text, self.metadata, self.score = text, metadata or {}, score


def test_pygaggle_rerank_scores_copies_in_input_order(ranker):
    texts = [PGText(t, {"docid": d}) for d, t in PASSAGES.items()]
    scored = PygaggleReranker(ranker).rerank(PGQuery(QUERY), texts)
    assert [t.metadata["docid"] for t in scored] == list(PASSAGES)
    assert all(t.score == 0.0 for t in texts)
    best_first = [
        t.metadata["docid"] for t in sorted(scored, key=lambda t: t.score, reverse=True)
    ]
    assert best_first == [
        list(PASSAGES)[p.index] for p in ranker.rerank(QUERY, list(PASSAGES.values()))
    ]
