"""HeadRanker inside the real rank_llm 0.25.7 and the real rerankers 0.10.0 (both installed by
tools/install.sh), on a tiny model with a real tokenizer.

rank_llm's reranker module imports two things this machine cannot: ``vllm`` (a GPU engine, imported at
module top) and ``rank_llm.rerank.listwise.rank_fid`` (its T5 code needs a helper transformers 5
removed). ``headrank_ir.integrations.rank_llm.import_rank_llm`` stubs those two for the import only;
the tests import rank_llm through it, as the docs tell users to.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

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


@pytest.fixture(scope="module")
def rank_llm():
    """rank_llm's ``data`` and ``rerank`` modules, imported through the shipped shim."""
    from headrank_ir.integrations.rank_llm import import_rank_llm

    rerank = import_rank_llm()
    import rank_llm.data as data
    from rank_llm.rerank.listwise.listwise_rankllm import ListwiseRankLLM

    return types.SimpleNamespace(data=data, Reranker=rerank.Reranker, ListwiseRankLLM=ListwiseRankLLM, rerank=rerank)


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
        assert type(result) is rank_llm.data.Result and result.query.qid == qid and result.query.text == query
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
        hits = run.hits[str(result.query.qid)]
        assert [(h.docid, h.score) for h in hits] == [(c.docid, pytest.approx(c.score)) for c in result.candidates]
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(format_jsonl(r)) for r in results]
    assert [(r.query.qid, [c.docid for c in r.candidates]) for r in read_results_jsonl(tmp_path / "run.jsonl")] == [
        (str(r.query.qid), [c.docid for c in r.candidates]) for r in results
    ]
    # and rank_llm reads the JSONL back as its own requests (dacite, strict types), the qids as given
    assert [r.query.qid for r in rank_llm.data.read_requests_from_file(str(tmp_path / "run.jsonl"))] == [101, 102]

    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["query"]["qid"] for h in history] == [101, 102]
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


def test_the_import_shim_leaves_no_stub_behind(rank_llm):
    import sys

    assert "vllm" not in sys.modules and "rank_llm.rerank.listwise.rank_fid" not in sys.modules
    assert rank_llm.rerank.IdentityReranker().get_name() == "identity_reranker"  # rank_llm's own code


def test_top_k_retrieve_caps_rank_end_as_rank_llms_coordinators_do(rank_llm, ranker):
    requests = rank_llm_requests(rank_llm.data)
    capped = rank_llm.Reranker(ranker).rerank_batch(requests, rank_end=DEPTH, top_k_retrieve=2)
    two = rank_llm.Reranker(ranker).rerank_batch(requests, rank_end=2)
    assert [[c.docid for c in r.candidates] for r in capped] == [[c.docid for c in r.candidates] for r in two]
    assert [c.docid for c in capped[0].candidates[2:]] == list(PASSAGES)[2:]  # the rest below, in given order
    with pytest.raises(ValueError, match="top_k_retrieve caps rank_end"):
        ranker.rerank_batch(requests, rank_start=2, top_k_retrieve=2)


def reversing_stage(rank_llm):
    """rank_llm's own listwise coordinator (sliding windows, ``receive_permutation``,
    ``shuffle_and_rescore``) over a stubbed model that answers every window reversed."""

    class Reversing(rank_llm.ListwiseRankLLM):
        def rerank_batch(self, requests, rank_start=0, rank_end=100, shuffle_candidates=False, logging=False, **kw):
            top_k_retrieve = kw.get("top_k_retrieve", rank_end)  # as RankListwiseOSLLM.rerank_batch
            return self.sliding_windows_batched(
                requests, rank_start, min(rank_end, top_k_retrieve), top_k_retrieve, shuffle_candidates, logging
            )

        def run_llm_batched(self, prompts, current_window_size=None, **kw):
            return [self.run_llm(p, current_window_size) for p in prompts]

        def run_llm(self, prompt, current_window_size=None, **kw):
            return " > ".join(f"[{i}]" for i in range(current_window_size, 0, -1)), current_window_size

        def create_prompt_batched(self, results, rank_start, rank_end):
            return [self.create_prompt(r, rank_start, rank_end) for r in results]

        def create_prompt(self, result, rank_start, rank_end):
            return " ".join(c.docid if isinstance(c.docid, str) else str(c.docid) for c in result.candidates), 1

        def get_num_tokens(self, prompt):
            return 1

        def cost_per_1k_token(self, input_token):
            return 0.0

        def num_output_tokens(self):
            return 1

    template = Path(rank_llm.rerank.__file__).parent / "prompt_templates" / "rank_zephyr_template.yaml"
    return Reversing("stub", 4096, prompt_template_path=str(template), window_size=DEPTH, stride=DEPTH)


