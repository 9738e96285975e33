"""HeadRank's verbs inside other pipelines (rerankers' ``rank``, rank_llm's coordinator surface,
Pyserini hits), on a tiny model with a real tokenizer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pipeline_support import CRANFIELD, cranfield_index

from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.pipeline.firststage import rerank_hits, rerank_topics
from headrank_ir.pipeline.readers import read_corpus
from headrank_ir.records import Candidate, Query, Request

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
        [Candidate(d, s, {"contents": t}) for (d, t), s in zip(PASSAGES.items(), scores)],
    )


def test_rank_end_reranks_the_top_and_keeps_the_rest_below_in_order(ranker):
    result = ranker.rerank(request(), rank_end=3)
    top = ranker.rank(QUERY, list(PASSAGES.values())[:3], doc_ids=list(PASSAGES)[:3])
    assert [c.docid for c in result.candidates] == [r.doc_id for r in top] + ["d4", "d5"]
    assert [c.score for c in result.candidates[:3]] == [r.score for r in top]
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)


def test_rank_start_keeps_the_top_in_place(ranker):
    # the kept first candidate's docid sorts after every reranked one: were it scored level with
    # the window's best, the tie by docid would drop it below that one in a run file
    given = request()
    kept = Candidate("z1", given.candidates[0].score, given.candidates[0].doc)
    result = ranker.rerank(Request(given.query, [kept, *given.candidates[1:]]), rank_start=1, rank_end=4)
    window = ranker.rank(QUERY, list(PASSAGES.values())[1:4], doc_ids=list(PASSAGES)[1:4])
    assert [c.docid for c in result.candidates] == ["z1"] + [r.doc_id for r in window] + ["d5"]
    scores = [c.score for c in result.candidates]
    assert all(high > low for high, low in zip(scores, scores[1:]))  # strictly: no tie to break
    assert scores[0] == window[0].score + 1 and scores[-1] == window[-1].score - 1
    assert sorted(result.candidates, key=lambda c: (-c.score, c.docid)) == result.candidates


def test_bad_ranges_and_empty_requests(ranker):
    assert ranker.rerank(Request(Query(QUERY, "q"), [])).candidates == []
    with pytest.raises(ValueError, match="rank_start < rank_end"):
        ranker.rerank(request(), rank_start=3, rank_end=3)
    with pytest.raises(ValueError, match="shuffle_candidates"):
        ranker.rerank(request(), shuffle_candidates=True)


def test_rank_is_rerankers_shaped(ranker):
    ranked = ranker.rank(QUERY, list(PASSAGES.values()))
    assert [r.rank for r in ranked] == [1, 2, 3, 4, 5]
    assert sorted(r.doc_id for r in ranked) == [0, 1, 2, 3, 4]  # input positions without doc_ids
    assert ranked.top_k(2) == ranked.results[:2]
    best = ranked[0]
    assert ranked.get_score_by_docid(best.doc_id) == best.score and best.text == best.document.text
    assert ranker.rank(QUERY, []).results == []


def test_rerank_hits_of_a_lucene_searcher(ranker, tmp_path_factory):
    from headrank_ir.pipeline.jvm import ensure_java

    ensure_java()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(cranfield_index(tmp_path_factory.getbasetemp())))
    query = "what similarity laws must be obeyed when constructing aeroelastic models"
    hits = searcher.search(query, k=8)
    result = rerank_hits(ranker, query, hits, rank_end=5, qid="1")
    corpus = read_corpus(CRANFIELD / "corpus.jsonl", {h.docid for h in hits})
    top = ranker.rank(query, [corpus[h.docid] for h in hits[:5]], doc_ids=[h.docid for h in hits[:5]])
    assert [c.docid for c in result.candidates] == [r.doc_id for r in top] + [h.docid for h in hits[5:]]
    assert all(c.doc["contents"] == corpus[c.docid] for c in result.candidates)


class StandInSearcher:
    """What the first stage reads of Pyserini's ``LuceneSearcher``: ``batch_search`` returning, per
    qid, hits with ``docid``, ``score`` and ``lucene_document.get("raw")`` (a JSON raw document)."""

    def __init__(self, ranking: dict[str, list[str]]):
        self.ranking = ranking
        self.calls: list[tuple] = []

    @staticmethod
    def hit(docid: str, score: float) -> SimpleNamespace:
        raw = json.dumps({"id": docid, "contents": PASSAGES[docid]})
        return SimpleNamespace(docid=docid, score=score, lucene_document=SimpleNamespace(get={"raw": raw}.get))

    def search(self, query: str, k: int = 10) -> list[SimpleNamespace]:
        return [self.hit(d, 10.0 - i) for i, d in enumerate(self.ranking[query][:k])]

    def batch_search(self, queries, qids, k=10, threads=1):
        self.calls.append((list(queries), list(qids), k, threads))
        return {qid: self.search(query, k) for query, qid in zip(queries, qids) if self.ranking[query]}


def test_rerank_topics_goes_from_a_searcher_and_topics_to_a_run_file(ranker, tmp_path, caplog):
    from headrank_ir.pipeline.runfile import format_trec

    queries = {1: {"title": QUERY}, 2: {"title": "what is in a lobster roll"}, 3: {"title": "no hits at all"}}
    searcher = StandInSearcher(
        {QUERY: ["d4", "d1", "d5", "d2"], queries[2]["title"]: ["d3", "d2", "d1"], "no hits at all": []}
    )
    results = rerank_topics(ranker, searcher, queries, tmp_path / "run.txt", hits=3, rank_end=2, batch_size=2)
    assert searcher.calls == [([QUERY, queries[2]["title"], "no hits at all"], ["1", "2", "3"], 3, 1)]
    assert "1 queries have no first-stage hits" in caplog.text  # left out, with a line
    expected = [
        rerank_hits(ranker, topic["title"], searcher.search(topic["title"], k=3), rank_end=2, qid=qid)
        for qid, topic in list(queries.items())[:2]
    ]
    assert [r.query.qid for r in results] == ["1", "2"]
    assert [[c.docid for c in r.candidates] for r in results] == [[c.docid for c in r.candidates] for r in expected]
    assert [[c.score for c in r.candidates] for r in results] == [
        pytest.approx([c.score for c in r.candidates], abs=1e-5) for r in expected
    ]
    assert (tmp_path / "run.txt").read_text() == "".join(format_trec(r, "headrank") for r in results)
    assert [c.docid for c in results[0].candidates][2:] == ["d5"]  # below the reranked two, in BM25 order


def test_rerank_topics_takes_a_topics_file_and_rerank_hits_wants_a_qid(ranker, tmp_path):
    (tmp_path / "topics.tsv").write_text(f"q7\t{QUERY}\n")
    searcher = StandInSearcher({QUERY: ["d1", "d2", "d3"]})
    (result,) = rerank_topics(ranker, searcher, tmp_path / "topics.tsv", hits=3)  # no output: results only
    assert result.query.qid == "q7" and sorted(c.docid for c in result.candidates) == ["d1", "d2", "d3"]
    with pytest.raises(TypeError, match="qid"):
        rerank_hits(ranker, QUERY, searcher.search(QUERY))
    with pytest.raises(TypeError, match="topics must be a file"):
        rerank_topics(ranker, searcher, [QUERY])


def test_relative_index_paths_follow_the_current_folder(tmp_path_factory, monkeypatch):
    from headrank_ir.pipeline.firststage import open_searcher

    index = cranfield_index(tmp_path_factory.getbasetemp())
    open_searcher(str(index))  # the JVM is running, started in another folder
    monkeypatch.chdir(index.parent)
    assert open_searcher(index.name).search("aeroelastic models", k=1)


def test_rank_reads_the_given_order_as_the_first_stage_order(ranker):
    """The decision ``rank``'s docstring states: no canonical order; the documents are the first
    stage's ranking, best first, read exactly as ``rerank_batch`` reads its candidates."""
    for order in (list(PASSAGES), list(PASSAGES)[::-1]):
        ranked = ranker.rank(QUERY, [PASSAGES[d] for d in order], doc_ids=order)
        candidates = [Candidate(d, 0.0, {"contents": PASSAGES[d]}) for d in order]
        (result,) = ranker.rerank_batch([Request(Query(QUERY, "q"), candidates)], populate_invocations_history=True)
        assert [(r.doc_id, r.score) for r in ranked] == [(c.docid, c.score) for c in result.candidates]
        (window,) = result.invocations_history
        assert window.docids == order and window.positions == [4, 3, 2, 1, 0]  # the first given nearest the query
    forward = {r.doc_id: r.score for r in ranker.rank(QUERY, list(PASSAGES.values()), doc_ids=list(PASSAGES))}
    backward = {
        r.doc_id: r.score for r in ranker.rank(QUERY, list(PASSAGES.values())[::-1], doc_ids=list(PASSAGES)[::-1])
    }
    assert forward != backward  # the order is read, not normalised away


