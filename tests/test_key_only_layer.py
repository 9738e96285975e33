"""The deepest layer cut to queries and keys (``KeyOnlyLayer``) against the full layer, on tiny
random Llama/Qwen2/Qwen3 models (float32): the same rows, scores and gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model, whole_message
from test_batching import LISTS, QUERIES
from test_engine import PASSAGES, QUERY

from headrank_ir.engine.adapter import AdapterSpec, add_lora
from headrank_ir.engine.attention import RowRecorder, TruncatedModel
from headrank_ir.engine.keyonly import KeyOnlyLayer
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.prompt import build_layout
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.engine.windows import right_padded

FAMILIES = ["llama", "qwen2", "qwen3"]
# Read from 4 layers down to layer 2. The tiny models have 4 query heads over 2 kv heads (0-1
# read kv head 0, 2-3 kv head 1): the deepest layer's heads span both groups, one of them in part.
HEADS = ((0, 1, 1.0), (1, 3, 0.5), (2, 3, 0.25), (2, 0, 2.0), (2, 1, -1.0))
DEEPEST = 2


def reader_pair(tokenizer, family, **prompt):
    """Two readers of one model: the key-only route, and the full deepest layer as reference."""
    model = tiny_model(family, len(tokenizer), layers=4)
    return readers_of(model, tokenizer, HeadProfile("tiny", HEADS, PromptSettings(**prompt)))


def readers_of(model, tokenizer, profile):
    key_only, full = (HeadRanker(model, tokenizer, profile, batch_tokens=10**6).reader for _ in range(2))
    full.truncated.reading = full.truncated.base
    assert isinstance(key_only.truncated.reading.layers[-1], KeyOnlyLayer)
    return key_only, full


def mlp_calls(model) -> list:
    """Appends to the returned list whenever the deepest selected layer's MLP runs."""
    calls = []
    model.model.layers[DEEPEST].mlp.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("calibrate", [True, False])
def test_scores_equal_the_full_layer_route(tokenizer, family, calibrate):
    key_only, full = reader_pair(tokenizer, family, calibrate=calibrate)
    calls = mlp_calls(key_only.model)
    got = key_only.read_batch(QUERIES, LISTS)  # one group: rows of unequal lengths, right-padded
    assert not calls  # the deepest layer's MLP never ran
    expected = full.read_batch(QUERIES, LISTS)
    assert calls  # ...and the hook would have seen it
    for reading, reference in zip(got, expected):
        assert reading.windows == reference.windows
        for scores, reference_scores in zip(reading.head_scores, reference.head_scores):
            torch.testing.assert_close(scores, reference_scores, atol=1e-6, rtol=1e-5)


def padded_prompts(tokenizer):
    layouts = [build_layout(tokenizer, q, p, PromptSettings()) for q, p in zip(QUERIES, LISTS)]
    return right_padded([layout.input_ids for layout in layouts]), [layout.query_span for layout in layouts]


def causal_mask_over_real_tokens(ids: torch.Tensor, spans) -> torch.Tensor:
    """A 4-D boolean mask as a pass given one would get: causal, and no key beyond a row's query."""
    keys = torch.arange(ids.shape[1])
    ends = torch.tensor([end for _, end in spans])
    allowed = (keys[None, :] <= keys[:, None])[None] & (keys[None, None, :] < ends[:, None, None])
    return allowed[:, None]


def recorded_rows(truncated, ids, spans, mode):
    heads = {layer: [h for l, h, _ in HEADS if l == layer] for layer in (0, 1, DEEPEST)}
    recorder = RowRecorder(heads, spans)
    cache = truncated.new_cache()
    if mode == "cached":  # a recorded prefix pass (the query is not in it) fills the cache first
        prefix = min(start for start, _ in spans)
        truncated.forward(ids[:, :prefix], cache, RowRecorder(heads, spans))
        ids = ids[:, prefix:]
    mask = causal_mask_over_real_tokens(ids, spans) if mode == "mask" else None
    truncated.forward(ids, cache, recorder, attention_mask=mask)
    return recorder.rows


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["causal", "mask", "cached"])
def test_deepest_rows_equal_those_the_full_layer_records(tokenizer, family, mode):
    model = tiny_model(family, len(tokenizer), layers=4)
    key_only, full = TruncatedModel(model, DEEPEST + 1), TruncatedModel(model, DEEPEST + 1)
    full.reading = full.base
    ids, spans = padded_prompts(tokenizer)
    with torch.no_grad():
        got, expected = (recorded_rows(t, ids, spans, mode) for t in (key_only, full))
    assert sorted(got) == sorted(expected) == [0, 1, DEEPEST]
    for layer in expected:
        torch.testing.assert_close(got[layer], expected[layer], atol=1e-6, rtol=1e-5)


def test_a_cache_filled_by_the_key_only_layer_refuses_a_full_pass(tokenizer):
    truncated = TruncatedModel(tiny_model("llama", len(tokenizer)), 2)
    ids = build_layout(tokenizer, QUERY, PASSAGES, PromptSettings()).input_ids
    cache = truncated.new_cache()
    truncated.forward(ids[:-3], cache, RowRecorder({1: [0]}, [(len(ids) - 3, len(ids))]))
    message = (
        "this cache holds only keys at the deepest layer (a recorded pass filled it); "
        "only recorded passes can extend it"
    )
    with pytest.raises(ValueError, match=whole_message(message)):
        truncated.forward(ids[-3:], cache)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_gradients_equal_the_full_layer_route(tokenizer, family):
    model = tiny_model(family, len(tokenizer), layers=4)
    add_lora(model, AdapterSpec(rank=2, alpha=4.0, layers=(0, 1, DEEPEST)))
    lora = {name: p for name, p in model.named_parameters() if p.requires_grad}
    for name, p in lora.items():
        if "lora_B" in name:  # B starts at zero, which leaves A without gradients
            torch.nn.init.normal_(p, std=0.1)
    key_only, full = readers_of(model, tokenizer, HeadProfile("tiny", HEADS))
    gradients = []
    for reader in (key_only, full):
        model.zero_grad()
        scores = reader.weights @ reader.head_scores(QUERY, PASSAGES)
        (scores * torch.arange(len(PASSAGES))).sum().backward()
        gradients.append({name: p.grad.clone() for name, p in lora.items()})
    got, expected = gradients
    deepest = [name for name in lora if f"layers.{DEEPEST}.self_attn" in name]
    assert deepest and all(got[name].abs().sum() > 0 for name in deepest)
    for name in lora:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5)


def test_a_family_outside_the_list_keeps_its_full_deepest_layer():
    from transformers import AutoModelForCausalLM, MistralConfig

    sizes = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1)
    config = MistralConfig(vocab_size=64, num_hidden_layers=2, **sizes)
    truncated = TruncatedModel(AutoModelForCausalLM.from_config(config), 2)
    assert truncated.reading is truncated.base
    recorder = RowRecorder({1: [0]}, [(3, 5)])
    truncated.forward(list(range(6)), None, recorder)
    assert recorder.rows[1].shape == (1, 1, 6)