def test_a_chain_headrank_then_a_rank_llm_stage_then_its_data_writer(rank_llm, ranker, tmp_path):
    data = rank_llm.data
    requests = rank_llm_requests(data)
    # the second query with int docids, as a retriever over an int-keyed collection gives them
    requests[1] = data.Request(
        requests[1].query, [data.Candidate(i, c.score, c.doc) for i, c in enumerate(requests[1].candidates)]
    )
    given = [[(c.docid, c.score, dict(c.doc)) for c in r.candidates] for r in requests]
    first = rank_llm.Reranker(ranker).rerank_batch(requests, rank_end=DEPTH)
    assert [[(c.docid, c.score, c.doc) for c in r.candidates] for r in requests] == given  # inputs untouched
    assert all(type(c) is data.Candidate for r in first for c in r.candidates)
    assert [type(c.docid) for c in first[1].candidates] == [int] * len(PASSAGES)

    stage = rank_llm.Reranker(reversing_stage(rank_llm))
    second = stage.rerank_batch(first, rank_end=DEPTH)  # receive_permutation assigns candidate.score
    for before, after in zip(first, second):
        head = [c.docid for c in before.candidates]
        assert [c.docid for c in after.candidates] == head[:DEPTH][::-1] + head[DEPTH:]
    shuffled = stage.rerank_batch(first, rank_end=DEPTH, shuffle_candidates=True)  # shuffle_and_rescore too
    assert [sorted(map(str, (c.docid for c in r.candidates))) for r in shuffled] == [
        sorted(map(str, (c.docid for c in r.candidates))) for r in first
    ]

    third = rank_llm.Reranker(ranker).rerank_batch(second, rank_end=DEPTH)  # rank_llm's Results back into HeadRank
    assert all(type(r) is data.Result for r in third) and [r.query.qid for r in third] == [101, 102]
    assert [sorted(c.docid for c in r.candidates[:DEPTH]) for r in third] == [
        sorted(c.docid for c in r.candidates[:DEPTH]) for r in first
    ]

    data.DataWriter(second).write_in_jsonl_format(str(tmp_path / "run.jsonl"))
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert [line["query"]["qid"] for line in lines] == [101, 102]  # ints in, ints out
    assert [c["docid"] for c in lines[1]["candidates"]] == [c.docid for c in second[1].candidates]
    assert all(isinstance(c["docid"], int) for c in lines[1]["candidates"])
    assert all(isinstance(c["docid"], str) for c in lines[0]["candidates"])


def test_our_own_records_go_to_a_rank_llm_stage_through_to_rank_llm(rank_llm, ranker):
    from dataclasses import FrozenInstanceError

    from headrank_ir.integrations.rank_llm import to_rank_llm
    from headrank_ir.records import Candidate, Query, Request

    ours = [Request(Query(QUERIES[101], "101"), [Candidate(d, 1.0, {"contents": t}) for d, t in PASSAGES.items()])]
    (result,) = ranker.rerank_batch(ours, rank_end=DEPTH)  # this package's records in: its frozen records out
    stage = rank_llm.Reranker(reversing_stage(rank_llm))
    with pytest.raises(FrozenInstanceError):
        stage.rerank_batch([result], rank_end=DEPTH)
    (theirs,) = stage.rerank_batch(to_rank_llm([result]), rank_end=DEPTH)
    assert [c.docid for c in theirs.candidates] == [c.docid for c in result.candidates[:DEPTH]][::-1] + [
        c.docid for c in result.candidates[DEPTH:]
    ]


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


@pytest.fixture(scope="module")
def head_rank_ranker(ranker):
    from headrank_ir.rerankers_ranker import HeadRankRanker

    return HeadRankRanker(ranker)


