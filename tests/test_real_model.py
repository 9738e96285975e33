"""A few checks on the real SmolLM2-135M weights (installed by tools/install.sh)."""

from __future__ import annotations

import pytest
import torch

from headrank_ir.engine.ranker import HeadRanker


@pytest.fixture(scope="module")
def ranker():
    return HeadRanker.from_pretrained("smollm2-135m")


def test_model_answers_sanely():
    """The whole causal LM (the ranker loads only the layers its profile reads, no LM head)."""
    from headrank_ir.engine.models import load_model

    model, tok = load_model("smollm2-135m")
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])


PASSAGES = [
    "The stock market fell sharply on Monday after the central bank announcement.",
    "Bananas are a good source of potassium and dietary fibre.",
    "The Eiffel Tower in Paris was built between 1887 and 1889 for the World's Fair.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The football season opens next weekend with three home games.",
]


@pytest.mark.parametrize("order", ["reverse", "forward"])
def test_relevant_passage_outranks_irrelevant_ones(ranker, order):
    ranker.profile = ranker.profile.with_prompt(passage_order=order)
    ranked = ranker.rank("When was the Eiffel Tower built?", PASSAGES)
    assert ranked[0].doc_id == 2, [(p.doc_id, round(p.score, 4)) for p in ranked]
