"""Equal scores are broken by docid everywhere a ranking is made, and the candidates kept out of a
reranked window are rescored so that sorting by score keeps their places (issue 28).

Expected orders and scores are worked out by hand from the documented rules: ties by
``(-score, docid)``, RRF ``a / (k + rank)``, and rows above the window scored ``top + n - i``.
"""

from __future__ import annotations

import pytest
from conftest import tiny_model

# Names other engineers may move (engine facade/reader split): imported here only.
from headrank_ir.engine.fusion import fuse, reranker_ranks
from headrank_ir.engine.profile import FusionSettings, HeadProfile, PromptSettings
from headrank_ir.engine.ranker import HeadRanker, place
from headrank_ir.records import Candidate, Query, Request

QUERY = "when was the eiffel tower built?"
PASSAGES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Bananas are rich in potassium and fibre.",
    "Lobster rolls are a New England dish: lobster meat on a grilled bun.",
]


def test_rank_breaks_equal_scores_by_docid_not_by_input_order(tokenizer):
    # every head weighs 0, so every passage scores exactly 0.0: only the tie rule orders them
    profile = HeadProfile("tiny", ((1, 0, 0.0), (2, 3, 0.0)), PromptSettings(max_passage_tokens=16))
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, profile)
    ranked = ranker.rank(QUERY, PASSAGES, doc_ids=["c", "a", "b"])
    assert [r.score for r in ranked] == [0.0, 0.0, 0.0]
    assert [r.doc_id for r in ranked] == ["a", "b", "c"]
    assert [r.rank for r in ranked] == [1, 2, 3]


def test_rrf_ranks_equal_reranker_scores_by_docid():
    assert reranker_ranks([0.5, 0.5, 0.9], ["b", "a", "c"]) == [3, 2, 1]
    # the reranker alone (weight 1): b and a tie at 0.5, a wins by docid, so a gets rank 1
    settings = FusionSettings(method="rrf", weight=1.0, rrf_k=60)
    assert fuse(settings, [0.5, 0.5], [None, None], ["b", "a"]) == pytest.approx([1 / 62, 1 / 61])
    # weight 0.5: the first stage's ranks are the given order, b first
    half = FusionSettings(method="rrf", weight=0.5, rrf_k=10)
    expected = [0.5 / 12 + 0.5 / 11, 0.5 / 11 + 0.5 / 12, 0.5 / 13 + 0.5 / 13]
    assert fuse(half, [3.0, 3.0, 1.0], [None, None, None], ["b", "a", "c"]) == pytest.approx(expected)


def candidates(*docids: str) -> Request:
    return Request(Query(QUERY, "q"), [Candidate(d, 100.0 - i, {"contents": d}) for i, d in enumerate(docids)])


def test_rows_above_the_window_score_above_its_best_counting_down_by_one():
    # the two kept on top have docids that sort after every reranked one ("z…"), so a tie with the
    # window's best would put them below it in a run file
    request = candidates("z2", "z1", "a", "b", "c", "y")
    result = place(request, [0.25, 0.75, 0.5], rank_start=2, rank_end=5)
    assert [c.docid for c in result.candidates] == ["z2", "z1", "b", "c", "a", "y"]
    # top = 0.75, two rows above: 0.75 + 2 and 0.75 + 1; bottom = 0.25, one row below: 0.25 - 1
    assert [c.score for c in result.candidates] == [2.75, 1.75, 0.75, 0.5, 0.25, -0.75]
    rows = sorted(result.candidates, key=lambda c: (-c.score, c.docid))
    assert rows == result.candidates


def test_reranked_window_breaks_its_own_ties_by_docid():
    result = place(candidates("k", "c", "b", "a"), [1.0, 1.0, 1.0], rank_start=1, rank_end=4)
    assert [c.docid for c in result.candidates] == ["k", "a", "b", "c"]
    assert [c.score for c in result.candidates] == [2.0, 1.0, 1.0, 1.0]
