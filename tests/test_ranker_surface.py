"""The ranker's surface and the planner's bookkeeping, with expected values worked out by hand
from the documented rules (issue 28, round 4): ``rank``'s argument forms, ``rerank`` with
``rank_start``, ``rerank_batches``' order, which planner ``rerank_ahead`` uses, invocation
records, the ranker's name and file name, a dropped ranker's finalizer, ``Planner``'s pool
(spawned, started once, shut down waiting) and the reader's prompt arithmetic (``shared_prefix``,
a job's prefix without calibration). On a tiny random Llama with SmolLM2's real tokenizer; no
planner process is started (the pool is a stand-in recording what it is asked)."""

from __future__ import annotations

import gc
import sys
from concurrent.futures import Future
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_config, tiny_model
from transformers import AutoModelForCausalLM

# Names other engineers may move (engine facade/reader/planner split): imported here only.
from headrank_ir.engine import planning
from headrank_ir.engine import ranker as ranker_module
from headrank_ir.engine.keyonly import cached_value_width
from headrank_ir.engine.planning import InTurn, Planner
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.prompt import PromptLayout
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.engine.reader import HeadReader, PromptPlanner, shared_prefix
from headrank_ir.records import Candidate, Query, Request

QUERY = "when was the eiffel tower built?"
TEXTS = {
    "z0": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "d2": "Bananas are rich in potassium and fibre.",
    "d1": "Lobster rolls are a New England dish: lobster meat on a grilled bun.",
    "y3": "Paris hosted the Exposition Universelle in 1889.",
    "x4": "Gustave Eiffel's company designed and built the tower.",
}
# two heads on layers 1 and 2 of the tiny three-layer model: depth 3
HEADS = ((1, 0, 1.0), (2, 3, 0.5))


def profile(weights=(1.0, 0.5), **prompt) -> HeadProfile:
    heads = tuple((layer, head, w) for (layer, head, _), w in zip(HEADS, weights))
    return HeadProfile("tiny", heads, PromptSettings(max_passage_tokens=16, **prompt))


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("llama", len(tokenizer))


@pytest.fixture(scope="module")
def ranker(model, tokenizer):
    with HeadRanker(model, tokenizer, profile()) as ranker:
        yield ranker


@pytest.fixture(scope="module")
def level(model, tokenizer):
    """Every head weighs 0: every passage scores exactly 0.0, so only the placement rules order them."""
    with HeadRanker(model, tokenizer, profile(weights=(0.0, 0.0))) as ranker:
        yield ranker


def request(docids=tuple(TEXTS), qid="q") -> Request:
    return Request(Query(QUERY, qid), [Candidate(d, 10.0 - i, {"contents": TEXTS[d]}) for i, d in enumerate(docids)])


def scored(result):
    return [(c.docid, c.score) for c in result.candidates]


# -- rank: rerankers' forms ----------------------------------------------------------------------


def test_rank_keeps_metadata_of_the_right_length_and_refuses_another_length(ranker):
    texts = [TEXTS["d1"], TEXTS["d2"]]
    ranked = ranker.rank(QUERY, texts, doc_ids=["a", "b"], metadata=[{"n": 1}, {"n": 2}])
    assert {r.document.doc_id: r.document.metadata for r in ranked} == {"a": {"n": 1}, "b": {"n": 2}}
    with pytest.raises(ValueError, match="^1 metadata for 2 passages$"):
        ranker.rank(QUERY, texts, doc_ids=["a", "b"], metadata=[{"n": 1}])
    with pytest.raises(ValueError, match="^3 metadata for 2 passages$"):
        ranker.rank(QUERY, texts, metadata=[{}, {}, {}])


