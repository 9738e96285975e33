"""HeadRanker inside the real rank_llm 0.25.7 and next to the real rerankers 0.10.0 (both installed by
tools/install.sh), on a tiny model with a real tokenizer.

rank_llm's reranker module imports two things this machine cannot: ``vllm`` (a GPU engine, imported at
module top) and ``rank_llm.rerank.listwise.rank_fid`` (its T5 code needs a helper transformers 5
removed). Those two, and nothing else, are stubbed in ``sys.modules``.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.pipeline.readers import read_trec_run
from headrank_ir.pipeline.runfile import format_jsonl, read_results_jsonl

PASSAGES = {
    "p1": "A lobster roll is lobster meat served on a grilled hot dog-style bun, with butter or mayonnaise.",
    "p2": "The Eiffel Tower was built from 1887 to 1889 as the entrance arch of the 1889 World's Fair.",
    "p3": "Potassium helps muscles contract; bananas and potatoes are good sources.",
    "p4": "Maine and Connecticut disagree on whether the roll is served cold with mayonnaise or warm with butter.",
    "p5": "Wrought iron lattice towers need repainting every seven years to prevent rust.",
}
QUERIES = {101: "when was the eiffel tower built?", 102: "what is in a lobster roll"}
DEPTH = 4


def _stubs() -> dict[str, types.ModuleType]:
    vllm = types.ModuleType("vllm")
    vllm.__path__ = []  # a package: rank_llm also imports ``vllm.outputs``
    outputs = types.ModuleType("vllm.outputs")
    vllm.outputs = outputs
    vllm.LLM = type("LLM", (), {})
    vllm.RequestOutput = outputs.RequestOutput = type("RequestOutput", (), {})
    rank_fid = types.ModuleType("rank_llm.rerank.listwise.rank_fid")
    rank_fid.RankFiDDistill = type("RankFiDDistill", (), {})
    rank_fid.RankFiDScore = type("RankFiDScore", (), {})
    return {"vllm": vllm, "vllm.outputs": outputs, "rank_llm.rerank.listwise.rank_fid": rank_fid}


@pytest.fixture(scope="module")
def rank_llm():
    """rank_llm's ``data`` and ``rerank.reranker`` modules, imported over the two stubs."""
    with pytest.MonkeyPatch.context() as patch:
        for name, module in _stubs().items():
            patch.setitem(sys.modules, name, module)
        import rank_llm.data as data
        import rank_llm.rerank.reranker as reranker
    return types.SimpleNamespace(data=data, Reranker=reranker.Reranker)


@pytest.fixture(scope="module")
def ranker(tiny_model_dir):
    return HeadRanker.from_pretrained(tiny_model_dir)


def rank_llm_requests(data) -> list:
    """rank_llm's own records, as its retrievers build them: int qids, BM25-like scores."""
    candidates = [
        data.Candidate(docid, 10.0 - i, {"contents": text}) for i, (docid, text) in enumerate(PASSAGES.items())
    ]
    return [data.Request(data.Query(text, qid), list(candidates)) for qid, text in QUERIES.items()]


def test_rank_llms_reranker_drives_headranker_with_its_own_requests(rank_llm, ranker):
    requests = rank_llm_requests(rank_llm.data)
    results = rank_llm.Reranker(ranker).rerank_batch(requests, rank_end=DEPTH)  # positional inside rank_llm
    docids, texts = list(PASSAGES), list(PASSAGES.values())
    for (qid, query), result in zip(QUERIES.items(), results):
        top = ranker.rank(query, texts[:DEPTH], doc_ids=docids[:DEPTH])
        assert result.query.qid == str(qid) and result.query.text == query
        assert [c.docid for c in result.candidates] == [r.doc_id for r in top] + docids[DEPTH:]
        # batched (both queries in one padded forward) against one query alone: float precision
        assert [c.score for c in result.candidates[:DEPTH]] == pytest.approx([r.score for r in top], rel=1e-5)
    one = rank_llm.Reranker(ranker).rerank(requests[1], rank_end=DEPTH)  # rank_llm passes keywords here
    assert [c.docid for c in one.candidates] == [c.docid for c in results[1].candidates]
    assert [c.score for c in one.candidates] == pytest.approx([c.score for c in results[1].candidates], rel=1e-5)


