"""Exactness of the engine on tiny random Llama/Qwen2/Qwen3 models with a real tokenizer."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from headrank_ir.engine.attention import RowRecorder, TruncatedModel
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.prompt import build_layout, normalise, truncate_passages
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.engine.reader import passage_mass
from headrank_ir.engine.windows import merge_windows, plan_windows

PASSAGES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "  Bananas   are rich in potassium,\nand fibre.  ",
    "Python — a language by Guido van Rossum — first appeared in 1991. Ünïcödé “quotes”.",
    "Lobster rolls are a New England dish: lobster meat on a grilled hot-dog bun.",
    "The 2019 TREC Deep Learning track judged passages on a four-level scale (0–3).",
]
QUERY = "when was the eiffel tower built?"
SELECTED = ((0, 1, 1.0), (1, 3, 0.5), (2, 0, 0.25), (2, 2, 2.0))


def eager_twin(model, family, vocab):
    twin = tiny_model(family, vocab, attn="eager", layers=model.config.num_hidden_layers)
    twin.load_state_dict(model.state_dict())
    return twin


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("count", [1, 3, 5])
@pytest.mark.parametrize("split", ["prefix", "single"])
def test_partial_rows_equal_eager_attention_maps(tokenizer, family, count, split):
    model = tiny_model(family, len(tokenizer))
    eager = eager_twin(model, family, len(tokenizer))
    layout = build_layout(tokenizer, QUERY, PASSAGES[:count], PromptSettings())
    heads = {0: [1], 1: [3, 0], 2: [0, 2]}

    truncated = TruncatedModel(model, depth=3)
    cache = truncated.new_cache()
    prefix = layout.query_span[0] if split == "prefix" else 0
    if prefix:
        truncated.forward(layout.input_ids[:prefix], cache)
    recorder = RowRecorder(heads, [layout.query_span])
    truncated.forward(layout.input_ids[prefix:], cache, recorder)

    with torch.no_grad():
        maps = eager(torch.tensor([layout.input_ids]), output_attentions=True).attentions
    start, end = layout.query_span
    for layer, layer_heads in heads.items():
        expected = maps[layer][0, layer_heads, start:end].mean(dim=1)
        assert recorder.rows[layer].shape == (1, *expected.shape)
        torch.testing.assert_close(recorder.rows[layer][0], expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_truncated_forward_matches_full_model_at_depth(tokenizer, family):
    model = tiny_model(family, len(tokenizer), layers=4)
    ids = build_layout(tokenizer, QUERY, PASSAGES, PromptSettings()).input_ids
    captured = []
    hook = model.model.layers[1].register_forward_hook(
        lambda m, i, out: captured.append(out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        model(torch.tensor([ids]))
        truncated = TruncatedModel(model, depth=2)
        hidden = truncated.forward(ids, truncated.new_cache())
        normed = model.model.norm(captured[0])
    hook.remove()
    full, short = captured
    torch.testing.assert_close(short, full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(hidden, normed, atol=1e-6, rtol=1e-5)  # what it returns: layer 2's output, normed
    assert len(truncated.base.layers) == 2 and len(model.model.layers) == 4  # the model itself is intact


def full_recompute_mass(ranker, layout):
    """Passage mass from a fresh forward of the whole prompt: no cache reuse at all."""
    truncated = ranker.reader.truncated
    recorder = RowRecorder(ranker.reader.heads, [layout.query_span])
    truncated.forward(layout.input_ids, truncated.new_cache(), recorder)
    return passage_mass(torch.cat([recorder.rows[l][0] for l in ranker.reader.heads]), layout.passage_spans)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_kv_reuse_calibration_equals_full_recomputation(tokenizer, family):
    model = tiny_model(family, len(tokenizer))
    ranker = HeadRanker(model, tokenizer, HeadProfile("tiny", SELECTED))
    with torch.no_grad():
        reused = ranker.reader.head_scores(QUERY, PASSAGES)
        prompt = ranker.profile.prompt
        real = full_recompute_mass(ranker, build_layout(tokenizer, QUERY, PASSAGES, prompt))
        blank = full_recompute_mass(ranker, build_layout(tokenizer, "N/A", PASSAGES, prompt))
    assert reused.shape == (len(SELECTED), len(PASSAGES))
    torch.testing.assert_close(reused, real - blank, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(real, real - blank)  # calibration really subtracts something


@pytest.mark.parametrize("template", [True, False])
@pytest.mark.parametrize("order", ["reverse", "forward"])
def test_every_span_decodes_back_to_its_text(tokenizer, template, order):
    settings = PromptSettings(max_passage_tokens=12, use_chat_template=template, passage_order=order)
    layout = build_layout(tokenizer, "  what is a  lobster roll ", PASSAGES, settings)
    for (start, end), shown in zip(layout.passage_spans, layout.passage_texts):
        assert tokenizer.decode(layout.input_ids[start:end]).strip() == shown
    start, end = layout.query_span
    assert tokenizer.decode(layout.input_ids[start:end]).strip() == "what is a lobster roll"
    # the budget cut the long passages and kept the short ones whole
    assert layout.passage_texts[1] == normalise(PASSAGES[1])
    assert len(tokenizer(layout.passage_texts[2], add_special_tokens=False)["input_ids"]) <= 12
    assert layout.passage_texts[2] != normalise(PASSAGES[2])
    starts = [s for s, _ in layout.passage_spans]
    assert (starts == sorted(starts)) == (order == "forward")
    assert max(e for _, e in layout.passage_spans) <= layout.query_span[0]


def test_windows_merge_block_by_block():
    windows = [[0, 1, 2], [3, 4]]
    scores = [[0.5, 0.9, 0.1], [3.0, 2.0]]
    merged = merge_windows(windows, scores, 5)
    # window 1 keeps its scores; window 2 sits below its lowest (0.1), its gap of 1.0 kept
    assert merged[:3] == [0.5, 0.9, 0.1]
    assert merged[3] == pytest.approx(0.1 - 1.0) and merged[4] == pytest.approx(0.1 - 2.0)
    order = sorted(range(5), key=lambda i: -merged[i])
    assert order == [1, 0, 2, 3, 4]


def test_rerank_over_windows_ranks_within_each_window(tokenizer):
    model = tiny_model("llama", len(tokenizer))
    whole = HeadRanker(model, tokenizer, HeadProfile("tiny", SELECTED))
    overhead = len(build_layout(tokenizer, QUERY, [], whole.profile.prompt).input_ids)
    small = HeadRanker(model, tokenizer, whole.profile.with_prompt(max_context_tokens=overhead + 70))
    windows = plan_windows(
        truncate_passages(tokenizer, PASSAGES, 128)[1],
        small.reader.planner.prompt_overhead(QUERY),
        small.reader.planner.context_tokens,
    )
    assert len(windows) > 1 and sorted(i for w in windows for i in w) == list(range(len(PASSAGES)))
    ranked = small.rank(QUERY, PASSAGES)
    window_of = {i: n for n, w in enumerate(windows) for i in w}
    assert [window_of[p.doc_id] for p in ranked] == sorted(window_of[p.doc_id] for p in ranked)
    for window in windows:
        expected = whole.rank(QUERY, [PASSAGES[i] for i in window], doc_ids=window)
        got = [p.doc_id for p in ranked if p.doc_id in window]
        assert got == [p.doc_id for p in expected]


def test_rank_returns_ranked_documents_with_ids(tokenizer):
    ranker = HeadRanker(tiny_model("qwen3", len(tokenizer)), tokenizer, HeadProfile("tiny", SELECTED))
    ranked = ranker.rank(QUERY, PASSAGES, doc_ids=[f"d{i}" for i in range(5)])
    assert [p.rank for p in ranked] == [1, 2, 3, 4, 5]
    assert sorted(p.doc_id for p in ranked) == [f"d{i}" for i in range(5)]
    assert all(p.text == PASSAGES[int(p.doc_id[1:])] for p in ranked)
    assert [p.score for p in ranked] == sorted((p.score for p in ranked), reverse=True)
    scores = ranker.score(QUERY, PASSAGES)
    assert [p.score for p in ranked] == sorted(scores, reverse=True)


def test_default_profile_is_icr_all_heads(tokenizer):
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer)
    assert len(ranker.profile.heads) == 3 * 4 and ranker.profile.depth == 3
    assert ranker.profile.prompt.calibrate and ranker.profile.meta["method"] == "icr"


def test_profile_round_trips_through_json(tmp_path):
    profile = HeadProfile("m", SELECTED, PromptSettings(max_passage_tokens=64, calibrate=False), meta={"k": 1})
    assert HeadProfile.load(profile.save(tmp_path / "p.json")) == profile
    assert profile.depth == 3


@pytest.fixture(scope="module")
def small_ranker(tokenizer):
    return HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, HeadProfile("tiny", SELECTED))


@pytest.mark.parametrize(
    "query, passages, error, message",
    [
        ("", ["a"], ValueError, "query is empty"),
        ("   \n", ["a"], ValueError, "query is empty"),
        (None, ["a"], TypeError, "query must be a str"),
        ("q", ["fine", "  "], ValueError, "passage 1 is empty"),
        ("q", ["fine", 3], TypeError, "passage 1 must be a str"),
    ],
)
def test_bad_input_gets_a_clear_error(small_ranker, query, passages, error, message):
    with pytest.raises(error, match=message):
        small_ranker.rank(query, passages)


def test_empty_passage_list_gives_empty_ranking(small_ranker):
    assert small_ranker.rank("q", []).results == []


def test_docids_must_match_passages(small_ranker):
    with pytest.raises(ValueError, match="2 doc_ids for 1 passages"):
        small_ranker.rank("q", ["a"], doc_ids=["x", "y"])
    with pytest.raises(TypeError, match="doc_ids must be a list"):
        small_ranker.rank("q", ["a", "b", "c"], doc_ids="xyz")


def test_passage_longer_than_context_is_refused(tokenizer):
    profile = HeadProfile("tiny", SELECTED, PromptSettings(max_passage_tokens=5000, max_context_tokens=200))
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, profile)
    with pytest.raises(ValueError, match="passage 1 needs .* tokens .* context holds 200"):
        ranker.rank("q", ["short", "word " * 400])


@pytest.mark.parametrize("heads, message", [(((3, 0, 1.0),), "layer 3 head 0"), (((0, 4, 1.0),), "layer 0 head 4")])
def test_profile_naming_missing_heads_is_refused(tokenizer, heads, message):
    with pytest.raises(ValueError, match=message):
        HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, HeadProfile("tiny", heads))


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_repeated_kv_route_scores_as_the_grouped_one(tokenizer, monkeypatch, family):
    """float32 on CUDA runs SDPA with K/V repeated (``needs_ungrouped``); forced here on the CPU,
    the route gives the grouped route's scores."""
    from headrank_ir.engine import attention

    ranker = HeadRanker(tiny_model(family, len(tokenizer)), tokenizer, HeadProfile("tiny", SELECTED))
    grouped = ranker.score(QUERY, PASSAGES)
    monkeypatch.setattr(attention, "needs_ungrouped", lambda query, key: key.shape[1] != query.shape[1])
    calls = []
    monkeypatch.setattr(attention, "repeat_kv", lambda x, n: calls.append(n) or x.repeat_interleave(n, dim=1))
    torch.testing.assert_close(torch.tensor(ranker.score(QUERY, PASSAGES)), torch.tensor(grouped), atol=1e-6, rtol=0)
    assert calls and set(calls) == {2}  # the tiny models' 4 heads read 2 kv heads