def test_rank_of_no_documents_gives_no_results_and_runs_no_forward(ranker, monkeypatch):
    calls = []
    forward = ranker.reader.truncated.forward
    monkeypatch.setattr(ranker.reader.truncated, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    assert list(ranker.rank(QUERY, [])) == []
    assert calls == []


def test_rank_of_one_rerankers_document_gives_rerankers_results(ranker):
    documents = pytest.importorskip("rerankers.documents")
    results = pytest.importorskip("rerankers.results")
    ranked = ranker.rank(QUERY, documents.Document(text=TEXTS["z0"], doc_id="z0"))
    assert isinstance(ranked, results.RankedResults)
    assert [r.document.doc_id for r in ranked.results] == ["z0"]


# -- rerank: rank_llm's verbs ----------------------------------------------------------------------


def test_rerank_reranks_from_rank_start_and_rescores_the_rows_around_the_window(level):
    # window d2, d1 (rank_start 1, rank_end 3): both score 0.0, so d1 before d2 by docid;
    # z0 above at top + 1 = 1.0, y3 and x4 below at bottom - 1 and bottom - 2
    result = level.rerank(request(), rank_start=1, rank_end=3)
    assert scored(result) == [("z0", 1.0), ("d1", 0.0), ("d2", 0.0), ("y3", -1.0), ("x4", -2.0)]
    assert result.query == Query(QUERY, "q")


def test_rerank_batches_yields_each_batch_in_turn(level):
    level.overlap = False
    batches = [[request(qid="a1"), request(["d2", "d1"], qid="a2")], [request(["y3"], qid="b1")], [request(qid="c1")]]
    got = [[(r.query.qid, [c.docid for c in r.candidates]) for r in rs] for rs in level.rerank_batches(batches)]
    # every passage scores 0.0: each query's candidates by docid
    assert got == [
        [("a1", ["d1", "d2", "x4", "y3", "z0"]), ("a2", ["d1", "d2"])],
        [("b1", ["y3"])],
        [("c1", ["d1", "d2", "x4", "y3", "z0"])],
    ]


class Spy:
    """A planner that counts the batches submitted to it and plans them as ``inner`` does."""

    def __init__(self, inner):
        self.inner, self.submitted = inner, []

    def submit(self, requests, rank_start, rank_end):
        self.submitted.append((tuple(r.query.qid for r in requests), rank_start, rank_end))
        return self.inner.submit(requests, rank_start, rank_end)

    def close(self):
        pass


def test_rerank_ahead_plans_with_the_planner_overlap_names(level, monkeypatch):
    spies = {route: Spy(level._planners["off"]) for route in level._planners}  # no process started
    monkeypatch.setattr(level, "_planners", spies)
    monkeypatch.setattr(level, "overlap", "process")
    assert [r.query.qid for r in level.rerank_ahead([request(qid="p")], 0, 2).read()] == ["p"]
    level.overlap = True  # says "process" too
    level.rerank_ahead([request(qid="t")], 1, 3).read()
    level.overlap = False
    level.rerank_ahead([request(qid="f")]).read()
    assert spies["process"].submitted == [(("p",), 0, 2), (("t",), 1, 3)]
    assert spies["off"].submitted == [(("f",), 0, 100)]


def test_invocations_history_holds_each_window_as_read(ranker, model, tokenizer):
    result = ranker.rerank(request(), rank_start=1, rank_end=4, populate_invocations_history=True)
    (invocation,) = result.invocations_history
    assert invocation.docids == ["d2", "d1", "y3"]  # the window in first-stage order
    assert invocation.positions == [2, 1, 0]  # reverse order: the best first-stage passage shown last
    assert len(invocation.head_scores) == 2 and all(len(row) == 3 for row in invocation.head_scores)
    assert invocation.forward_passes == 2  # the query's and, on the CPU, the calibration query's
    assert ranker.rerank(request(), rank_start=1, rank_end=4).invocations_history == []
    (batched,) = ranker.rerank_batch([request()], 1, 4, populate_invocations_history=True)
    assert batched.invocations_history == result.invocations_history
    # forward order, no calibration: one forward
    with HeadRanker(model, tokenizer, profile(calibrate=False, passage_order="forward")) as plain:
        (invocation,) = plain.rerank(request(), rank_end=2, populate_invocations_history=True).invocations_history
    assert (invocation.docids, invocation.positions, invocation.forward_passes) == (["z0", "d2"], [0, 1], 1)
    # calibration folded into the query's forward: one forward
    with HeadRanker(model, tokenizer, profile()) as folded:
        folded.reader.fold_calibration = True
        (invocation,) = folded.rerank(request(), rank_end=2, populate_invocations_history=True).invocations_history
    assert invocation.forward_passes == 1


# -- names -------------------------------------------------------------------------------------------


def test_the_ranker_is_named_by_its_argument_else_its_config_else_model(tokenizer):
    model = tiny_model("llama", len(tokenizer))
    assert HeadRanker(model, tokenizer).name == "model"  # no profile: ICR's, made for the ranker's name
    model.config._name_or_path = "some-org/tiny-llama/"
    named = HeadRanker(model, tokenizer)
    assert (named.name, named.get_name()) == ("some-org/tiny-llama/", "headrank_tiny-llama")
    assert named.profile.model == "some-org/tiny-llama/"
    assert HeadRanker(model, tokenizer, name="given").name == "given"


def test_output_file_name_is_model_profile_depth_and_dataset(ranker):
    # the tiny model's config has no name: "model"; the profile has no method, 2 heads, depth 3
    assert ranker.get_output_filename(20, None) == "headrank_model_profile-2h-d3_top20"
    assert ranker.get_output_filename(20, "") == "headrank_model_profile-2h-d3_top20"
    assert ranker.get_output_filename(100, "dl19") == "headrank_model_profile-2h-d3_top100_dl19"


def test_on_a_gpu_the_ranker_plans_ahead_in_a_process(model, tokenizer, monkeypatch):
    class GpuReader:  # what the ranker reads of its reader at construction, on a CUDA device
        def __init__(self, *args):
            self.device, self.planner = torch.device("cuda"), object()

    monkeypatch.setattr(ranker_module, "HeadReader", GpuReader)
    assert HeadRanker(model, tokenizer, profile()).overlap == "process"


def test_a_dropped_ranker_closes_its_planners(model, tokenizer):
    closed = []

    class Closing:
        def __init__(self, route):
            self.route = route

        def close(self):
            closed.append(self.route)

    dropped = HeadRanker(model, tokenizer, profile())
    for route in list(dropped._planners):
        dropped._planners[route] = Closing(route)
    del dropped
    gc.collect()
    assert sorted(closed) == ["off", "process"]


# -- Planner: its pool ------------------------------------------------------------------------------


class Pool:
    """Stands in for ``ProcessPoolExecutor``: records how it was made and what it was asked."""

    made: list = []

    def __init__(self, max_workers, mp_context):
        self.max_workers, self.method = max_workers, mp_context.get_start_method()
        self.submitted, self.shutdowns = [], []
        Pool.made.append(self)

    def submit(self, fn, *args):
        bare = {name for name, value in vars(sys.modules["__main__"]).items() if value is not None} == {"__name__"}
        self.submitted.append((fn, args, bare))
        future = Future()
        future.set_result(("planned", args))
        return future

    def shutdown(self, **kwargs):
        self.shutdowns.append(kwargs)


def test_a_planner_process_is_spawned_once_and_shut_down_waiting(monkeypatch):
    monkeypatch.setattr(planning, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(Pool, "made", [])
    main = sys.modules["__main__"]
    made = SimpleNamespace(profile=None)
    planner = Planner(made, "process")
    batch = [request()]
    first = planner.submit(batch, 0, 5)
    assert isinstance(first, InTurn)  # the first batch is planned in turn while the process starts
    (pool,) = Pool.made
    assert (pool.max_workers, pool.method) == (1, "spawn")
    # the planner went as the first task, sent while __main__ was a bare module
    assert pool.submitted == [(planning._install, (made,), True)]
    assert sys.modules["__main__"] is main  # and put back after
    second = planner.submit(batch, 1, 3)
    assert second.result() == ("planned", (batch, 1, 3))
    assert pool.submitted[1] == (planning._plan_in_process, (batch, 1, 3), False)
    assert len(Pool.made) == 1  # kept for the next batches
    planner.close()
    assert pool.shutdowns == [{"wait": True, "cancel_futures": True}]
    planner.close()  # nothing left to close
    assert pool.shutdowns == [{"wait": True, "cancel_futures": True}]
    assert isinstance(planner.submit(batch, 0, 5), InTurn)  # a later submit starts another
    assert len(Pool.made) == 2


def test_the_planner_process_plans_the_window_from_rank_start(tokenizer, monkeypatch):
    monkeypatch.setattr(planning, "_process_planner", None)
    planning._install(PromptPlanner(tokenizer, profile(), 4096))
    plans = planning._plan_in_process([request(), Request(Query(QUERY, "e"), [])], 1, 3)
    assert list(plans) == [0]  # a request with no candidate in the window has no plan
    windows, jobs = plans[0]
    assert windows == [[0, 1]]
    assert jobs[0].real.passage_texts == [TEXTS["d2"], TEXTS["d1"]]


# -- the reader's arithmetic -----------------------------------------------------------------------


def layout(ids, passages, query) -> PromptLayout:
    return PromptLayout(list(ids), list(passages), query, ["p"] * len(passages))


def test_shared_prefix_counts_equal_tokens_up_to_either_query():
    real = layout([1, 2, 3, 4, 5, 6, 7], [(1, 3)], (5, 7))
    # equal for 3 tokens, then 4 against 9: the passage ends at 3, inside the prefix
    assert shared_prefix(real, layout([1, 2, 3, 9, 9], [(1, 3)], (3, 5))) == 3
    # equal all along; the other prompt's query starts at 2, so the prefix stops there (not at its end, 3)
    short = layout([1, 2, 3, 4, 5, 6], [(0, 2)], (4, 6))
    assert shared_prefix(short, layout([1, 2, 3, 4, 5, 6], [(0, 2)], (2, 3))) == 2
    assert shared_prefix(short, layout([1, 2, 3, 4, 5, 6], [(0, 2)], (5, 6))) == 4  # this prompt's query start
    with pytest.raises(RuntimeError, match="diverges inside the passages"):
        shared_prefix(real, layout([1, 2, 9, 9, 9], [(1, 3)], (3, 5)))


def test_jobs_without_calibration_share_no_prefix(tokenizer):
    planner = PromptPlanner(tokenizer, profile(calibrate=False), 4096)
    windows, jobs = planner.plan(QUERY, list(TEXTS.values()))
    assert [(job.blank, job.prefix) for job in jobs] == [(None, 0)] * len(windows)


def test_a_config_without_kv_heads_is_read_as_multi_head_attention(tokenizer):
    config = tiny_config("llama", len(tokenizer))
    config.num_key_value_heads = 4  # as many kv heads as query heads
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    text = SimpleNamespace(num_attention_heads=4, max_position_embeddings=4096)  # no num_key_value_heads
    model.config.get_text_config = lambda *args, **kwargs: text
    reader = HeadReader(model, tokenizer, profile())
    # one query head per kv head: layer 1 head 0 reads kv head 0, layer 2 head 3 kv head 3
    assert {layer: (s.used.tolist(), s.pick.tolist()) for layer, s in reader.selections.items()} == {
        1: ([0], [0]),
        2: ([3], [0]),
    }


def test_a_cache_with_no_layers_holds_no_values():
    assert cached_value_width(None, 0) is None
    assert cached_value_width(SimpleNamespace(), 2) is None