def test_rank_llms_data_writer_writes_our_results(rank_llm, ranker, tmp_path):
    requests = rank_llm_requests(rank_llm.data)
    results = rank_llm.Reranker(ranker).rerank_batch(requests, rank_end=DEPTH, populate_invocations_history=True)
    writer = rank_llm.data.DataWriter(results)
    writer.write_in_trec_eval_format(str(tmp_path / "run.trec"))
    writer.write_in_jsonl_format(str(tmp_path / "run.jsonl"))
    writer.write_inference_invocations_history(str(tmp_path / "history.json"))

    run = read_trec_run(tmp_path / "run.trec")
    for result in results:
        hits = run.hits[result.query.qid]
        assert [(h.docid, h.score) for h in hits] == [(c.docid, pytest.approx(c.score)) for c in result.candidates]
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(format_jsonl(r)) for r in results]
    assert read_results_jsonl(tmp_path / "run.jsonl") == [type(r)(r.query, r.candidates) for r in results]
    # and rank_llm reads our JSONL back as its own requests (dacite, strict types)
    assert [r.query.qid for r in rank_llm.data.read_requests_from_file(str(tmp_path / "run.jsonl"))] == ["101", "102"]

    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["query"]["qid"] for h in history] == ["101", "102"]
    for entry, result in zip(history, results):
        (window,) = entry["invocations_history"]
        assert window["docids"] == list(PASSAGES)[:DEPTH] and window["forward_passes"] == 2
        assert window["head_scores"] == result.invocations_history[0].head_scores
        assert len(window["head_scores"]) == len(ranker.profile.heads)


def test_rank_llms_write_rerank_results_names_files_by_our_coordinator(rank_llm, ranker, tmp_path):
    reranker = rank_llm.Reranker(ranker)
    results = reranker.rerank_batch(rank_llm_requests(rank_llm.data), rank_end=DEPTH)
    written = reranker.write_rerank_results(
        "bm25",
        results,
        top_k_candidates=DEPTH,
        dataset_name="toy",
        rerank_results_dirname=str(tmp_path / "rerank_results"),
        inference_invocations_history_dirname=str(tmp_path / "history"),
    )
    name = ranker.get_output_filename(DEPTH, "toy")
    assert written == f"{tmp_path}/rerank_results/bm25/{name}_vllm.txt"  # rank_llm appends its backend
    assert set(read_trec_run(written).hits) == {"101", "102"}
    assert (tmp_path / "history" / "bm25" / f"{name}_vllm.json").exists()


# -- rerankers ---------------------------------------------------------------------------------------


def as_rerankers_builds_it(query, docs, doc_ids, scores, metadata=None):
    """rerankers' own ``RankedResults`` from the same scores, built as its TransformerRanker builds it."""
    from rerankers.results import RankedResults, Result
    from rerankers.utils import prep_docs

    documents = prep_docs(list(docs), doc_ids, metadata)
    ranked = sorted(zip(documents, scores), key=lambda x: x[1], reverse=True)
    results = [Result(document=doc, score=score, rank=i + 1) for i, (doc, score) in enumerate(ranked)]
    return RankedResults(results=results, query=query, has_scores=True)


def read_as_a_rerankers_user(ranked, doc_ids):
    """What code written against rerankers reads from a ``RankedResults``."""
    best = ranked.top_k(1)[0]
    return {
        "listed": [(r.rank, r.doc_id, r.document.doc_id, r.text, r.document.text, r.metadata) for r in ranked],
        "top_k": [(r.doc_id, r.score) for r in ranked.top_k(3)],
        "by_docid": [ranked.get_score_by_docid(d) for d in doc_ids],
        "result_by_docid": ranked.get_result_by_docid(doc_ids[-1]).text,
        "count": ranked.results_count(),
        "first": (ranked[0].doc_id, ranked[0].score, best.doc_id),
        "query": ranked.query,
    }


@pytest.mark.parametrize("with_ids", [True, False])
def test_rerankers_code_reads_ours_as_it_reads_its_own(ranker, with_ids):
    query, docs = QUERIES[101], list(PASSAGES.values())
    doc_ids = list(PASSAGES) if with_ids else None
    metadata = [{"source": docid} for docid in PASSAGES] if with_ids else None
    ours = ranker.rank(query, docs, doc_ids=doc_ids, metadata=metadata)
    theirs = as_rerankers_builds_it(query, docs, doc_ids, ranker.score(query, docs), metadata)
    ids = doc_ids or list(range(len(docs)))
    assert read_as_a_rerankers_user(ours, ids) == read_as_a_rerankers_user(theirs, ids)
    assert len({r.score for r in ours}) == len(docs)  # no ties: the two tie rules are not what is compared


def test_rank_metadata_must_match_the_documents(ranker):
    with pytest.raises(ValueError, match="1 metadata for 2 passages"):
        ranker.rank("q", ["a", "b"], metadata=[{}])
