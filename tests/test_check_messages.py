"""The engine's argument checks, their refusals word for word (issue 28: a refusal matched by a
fragment let a mutated message, a wrong type name or a dropped query name through)."""

from __future__ import annotations

import pytest

# Name other engineers may move: imported here only.
from headrank_ir.engine.checks import (
    check_batch_call,
    check_inputs,
    check_metadata,
    check_requests,
    check_score_batch,
)
from headrank_ir.engine.profile import PromptSettings
from headrank_ir.records import Candidate, Query, Request


def refusal(kind, call, *args) -> str:
    with pytest.raises(kind) as refused:
        call(*args)
    assert type(refused.value) is kind
    return str(refused.value)


@pytest.mark.parametrize("passages", ["one string", b"bytes", {"a set"}, (p for p in ["a generator"])])
def test_passages_must_be_a_list_not_a_string_or_an_iterator(passages):
    name = type(passages).__name__
    assert refusal(TypeError, check_inputs, "q", passages, None) == f"passages must be a list of str, got {name}"


def test_a_passage_that_is_not_a_string_is_named_with_its_type():
    assert refusal(TypeError, check_inputs, "q", ["ok", 7], None) == "passage 1 must be a str, got int"
    assert (
        refusal(TypeError, check_inputs, "q", ["ok", 7], ["a", "b"]) == "passage 1 (docid 'b') must be a str, got int"
    )


def test_metadata_is_one_dict_per_passage():
    check_metadata(None)
    check_metadata([{}, {"title": "t"}])
    message = "metadata 1 must be a dict, got list; give {} for none"
    assert refusal(TypeError, check_metadata, [{}, ["t"]]) == message
    assert refusal(TypeError, check_metadata, "{}") == "metadata must be a list of dicts, one per passage, got str"


@pytest.mark.parametrize("start, end, name, value", [(True, 3, "rank_start", True), (0, 2.0, "rank_end", 2.0)])
def test_batch_bounds_are_whole_numbers(start, end, name, value):
    message = f"{name} must be a whole number, got {value!r}"
    assert refusal(TypeError, check_batch_call, [], start, end) == message


def request(qid: str, query: str, *docs: dict) -> Request:
    return Request(Query(query, qid), [Candidate(f"d{i}", 1.0, doc) for i, doc in enumerate(docs)])


def test_request_refusals_name_the_query():
    no_text = request("q7", "fine query", {"contents": "x"}, {"title": "only a title"})
    assert refusal(ValueError, check_requests, [no_text]) == (
        "query 'q7': candidate 'd1' has no text field (looked for contents/text/segment/body)"
    )
    empty = request("q8", "fine query", {"contents": "  "})
    assert (
        refusal(ValueError, check_requests, [empty])
        == "query 'q8': candidate 0 (docid 'd0') is empty or whitespace only"
    )


def test_the_calibration_query_is_refused_word_for_word():
    calibration = request("q9", "N/A", {"contents": "x"})
    assert refusal(ValueError, check_requests, [calibration]) == (
        "query 'q9': the query 'N/A' is the calibration query, whose attention calibration subtracts, so every "
        "passage would score 0.0; rephrase it, or use a profile with another prompt.calibration_query "
        "or with calibrate false"
    )
    check_requests([calibration], PromptSettings(calibrate=False))  # nothing subtracted: a query like any other


def test_score_batch_names_the_query_by_position():
    message = "query 1: passage 0 must be a str, got NoneType"
    assert refusal(TypeError, check_score_batch, ["a", "b"], [["x"], [None]], PromptSettings()) == message
