"""``PromptPieces`` beyond the equality of joined and whole prompts: what its probe covers, that
it shows the texts it is handed as they are on both of its paths, the span locator's errors; and
the prompt's text word for word, on both paths."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from conftest import whole_message

from headrank_ir.engine.profile import PromptSettings
from headrank_ir.engine.prompt import (
    PromptPieces,
    _span_locator,
    build_layout,
    build_layouts,
    encode_pieces,
    passage_pieces,
    truncate_passages,
)

QUERY = "who opened the tower?"


LONG = ["word " * 40 + "end.", "The tower opened in 1889, " * 6 + "in Paris."]


def test_the_probe_covers_a_one_passage_prompt(tokenizer, monkeypatch):
    """A one-passage window joins the first label straight to the instruction's piece, a seam no
    longer window has: where that join goes wrong the pieces must fall back to whole prompts."""
    join = PromptPieces.join

    def wrong_for_one_passage(self, texts, *rest):
        layout = join(self, texts, *rest)
        return layout if len(texts) > 1 else dataclasses.replace(layout, input_ids=layout.input_ids + [0])

    monkeypatch.setattr(PromptPieces, "join", wrong_for_one_passage)
    assert not PromptPieces(tokenizer, PromptSettings()).exact


def test_both_paths_show_the_texts_they_are_handed_whole(tokenizer):
    """``layouts`` takes texts already cut (``passage_pieces``): neither the joined path nor the
    whole-prompt fallback cuts them again, even where they are longer than the budget."""
    settings = PromptSettings(max_passage_tokens=8)
    joined = PromptPieces(tokenizer, settings)
    assert joined.exact
    fallback = copy.copy(joined)
    fallback.exact = False
    pieces = encode_pieces(tokenizer, LONG)
    assert min(piece.length for piece in pieces) > settings.max_passage_tokens
    windows = [[0, 1], [1]]
    got = [p.layouts(QUERY, LONG, pieces, windows) for p in (joined, fallback)]
    assert got[0] == got[1]
    assert [layout.passage_texts for window in got[1] for layout in window] == [LONG, LONG, [LONG[1]], [LONG[1]]]


def test_the_span_locator_refuses_offsets_out_of_order_and_spans_without_tokens():
    out_of_order = "the tokenizer's character offsets are not monotone; use a fast tokenizer"
    with pytest.raises(ValueError, match=whole_message(out_of_order)):
        _span_locator([(0, 3), (2, 2)])
    locate = _span_locator([(0, 2), (4, 6)])
    assert locate(0, 6) == (0, 2) and locate(3, 5) == (1, 2)
    with pytest.raises(
        ValueError, match=whole_message("characters 2:4 map to no token; the tokenizer gives no offsets there")
    ):
        locate(2, 4)


# written out again, not imported: the test pins the words themselves
INSTRUCTION = "Please find information that is relevant to the following query in the passages above."


@pytest.mark.parametrize(
    "order, shown",
    [("forward", ["The tower opened.", "Paris, 1889."]), ("reverse", ["Paris, 1889.", "The tower opened."])],
)
@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_the_prompt_word_for_word(tokenizer, order, shown, chat):
    """ICR's layout, written out: passages labelled from [1] in the order shown, then the
    instruction and the query; in the chat template, all of it as the one user message."""
    settings = PromptSettings(passage_order=order, use_chat_template=chat)
    pieces = PromptPieces(tokenizer, settings)
    texts, parts = passage_pieces(tokenizer, ["The  tower opened.", " Paris, 1889."], settings.max_passage_tokens)
    content = f"Here are some passages:\n\n[1] {shown[0]}\n[2] {shown[1]}\n\n{INSTRUCTION}\n\nQuery: who opened it?"
    if chat:
        expected = f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
    else:
        expected = f"{content}\n"
    for layout in (
        build_layout(tokenizer, " who  opened it?", texts, settings, truncated=True),
        pieces.layouts("who opened it?", texts, parts, [[0, 1]])[0][0],
    ):
        text = tokenizer.decode(layout.input_ids)
        assert text.endswith(expected) and (chat or text == expected)


@pytest.mark.parametrize("budget", [1, 5, 12])
def test_a_passage_is_cut_after_its_budget_of_tokens(tokenizer, budget):
    """The cut passage is the text of its first ``budget`` tokens in the prompt (after the space
    that precedes it), and shows in exactly that many; a passage within the budget is kept whole."""
    long = "Lobster   rolls are a New England dish: lobster meat on a grilled hot-dog bun, served cold."
    short = "A short one."
    texts, pieces = passage_pieces(tokenizer, [long, short], budget)
    first = tokenizer(" " + " ".join(long.split()), add_special_tokens=False)["input_ids"][:budget]
    assert texts[0] == tokenizer.decode(first).strip()
    assert pieces[0].length == budget
    if budget >= len(tokenizer(" " + short, add_special_tokens=False)["input_ids"]):
        assert texts[1] == short
    assert truncate_passages(tokenizer, [long, short], budget) == (texts, [p.length for p in pieces])


@pytest.mark.parametrize("calibrate", [True, False])
def test_one_prompt_per_window_without_calibration_two_with_it(tokenizer, calibrate):
    settings = PromptSettings(calibrate=calibrate, calibration_query="nothing here")
    texts, parts = passage_pieces(tokenizer, LONG + ["A short one."], settings.max_passage_tokens)
    windows = [[2, 0], [1]]
    queries = [QUERY, "nothing here"] if calibrate else [QUERY]
    got = PromptPieces(tokenizer, settings).layouts(QUERY, texts, parts, windows)
    assert got == [build_layouts(tokenizer, queries, [texts[i] for i in w], settings, truncated=True) for w in windows]


def test_build_layout_shows_texts_said_to_be_cut_already_as_they_are(tokenizer):
    settings = PromptSettings(max_passage_tokens=8)
    assert build_layout(tokenizer, QUERY, LONG, settings, truncated=True).passage_texts == LONG
    assert build_layout(tokenizer, QUERY, LONG, settings).passage_texts != LONG  # else nothing was tested
