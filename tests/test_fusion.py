"""Fusion of HeadRank's scores with the first stage's: the profile field, the formulas by hand,
and RRF and min-max against pyserini's own fusion, through ``rerank_batch`` on a tiny model."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace

import pytest
from conftest import tiny_model

from headrank_ir.engine.fusion import fuse
from headrank_ir.engine.profile import FusionSettings, HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.errors import InputError
from headrank_ir.records import Candidate, Query, Request

PASSAGES = {
    "d1": "The Golden Gate Bridge opened to traffic in May 1937 after four years of building.",
    "d2": "Kiwi fruit hold more vitamin C than oranges by weight.",
    "d3": "Suspension bridges hang their deck from cables slung between towers.",
    "d4": "Joseph Strauss was the chief engineer of the bridge across the Golden Gate strait.",
    "d5": "The TREC Deep Learning track judged passages on a four-level scale.",
    "d6": "San Francisco's fog often hides the bridge's towers in summer.",
}
BM25 = [14.2, 11.0, 9.5, 9.4, 7.25, 3.0]
QUERY = "when was the golden gate bridge built?"


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("llama", len(tokenizer), seed=3)


def ranker_with(model, tokenizer, **fusion) -> HeadRanker:
    config = model.config
    profile = HeadProfile.icr("tiny", config.num_hidden_layers, config.num_attention_heads)
    return HeadRanker(model, tokenizer, replace(profile, fusion=FusionSettings(**fusion)), name="tiny")


def request() -> Request:
    return Request(Query(QUERY, "q1"), [Candidate(d, s, {"contents": t}) for (d, t), s in zip(PASSAGES.items(), BM25)])


def reranked(ranker: HeadRanker, **kw) -> dict[str, float]:
    (result,) = ranker.rerank_batch([request()], **kw)
    return {c.docid: c.score for c in result.candidates}


def order(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda d: (-scores[d], d))


@pytest.fixture(scope="module")
def unfused(model, tokenizer) -> dict[str, float]:
    return reranked(ranker_with(model, tokenizer))


def zscores(values):
    mean, spread = statistics.fmean(values), statistics.pstdev(values)
    return [(v - mean) / spread for v in values]


def test_interpolation_is_the_formula_by_hand(model, tokenizer, unfused):
    fused = reranked(ranker_with(model, tokenizer, method="interpolate", weight=0.3))
    head = zscores([unfused[d] for d in PASSAGES])
    first = zscores(BM25)
    expected = {d: 0.3 * h + 0.7 * f for d, h, f in zip(PASSAGES, head, first)}
    assert fused == pytest.approx(expected, abs=1e-9)
    assert order(fused) == order(expected) != order(unfused)


def test_weight_one_is_the_unfused_ranking(model, tokenizer, unfused):
    for method in ("interpolate", "rrf"):
        assert order(reranked(ranker_with(model, tokenizer, method=method, weight=1.0))) == order(unfused)


def test_weight_zero_is_the_first_stage(model, tokenizer):
    for method in ("interpolate", "rrf"):
        assert order(reranked(ranker_with(model, tokenizer, method=method, weight=0.0))) == list(PASSAGES)


def test_only_the_reranked_window_is_fused(model, tokenizer):
    fused = reranked(ranker_with(model, tokenizer, method="interpolate", weight=0.5), rank_end=4)
    assert order(fused)[4:] == ["d5", "d6"]
    window = fuse(
        FusionSettings("interpolate", 0.5),
        [reranked(ranker_with(model, tokenizer), rank_end=4)[d] for d in list(PASSAGES)[:4]],
        BM25[:4],
        list(PASSAGES)[:4],
    )
    assert [fused[d] for d in list(PASSAGES)[:4]] == pytest.approx(window, abs=1e-12)


def trec_run(scores: dict[str, float]):
    from pyserini.trectools import TrecRun

    rows = [("q1", "Q0", d, rank, scores[d], "t") for rank, d in enumerate(order(scores), start=1)]
    return TrecRun.from_list(rows)


def pyserini_scores(run) -> dict[str, float]:
    return dict(zip(run.run_data["docid"], run.run_data["score"]))


def test_rrf_matches_pyserini(model, tokenizer, unfused):
    from pyserini.fusion import reciprocal_rank_fusion

    fused = reranked(ranker_with(model, tokenizer, method="rrf", weight=0.5))
    theirs = pyserini_scores(reciprocal_rank_fusion([trec_run(unfused), trec_run(dict(zip(PASSAGES, BM25)))]))
    assert {d: 2 * s for d, s in fused.items()} == pytest.approx(theirs, abs=1e-12)  # equal weights: half theirs
    assert order(fused) == order(theirs)


def test_minmax_matches_pyserini_normalize(model, tokenizer, unfused):
    from pyserini.fusion import normalize

    fused = reranked(ranker_with(model, tokenizer, method="interpolate", weight=0.5, normalise="minmax"))
    theirs = pyserini_scores(normalize([trec_run(unfused), trec_run(dict(zip(PASSAGES, BM25)))]))
    assert {d: 2 * s for d, s in fused.items()} == pytest.approx(theirs, abs=1e-9)


def test_interpolation_without_first_stage_scores_is_refused():
    with pytest.raises(ValueError, match="first-stage score of every candidate, got None for docid 'b'"):
        fuse(FusionSettings("interpolate", 0.5), [1.0, 2.0], [3.0, None], ["a", "b"])
    assert fuse(FusionSettings("rrf", 0.5), [1.0, 2.0], [None, None], ["a", "b"]) == pytest.approx(
        [0.5 / 62 + 0.5 / 61, 0.5 / 61 + 0.5 / 62]
    )


def test_constant_lists_do_not_divide_by_zero():
    assert fuse(FusionSettings("interpolate", 0.5), [1.0, 1.0], [2.0, 1.0], ["a", "b"]) == [0.5, -0.5]
    assert fuse(FusionSettings("interpolate", 0.5, "minmax"), [1.0, 1.0], [2.0, 1.0], ["a", "b"]) == [1.0, 0.5]


@pytest.mark.parametrize(
    "fusion, field",
    [
        ({"method": "sum"}, "fusion.method"),
        ({"method": "rrf", "weight": 1.5}, "fusion.weight"),
        ({"method": "rrf", "weight": "NaN"}, "fusion.weight"),
        ({"method": "interpolate", "normalise": "l2"}, "fusion.normalise"),
        ({"method": "rrf", "rrf_k": 0}, "fusion.rrf_k"),
        ({"method": "rrf", "alpha": 0.5}, "fusion.alpha"),
        ([0.5], "fusion must be a JSON object"),
    ],
)
def test_bad_fusion_settings_name_the_field(tmp_path, fusion, field):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"model": "m", "heads": [[0, 0, 1.0]], "fusion": fusion}).replace('"NaN"', "NaN"))
    with pytest.raises(InputError, match=field):
        HeadProfile.load(path)


def test_fusion_round_trips_and_old_profiles_are_unfused(tmp_path):
    profile = HeadProfile("m", ((0, 0, 1.0),), fusion=FusionSettings("interpolate", 0.4, "minmax"))
    assert HeadProfile.load(profile.save(tmp_path / "p.json")) == profile
    (tmp_path / "old.json").write_text(json.dumps({"model": "m", "heads": [[0, 0, 1.0]]}))
    assert HeadProfile.load(tmp_path / "old.json").fusion == FusionSettings()


@pytest.mark.parametrize("reranker, first, docids", [([1.0], [1.0, 2.0], ["a"]), ([1.0], [1.0], ["a", "b"])])
def test_lists_of_different_lengths_are_refused(reranker, first, docids):
    message = f"{len(reranker)} reranker and {len(first)} first-stage scores for {len(docids)} docids"
    with pytest.raises(ValueError, match=message):
        fuse(FusionSettings("rrf", 0.5), reranker, first, docids)


@pytest.mark.parametrize("method", ["none", "rrf", "interpolate"])
def test_no_candidates_fuse_to_no_scores(method):
    assert fuse(FusionSettings(method, 0.5), [], [], []) == []


def test_rrf_breaks_reranker_ties_by_docid_and_uses_k():
    # equal reranker scores: "a" ranks 1st, "b" 2nd whatever the input order; k = 2 by hand
    fused = fuse(FusionSettings("rrf", 0.25, rrf_k=2), [5.0, 5.0, 7.0], [None, None, None], ["b", "a", "c"])
    expected = [0.25 / (2 + 3) + 0.75 / (2 + 1), 0.25 / (2 + 2) + 0.75 / (2 + 2), 0.25 / (2 + 1) + 0.75 / (2 + 3)]
    assert fused == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("bad", [True, float("inf"), float("nan"), "3.0"])
def test_interpolation_refuses_a_first_stage_score_that_is_not_a_finite_number(bad):
    with pytest.raises(ValueError, match=f"got {bad!r} for docid 'a'"):
        fuse(FusionSettings("interpolate", 0.5), [1.0, 2.0], [bad, 1.0], ["a", "b"])


def test_interpolation_takes_integer_first_stage_scores():
    # z-scores of [1, 3] and of [2, 0] are [-1, 1] and [1, -1]: weight 0.75 gives -0.5 and 0.5
    assert fuse(FusionSettings("interpolate", 0.75), [1.0, 3.0], [2, 0], ["a", "b"]) == [-0.5, 0.5]
