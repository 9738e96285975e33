"""Windows: passages whose costs fill the context exactly share one window; one token less splits
them (issue 28: a split at ``>=`` went unnoticed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.prompt import build_layouts

# Name other engineers may move (engine split): imported here only.
from headrank_ir.engine.windows import plan_windows

QUERY = "when was the eiffel tower built?"
MARGIN = 8  # tokens each passage is charged besides its own: label "[n] ", newline, merges
PROMPT = PromptSettings(max_passage_tokens=16)


def ranker_with_room(tokenizer, room: int):
    """What ``plan_windows`` reads of a ranker, with ``room`` tokens left for passages."""
    empty = build_layouts(tokenizer, [QUERY, PROMPT.calibration_query], [], PROMPT)
    overhead = max(len(layout.input_ids) for layout in empty)
    return SimpleNamespace(
        profile=HeadProfile("tiny", ((0, 0, 1.0),), PROMPT), tokenizer=tokenizer, context_tokens=overhead + room
    )


def test_costs_that_fill_the_budget_exactly_are_one_window(tokenizer):
    lengths = [10, 5, 12]  # costs 18 + 13 + 20 = 51
    assert plan_windows(ranker_with_room(tokenizer, 51), QUERY, lengths) == [[0, 1, 2]]
    assert plan_windows(ranker_with_room(tokenizer, 50), QUERY, lengths) == [[0, 1], [2]]
    assert plan_windows(ranker_with_room(tokenizer, 31), QUERY, lengths) == [[0, 1], [2]]
    assert plan_windows(ranker_with_room(tokenizer, 30), QUERY, lengths) == [[0], [1], [2]]


def test_a_passage_that_fills_the_budget_alone_fits_and_one_more_token_does_not(tokenizer):
    assert plan_windows(ranker_with_room(tokenizer, 20), QUERY, [12, 12]) == [[0], [1]]
    with pytest.raises(ValueError, match="passage 1 needs 21 tokens"):
        plan_windows(ranker_with_room(tokenizer, 20), QUERY, [12, 13])
