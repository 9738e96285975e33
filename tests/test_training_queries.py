"""Training keeps only the judged queries with a relevant candidate in their top ``depth``, and
refuses when none has one (issue 28: keeping them all went unnoticed)."""

from __future__ import annotations

import pytest

from headrank_ir.records import Candidate, Query, Request
from headrank_ir.train.examples import judged_queries, training_queries


def request(qid: str, *docids: str) -> Request:
    return Request(Query(f"query {qid}", qid), [Candidate(d, 0.0, {"contents": f"text {d}"}) for d in docids])


REQUESTS = [
    request("rel", "a", "b", "c"),  # b relevant, in the top 2
    request("none", "d", "e", "f"),  # judged, nothing relevant
    request("deep", "g", "h", "i"),  # its relevant passage is third: outside a depth of 2
    request("unjudged", "j", "k"),
]
QRELS = {"rel": {"b": 2, "c": 0}, "none": {"d": 0, "e": 0}, "deep": {"g": 0, "i": 1}}


def test_judged_queries_label_their_top_candidates():
    queries = judged_queries(REQUESTS, QRELS, depth=2)
    assert [q.qid for q in queries] == ["rel", "none", "deep"]
    assert [q.grades for q in queries] == [(None, 2), (0, 0), (0, None)]
    assert queries[0].docids == ("a", "b") and queries[0].passages == ("text a", "text b")


def test_only_queries_with_a_relevant_candidate_in_reach_are_kept():
    assert [q.qid for q in training_queries(REQUESTS, QRELS, depth=2)] == ["rel"]
    assert [q.qid for q in training_queries(REQUESTS, QRELS, depth=3)] == ["rel", "deep"]


def test_no_query_with_a_relevant_candidate_is_refused():
    with pytest.raises(ValueError, match="none of the 4 queries has a judged relevant passage in its top 2"):
        training_queries(REQUESTS, {"none": QRELS["none"], "deep": QRELS["deep"]}, depth=2)
