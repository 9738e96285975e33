"""A passage's attention mass is the sum over exactly its tokens, and a score is the profile's
weights times the head scores (issue 28: both were caught only by the real-weights run, because
the tiny-model tests built their expectations with the same ``passage_mass`` and weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model

# Names other engineers may move (passage_mass to engine/reader.py): imported here only.
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.engine.reader import passage_mass

QUERY = "when was the eiffel tower built?"
PASSAGES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Bananas are rich in potassium and fibre.",
    "Lobster rolls are a New England dish: lobster meat on a grilled bun.",
]
PROMPT = PromptSettings(max_passage_tokens=16)


def test_passage_mass_sums_each_span_start_inclusive_end_exclusive():
    rows = torch.arange(10, dtype=torch.float32)[None]
    # (2, 5): 2 + 3 + 4 = 9; (7, 9): 7 + 8 = 15
    assert passage_mass(rows, [(2, 5), (7, 9)]).tolist() == [[9.0, 15.0]]


def test_passage_mass_per_head_and_at_the_row_edges():
    rows = torch.tensor([[1.0, 2.0, 4.0, 8.0, 16.0], [100.0, 0.0, 0.0, 0.0, 1.0]])
    mass = passage_mass(rows, [(0, 1), (1, 4), (4, 5), (2, 2)])
    assert mass.tolist() == [[1.0, 14.0, 16.0, 0.0], [100.0, 0.0, 1.0, 0.0]]


def head_score(tokenizer, head: tuple[int, int]) -> np.ndarray:
    """One head's calibrated scores, from a profile of that head alone at weight 1."""
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, HeadProfile("tiny", ((*head, 1.0),), PROMPT))
    return np.array(ranker.score(QUERY, PASSAGES))


def test_a_score_is_the_profiles_weights_times_the_head_scores(tokenizer):
    first, second = head_score(tokenizer, (1, 0)), head_score(tokenizer, (2, 3))
    assert not np.allclose(first, second)  # two heads that disagree, so the weights matter
    # given out of layer order, with weights far from equal and one negative
    profile = HeadProfile("tiny", ((2, 3, -0.5), (1, 0, 3.0)), PROMPT)
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, profile)
    expected = 3.0 * first - 0.5 * second
    assert ranker.score(QUERY, PASSAGES) == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-6)
    ranked = ranker.rank(QUERY, PASSAGES)
    assert [r.doc_id for r in ranked] == [int(i) for i in np.argsort(-expected, kind="stable")]
