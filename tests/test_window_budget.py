"""Windows: passages whose costs fill the context exactly share one window; one token less splits
them (issue 28: a split at ``>=`` went unnoticed)."""

from __future__ import annotations

import pytest

from headrank_ir.engine.profile import PromptSettings
from headrank_ir.engine.prompt import build_layouts

# Name other engineers may move (engine split): imported here only.
from headrank_ir.engine.windows import plan_windows

QUERY = "when was the eiffel tower built?"
MARGIN = 8  # tokens each passage is charged besides its own: label "[n] ", newline, merges
PROMPT = PromptSettings(max_passage_tokens=16)


def overhead(tokenizer) -> int:
    """The prompt's tokens around the passages, as ``HeadReader.prompt_overhead`` counts them."""
    empty = build_layouts(tokenizer, [QUERY, PROMPT.calibration_query], [], PROMPT)
    return max(len(layout.input_ids) for layout in empty)


def windows(tokenizer, room: int, lengths):
    """``plan_windows`` with ``room`` tokens of the context left for passages."""
    return plan_windows(lengths, overhead(tokenizer), overhead(tokenizer) + room)


def test_costs_that_fill_the_budget_exactly_are_one_window(tokenizer):
    lengths = [10, 5, 12]  # costs 18 + 13 + 20 = 51
    assert windows(tokenizer, 51, lengths) == [[0, 1, 2]]
    assert windows(tokenizer, 50, lengths) == [[0, 1], [2]]
    assert windows(tokenizer, 31, lengths) == [[0, 1], [2]]
    assert windows(tokenizer, 30, lengths) == [[0], [1], [2]]


def test_a_passage_that_fills_the_budget_alone_fits_and_one_more_token_does_not(tokenizer):
    assert windows(tokenizer, 20, [12, 12]) == [[0], [1]]
    with pytest.raises(ValueError, match="passage 1 needs 21 tokens"):
        windows(tokenizer, 20, [12, 13])
