"""Head selection on constructed attention: nDCG of each head's ranking, entropy penalty, top k."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_model

from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.train.examples import (
    HeadFeatures,
    TrainingQuery,
    attention_entropy,
    collect_features,
)
from headrank_ir.train.selection import head_ndcg, head_quality, select_heads

QUERIES = [
    TrainingQuery(
        "q1",
        "query one",
        ("a", "b", "c", "d"),
        ("pa", "pb", "pc", "pd"),
        (2, 0, 1, None),
    ),
    TrainingQuery("q2", "query two", ("e", "f", "g", "h"), ("pe", "pf", "pg", "ph"), (0, 0, 3, 1)),
]
# attention masses on the four passages; both heads order every query the same way
PEAKED = {"q1": [0.70, 0.05, 0.20, 0.05], "q2": [0.05, 0.04, 0.80, 0.11]}
FLAT = {"q1": [0.28, 0.23, 0.26, 0.23], "q2": [0.24, 0.23, 0.28, 0.25]}
WRONG = {"q1": [0.05, 0.70, 0.05, 0.20], "q2": [0.80, 0.11, 0.05, 0.04]}


def features(heads: dict) -> HeadFeatures:
    """Heads named (layer, 0) in the given order; calibrated = real mass minus a flat N/A mass."""
    blank = torch.full((4,), 0.25)
    scores = {q.qid: torch.stack([torch.tensor(h[q.qid]) - blank for h in heads.values()]) for q in QUERIES}
    entropy = {q.qid: attention_entropy(torch.stack([torch.tensor(h[q.qid]) for h in heads.values()])) for q in QUERIES}
    return HeadFeatures(tuple((layer, 0) for layer in heads), scores, entropy)


def test_entropy_is_normalised_to_one_for_even_attention():
    values = attention_entropy(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [2.0, 1.0, 1.0, 0.0]]))
    torch.testing.assert_close(values[:2], torch.tensor([1.0, 0.0]), atol=1e-5, rtol=0)
    assert 0.0 < values[2] < 1.0


def test_peaked_head_beats_flat_head_at_equal_ndcg():
    feats = features({0: FLAT, 1: PEAKED})  # the flat head comes first, so it wins ties
    flat, peaked = head_quality(feats, QUERIES, method="entropy", entropy_weight=0.5)
    assert flat.ndcg == pytest.approx(peaked.ndcg) and flat.ndcg > 0.9
    assert peaked.entropy < flat.entropy
    assert peaked.score > flat.score
    assert select_heads([flat, peaked], 1) == ((1, 0, 1.0),)
    # nDCG alone (QRHead) cannot tell them apart: the tie goes to the shallower, flat head
    plain = head_quality(feats, QUERIES, method="ndcg")
    assert plain[0].score == plain[1].score and select_heads(plain, 1) == ((0, 0, 1.0),)


def test_ndcg_is_that_of_each_heads_own_ranking():
    ndcg = head_ndcg(features({0: PEAKED, 1: WRONG}), QUERIES)
    assert ndcg[0] == pytest.approx(1.0)  # ranks 2 > 1 > 0 in q1 and 3 > 1 > 0 in q2
    assert ndcg[1] < 0.6


def test_top_k_keeps_the_best_heads_in_layer_order_with_equal_weights():
    feats = features({3: WRONG, 1: FLAT, 2: PEAKED})
    chosen = select_heads(head_quality(feats, QUERIES), 2)
    assert chosen == ((1, 0, 0.5), (2, 0, 0.5))
    with pytest.raises(ValueError, match="--top-k must be between 1 and the 3"):
        select_heads(head_quality(feats, QUERIES), 4)


def test_features_are_the_engines_calibrated_scores(tokenizer):
    model = tiny_model("llama", len(tokenizer))
    ranker = HeadRanker(model, tokenizer, HeadProfile.icr("tiny", 3, 4))
    feats = collect_features(ranker.reader, QUERIES[:1], progress=False)
    assert feats.heads[:5] == ((0, 0), (0, 1), (0, 2), (0, 3), (1, 0)) and len(feats.heads) == 12
    with torch.no_grad():
        expected = ranker.reader.head_scores(QUERIES[0].text, QUERIES[0].passages)
        real, _ = ranker.reader.head_masses(QUERIES[0].text, QUERIES[0].passages)
    torch.testing.assert_close(feats.scores["q1"], expected)
    torch.testing.assert_close(feats.entropy["q1"], attention_entropy(real))
    profile_scores = feats.combined("q1", [(0, 1), (2, 3)], [0.25, 0.75])
    torch.testing.assert_close(profile_scores, 0.25 * expected[1] + 0.75 * expected[11])


def test_max_depth_keeps_the_choice_below_a_layer():
    feats = features({0: WRONG, 1: FLAT, 2: PEAKED})
    qualities = head_quality(feats, QUERIES)
    assert select_heads(qualities, 1) == ((2, 0, 1.0),)
    assert select_heads(qualities, 1, max_depth=2) == ((1, 0, 1.0),)
    with pytest.raises(ValueError, match="between 1 and the 2 heads"):
        select_heads(qualities, 3, max_depth=2)


def test_ndcg_stops_at_the_cutoff_past_the_fourth_candidate():
    """Twelve candidates, by hand: linear gains, discount log2(rank + 1), ideal from the judgements."""
    docids = tuple(f"d{i}" for i in range(12))
    only_last = TrainingQuery("far", "q", docids, docids, (0,) * 11 + (1,))  # relevant one ranked 12th
    two = TrainingQuery("two", "q", docids, docids, (1,) + (0,) * 10 + (2,))  # grade 1 first, grade 2 12th
    descending = torch.linspace(1.0, 0.0, 12)[None]  # the head ranks them in the given order
    feats = HeadFeatures(
        ((0, 0),), {"far": descending, "two": descending}, {"far": torch.ones(1), "two": torch.ones(1)}
    )
    ideal_two = 2 + 1 / math.log2(3)
    assert head_ndcg(feats, [only_last]).item() == pytest.approx(0.0)
    assert head_ndcg(feats, [two]).item() == pytest.approx(1 / ideal_two, abs=1e-6)
    assert head_ndcg(feats, [only_last], cutoff=20).item() == pytest.approx(1 / math.log2(13), abs=1e-6)
    assert head_ndcg(feats, [two], cutoff=20).item() == pytest.approx((1 + 2 / math.log2(13)) / ideal_two, abs=1e-6)
    # selection's default cut-off is 10 as well: the mean over both queries
    (quality,) = head_quality(feats, [only_last, two], method="ndcg")
    assert quality.ndcg == pytest.approx(0.5 / ideal_two, abs=1e-6) and quality.score == quality.ndcg