def test_headrankranker_is_one_of_rerankers_rankers(head_rank_ranker, ranker):
    import asyncio

    from rerankers import Document
    from rerankers.models.ranker import BaseRanker
    from rerankers.results import RankedResults, Result

    query, docs = QUERIES[101], list(PASSAGES.values())
    assert isinstance(head_rank_ranker, BaseRanker)
    ranked = head_rank_ranker.rank(query, docs, doc_ids=list(PASSAGES), metadata=[{"source": d} for d in PASSAGES])
    assert type(ranked) is RankedResults and all(type(r) is Result for r in ranked)
    ours = ranker.rank(query, docs, doc_ids=list(PASSAGES))
    assert [(r.doc_id, r.score, r.rank) for r in ranked] == [(r.doc_id, r.score, r.rank) for r in ours]
    assert [r.source for r in ranked] == [r.doc_id for r in ranked]  # metadata keys are attributes, as in rerankers

    documents = [Document(text, doc_id=docid, metadata={"source": docid}) for docid, text in PASSAGES.items()]
    from_documents = head_rank_ranker.rank(query, documents)
    assert [(r.doc_id, r.score, r.source) for r in from_documents] == [(r.doc_id, r.score, r.source) for r in ranked]
    (one,) = head_rank_ranker.rank(query, docs[1]).results  # one text, as rerankers takes it
    assert (one.doc_id, one.rank, one.text) == (0, 1, docs[1]) and one.score == head_rank_ranker.score(query, docs[1])
    (alone,) = head_rank_ranker.rank(query, documents[1]).results
    assert (alone.doc_id, alone.score) == ("p2", one.score)
    done = asyncio.run(head_rank_ranker.rank_async(query, docs, list(PASSAGES)))  # BaseRanker's own
    assert [r.doc_id for r in done] == [r.doc_id for r in ranked]


def test_headranker_rank_gives_rerankers_documents_back_as_rerankers_results(ranker):
    from rerankers import Document
    from rerankers.results import RankedResults

    query, docs = QUERIES[102], list(PASSAGES.values())
    documents = [Document(text) for text in docs]  # no ids: positions, as rerankers gives them
    ranked = ranker.rank(query, documents)
    assert type(ranked) is RankedResults and ranked.has_scores
    assert [(r.doc_id, r.score) for r in ranked] == [(r.doc_id, r.score) for r in ranker.rank(query, docs)]
    assert all(d.doc_id is None for d in documents)  # the caller's objects are not changed
    with pytest.raises(ValueError, match="some Documents have a doc_id"):
        ranker.rank(query, [Document(docs[0], doc_id="a"), Document(docs[1])])
    with pytest.raises(TypeError, match="mixes Document objects"):
        ranker.rank(query, [Document(docs[0]), docs[1]])


def langchain_stubs() -> dict[str, types.ModuleType]:
    """The three langchain names rerankers' compressor imports (langchain is not installed here)."""

    class BaseDocumentCompressor:  # a pydantic model in langchain: fields as keywords
        def __init__(self, **fields):
            for name, value in fields.items():
                setattr(self, name, value)

    class LangChainDocument:
        def __init__(self, page_content, metadata=None):
            self.page_content, self.metadata = page_content, dict(metadata or {})

    base = types.ModuleType("langchain.retrievers.document_compressors.base")
    base.BaseDocumentCompressor = BaseDocumentCompressor
    manager = types.ModuleType("langchain_core.callbacks.manager")
    manager.Callbacks = object
    documents = types.ModuleType("langchain_core.documents")
    documents.Document = LangChainDocument
    return {
        "langchain.retrievers.document_compressors.base": base,
        "langchain_core.callbacks.manager": manager,
        "langchain_core.documents": documents,
    }


def test_rerankers_langchain_compressor_takes_headrankranker(head_rank_ranker, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "rerankers.integrations.langchain", raising=False)
    for name in ("langchain.retrievers.document_compressors.base", "langchain_core.callbacks.manager"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match=r"pip install 'rerankers\[langchain\]'"):
        head_rank_ranker.as_langchain_compressor(k=2)

    stubs = langchain_stubs()
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    compressor = head_rank_ranker.as_langchain_compressor(k=2)  # rerankers' own RerankerLangChainCompressor
    assert type(compressor).__module__ == "rerankers.integrations.langchain"
    docs = [stubs["langchain_core.documents"].Document(text, {"id": d}) for d, text in PASSAGES.items()]
    kept = compressor.compress_documents(docs, QUERIES[101])
    top = head_rank_ranker.rank(QUERIES[101], list(PASSAGES.values())).top_k(2)
    assert [d.metadata["id"] for d in kept] == [list(PASSAGES)[r.doc_id] for r in top]
    assert [d.metadata["relevance_score"] for d in kept] == [r.score for r in top]