def test_rank_takes_rerankers_input_forms(ranker):
    texts = list(PASSAGES.values())
    (one,) = ranker.rank(QUERY, texts[0]).results  # one text
    assert (one.doc_id, one.text, one.score) == (0, texts[0], ranker.score(QUERY, texts[:1])[0])
    ranked = ranker.rank(QUERY, texts, doc_ids=list(PASSAGES), metadata=[{"n": i} for i in range(5)])
    again = ranker.rank(QUERY, sorted(ranked.results, key=lambda r: r.metadata["n"]))  # our results are documents too
    assert [(r.doc_id, r.score, r.metadata) for r in again] == [(r.doc_id, r.score, r.metadata) for r in ranked]
    with pytest.raises(TypeError, match="passages must be a list of str, got dict"):
        ranker.rank(QUERY, {"d1": texts[0]})


# -- rank_llm's surface (the real package: test_anchors.py) -----------------------------------------


def test_not_a_request_is_a_clear_type_error(ranker):
    with pytest.raises(TypeError, match=r"rank_llm-style Request: \.query\.text"):
        ranker.rerank_batch([{"query": "x"}])


def test_invocations_history_holds_every_heads_scores(ranker):
    (result,) = ranker.rerank_batch([request()], rank_end=4, populate_invocations_history=True)
    (window,) = result.invocations_history
    assert window.docids == ["d1", "d2", "d3", "d4"] and window.positions == [3, 2, 1, 0]  # reversed prompt
    assert len(window.head_scores) == len(ranker.profile.heads) and window.forward_passes == 2
    combined = [sum(w * row[j] for w, row in zip(ranker.reader.weights.tolist(), window.head_scores)) for j in range(4)]
    by_docid = {c.docid: c.score for c in result.candidates}
    assert combined == pytest.approx([by_docid[d] for d in window.docids], abs=1e-6)
    assert ranker.rerank(request()).invocations_history == []
