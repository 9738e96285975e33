"""Alignment on a tiny random Llama: the loss falls, a misordered pair turns, resume is exact."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from conftest import tiny_model

from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.train import alignment
from headrank_ir.train.alignment import AlignConfig, align
from headrank_ir.train.examples import TrainingQuery
from headrank_ir.train.objective import Regularizer, objective
from headrank_ir.train.pairs import Pair

PASSAGES = (
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Bananas are rich in potassium and fibre.",
    "Lobster rolls are a New England dish: lobster meat on a grilled bun.",
    "The 2019 TREC Deep Learning track judged passages on a four-level scale.",
    "Python first appeared in 1991.",
)
QUERY = "when was the eiffel tower built?"
PROFILE = HeadProfile("tiny", ((1, 0, 0.5), (2, 3, 0.5)), PromptSettings(max_passage_tokens=16))


def initial_scores(tokenizer) -> torch.Tensor:
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, PROFILE)
    with torch.no_grad():
        return ranker.reader.weights @ ranker.reader.head_scores(QUERY, PASSAGES)


def misordered_query(scores: torch.Tensor) -> TrainingQuery:
    """Grade 1 for the passage the untrained model scores lowest, 0 for the one it scores highest."""
    grades = [None] * len(PASSAGES)
    grades[int(scores.argmin())], grades[int(scores.argmax())] = 1, 0
    return TrainingQuery(
        "q",
        QUERY,
        tuple(f"d{i}" for i in range(len(PASSAGES))),
        PASSAGES,
        tuple(grades),
    )


def test_pair_loss_prefers_the_right_order_and_regulariser_is_zero_at_the_reference():
    scores = torch.tensor([0.3, 0.1, 0.2, 0.0])
    right, _ = objective(scores, [Pair(0, 1, True, 0)], temperature=0.5)
    wrong, _ = objective(scores, [Pair(1, 0, True, 0)], temperature=0.5)
    assert right < torch.log(torch.tensor(2.0)) < wrong
    reg = Regularizer(reference_weight=1.0, middle_weight=0.0)
    with_reg, parts = objective(scores, [Pair(0, 1, True, 0)], 0.5, reference=scores * 3 + 1, regularizer=reg)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-6) and with_reg == pytest.approx(float(right))
    # a reference that ranks otherwise: the loss grows by exactly beta × KL(p_ref || p), by hand
    other = [0.0, 0.3, 0.1, 0.2]
    z, z_ref = [[(v - sum(x) / 4) / (statistics.pstdev(x) + 1e-6) for v in x] for x in (scores.tolist(), other)]
    p, p_ref = [[math.exp(v) / sum(math.exp(u) for u in x) for v in x] for x in (z, z_ref)]
    kl = sum(r * (math.log(r) - math.log(q)) for r, q in zip(p_ref, p))
    assert kl > 0.5
    half = Regularizer(reference_weight=0.5, middle_weight=0.0)
    loss, parts = objective(scores, [Pair(0, 1, True, 0)], 0.5, reference=torch.tensor(other), regularizer=half)
    assert parts["kl"] == pytest.approx(kl, rel=1e-4)
    assert float(loss) == pytest.approx(float(right) + 0.5 * kl, rel=1e-4)
    # a middle zone scored flat is penalised; one spread as widely as the list is not
    _, flat = objective(
        scores,
        [],
        0.5,
        reference=scores,
        middle=[1, 2],
        regularizer=Regularizer(0.0, 1.0),
    )
    _, spread = objective(
        scores,
        [],
        0.5,
        reference=scores,
        middle=[0, 3],
        regularizer=Regularizer(0.0, 1.0),
    )
    assert flat["spread"] > 0.1 and spread["spread"] == 0.0


def test_a_few_steps_lower_the_loss_and_turn_a_misordered_pair(tokenizer):
    before = initial_scores(tokenizer)
    query = misordered_query(before)
    better, worse = query.grades.index(1), query.grades.index(0)
    assert before[better] < before[worse]
    model = tiny_model("llama", len(tokenizer))
    config = AlignConfig(
        epochs=8,
        lr=1e-2,
        head_lr=1e-2,
        regularizer=None,
        lora_rank=4,
        checkpoint_every=100,
    )
    result = align(model, tokenizer, PROFILE, [query], {}, config, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    ranker = HeadRanker(model, tokenizer, HeadProfile("tiny", result.heads, PROFILE.prompt))
    with torch.no_grad():
        after = ranker.reader.weights @ ranker.reader.head_scores(QUERY, PASSAGES)
    assert after[better] > after[worse]
    assert any(w != 0.5 for _, _, w in result.heads)  # the head weights were trained too


def run_alignment(tokenizer, checkpoint, config):
    queries = [
        misordered_query(initial_scores(tokenizer)),
        TrainingQuery("r", "bananas", tuple("abcde"), PASSAGES, (0, 1, 0, 1, None)),
    ]
    references = {q.qid: torch.linspace(1.0, 0.0, len(PASSAGES)) for q in queries}
    return align(
        tiny_model("llama", len(tokenizer)),
        tokenizer,
        PROFILE,
        queries,
        references,
        config,
        checkpoint,
        progress=False,
    )


def test_resume_after_interruption_equals_an_uninterrupted_run(tokenizer, tmp_path, monkeypatch):
    config = AlignConfig(epochs=3, lr=5e-3, lora_rank=4, checkpoint_every=2, seed=7)
    whole = run_alignment(tokenizer, None, config)
    assert len(whole.history) == 6

    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # steps 1-4 done, checkpoint after step 4; step 5 is lost
            raise KeyboardInterrupt
        return objective(*args, **kwargs)

    checkpoint = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        patch.setattr(alignment, "objective", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_alignment(tokenizer, checkpoint, config)
    assert checkpoint.exists()
    resumed = run_alignment(tokenizer, checkpoint, config)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    assert resumed.heads == whole.heads
    assert resumed.adapter.keys() == whole.adapter.keys()
    assert all(torch.equal(resumed.adapter[k], whole.adapter[k]) for k in whole.adapter)
    assert any(v.abs().sum() > 0 for k, v in whole.adapter.items() if "lora_B" in k)  # it did train

    with pytest.raises(ValueError, match="other settings"):
        run_alignment(
            tokenizer,
            checkpoint,
            AlignConfig(epochs=3, lr=1e-3, lora_rank=4, checkpoint_every=2, seed=7),
        )


def test_weights_from_cached_features_equal_alignment_with_the_model_frozen(tokenizer):
    """``align_weights`` (no forward) against ``align`` with the LoRA held still (lr 1e-12, no
    clipping, which would couple the two): the same steps on the same scores, the same weights."""
    from headrank_ir.train.examples import collect_features

    queries = [
        misordered_query(initial_scores(tokenizer)),
        TrainingQuery("r", "bananas", tuple("abcde"), PASSAGES, (0, 1, 0, 1, None)),
    ]
    config = AlignConfig(epochs=3, lr=1e-12, head_lr=5e-2, lora_rank=4, max_grad_norm=1e9, checkpoint_every=100)
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, PROFILE)
    features = collect_features(ranker.reader, queries, progress=False)
    references = {q.qid: features.combined(q.qid, [h[:2] for h in PROFILE.heads], [0.5, 0.5]) for q in queries}
    frozen = align(tiny_model("llama", len(tokenizer)), tokenizer, PROFILE, queries, references, config, progress=False)
    cached = alignment.align_weights(features, queries, PROFILE, config)
    assert [h[:2] for h in cached] == [h[:2] for h in frozen.heads]
    assert [w for *_, w in cached] == pytest.approx([w for *_, w in frozen.heads], abs=1e-5)
    assert any(abs(w - 0.5) > 1e-3 for *_, w in cached)  # the weights did move


def test_gradient_clipping_bounds_every_step(tokenizer):
    """Adam's step is lr × m̂ / (√v̂ + 1e-8); with every gradient clipped to norm 1e-12 it is at
    most lr × 1e-4, so 4 steps at lr 1e-2 move a weight by at most 4e-6: the weights stay 0.5
    and the LoRA's B factors (zero at start) stay near 0. Unclipped, the same steps move them."""
    query = misordered_query(initial_scores(tokenizer))

    def trained(max_grad_norm: float):
        config = AlignConfig(
            epochs=4, lr=1e-2, head_lr=1e-2, regularizer=None, lora_rank=4, max_grad_norm=max_grad_norm
        )
        return align(tiny_model("llama", len(tokenizer)), tokenizer, PROFILE, [query], {}, config, progress=False)

    clipped, free = trained(1e-12), trained(1e9)
    assert [w for *_, w in clipped.heads] == pytest.approx([0.5, 0.5], abs=1e-5)
    assert max(v.abs().max().item() for k, v in clipped.adapter.items() if "lora_B" in k) <= 4e-6 * 1.01
    assert max(abs(w - 0.5) for *_, w in free.heads) > 1e-3
    assert max(v.abs().max().item() for k, v in free.adapter.items() if "lora_B" in k) > 1e-3
