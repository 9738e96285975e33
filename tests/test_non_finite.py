"""A score that is not a finite number (half precision overflowing on real weights) is one
error on every verb — ``score``, ``rank``, ``rerank_batch`` with and without fusion — never a
NaN sorted into a ranking."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import tiny_model
from test_engine import PASSAGES, QUERY, SELECTED

from headrank_ir.engine.profile import FusionSettings, HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.records import Candidate, Query, Request


def poisoned_ranker(tokenizer, fusion: FusionSettings = FusionSettings()):
    """A tiny model whose first layer's query projection holds one NaN: every score is NaN."""
    model = tiny_model("qwen3", len(tokenizer))
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight[0, 0] = float("nan")
    return HeadRanker(model, tokenizer, replace(HeadProfile("tiny", SELECTED), fusion=fusion))


def request():
    candidates = [Candidate(f"d{i}", 10.0 - i, {"contents": p}) for i, p in enumerate(PASSAGES)]
    return Request(Query(QUERY, "q1"), candidates)


VERBS = {
    "score": lambda r: r.score(QUERY, PASSAGES),
    "score_batch": lambda r: r.score_batch([QUERY], [PASSAGES]),
    "rank": lambda r: r.rank(QUERY, PASSAGES),
    "rerank_batch": lambda r: r.rerank_batch([request()]),
}


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_refuses_non_finite_scores(tokenizer, verb):
    with pytest.raises(
        ValueError, match=r"non-finite attention scores \(NaN or inf\) in torch.float32; check the model.s weights"
    ):
        VERBS[verb](poisoned_ranker(tokenizer))


@pytest.mark.parametrize("fusion", [FusionSettings("rrf", 0.5), FusionSettings("interpolate", 0.3)])
def test_fusion_never_orders_a_nan(tokenizer, fusion):
    with pytest.raises(ValueError, match="non-finite attention scores"):
        poisoned_ranker(tokenizer, fusion).rerank_batch([request()])


def test_finite_scores_pass(tokenizer):
    ranker = HeadRanker(tiny_model("qwen3", len(tokenizer)), tokenizer, HeadProfile("tiny", SELECTED))
    assert all(torch.isfinite(torch.tensor(ranker.score(QUERY, PASSAGES))))


def test_half_precision_overflow_names_the_dtype_to_use(tokenizer):
    ranker = poisoned_ranker(tokenizer)
    ranker.reader.truncated.base.half()
    with pytest.raises(ValueError, match=r"in torch.float16; rerun in float32 or bfloat16 \(--dtype\)"):
        ranker.score(QUERY, PASSAGES)
