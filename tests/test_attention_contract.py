"""The attention implementation and the row recorder against attention written out by hand
(float64 loops over rows and heads), on layer shapes the tiny models of the other tests do not
have: one kv head for all query heads (MQA), as many as the query heads (MHA), and two; a scale
other than ``1/sqrt(d)``; no mask (causal), a bool mask shared by every row, an additive one per
row, calibration tails under their own rows.
Then the truncated model where the other tests do not take it: a depth out of range, a family
without the key-only layer, a checkpoint whose config turns the cache off."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from unittest.mock import patch

import pytest
import torch
from conftest import tiny_config, tiny_model, whole_message
from test_engine import PASSAGES, QUERY, SELECTED
from transformers import AutoModelForCausalLM, MistralConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from headrank_ir.engine import attention
from headrank_ir.engine.attention import IMPLEMENTATION, RowRecorder, TruncatedModel
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.prompt import build_layout
from headrank_ir.engine.ranker import HeadRanker

ROWS, HEADS, TOKENS, DIM = 2, 4, 7, 16
SCALE = 0.4  # not 1/sqrt(16): a kernel left to its default scale is seen
TAILS = 3  # calibration tails under their own mask after TOKENS - TAILS causal prompt tokens


def layer(kv_heads: int):
    """Layer 0's attention module of a tiny Llama with ``kv_heads`` kv heads for its 4 query heads."""
    config = tiny_config("llama", 32, layers=1)
    config.num_key_value_heads = kv_heads
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).model.layers[0].self_attn


def states(kv_heads: int, rows: int = ROWS):
    generator = torch.Generator().manual_seed(kv_heads)
    q = torch.randn(rows, HEADS, TOKENS, DIM, generator=generator)
    k, v = (torch.randn(rows, kv_heads, TOKENS, DIM, generator=generator) for _ in range(2))
    return q, k, v


def mask_case(kind: str, rows: int, chunk_start: int = 0):
    """``(allowed, handed)`` for a pass over tokens ``chunk_start..T``: ``allowed`` ``(rows, T, T)``
    says which key each query token may attend to; ``handed`` is the mask the layer gets."""
    allowed = torch.ones(TOKENS, TOKENS).tril().bool().expand(rows, -1, -1).clone()
    if kind == "none":  # causal, no mask handed
        return allowed, None
    if kind == "shared":  # one bool mask for every row (batch dimension 1), not causal alone
        allowed[:, 4:, 2] = False
        return allowed, allowed[:1, None, chunk_start:]
    if kind == "additive":  # row r hides token r from the tokens after it; 0 where allowed
        for row in range(rows):
            allowed[row, row + 1 :, row] = False
        handed = torch.zeros(rows, 1, TOKENS, TOKENS).masked_fill(~allowed[:, None], torch.finfo(torch.float32).min)
        return allowed, handed[:, :, chunk_start:]
    # "tails": the last TAILS tokens under their own rows, the tokens before them causal; each tail
    # sees the prompt but one token (row r: token 1 + r) and itself, as calibration tails do
    for row in range(rows):
        for tail in range(TOKENS - TAILS, TOKENS):
            allowed[row, tail] = False
            allowed[row, tail, : TOKENS - TAILS] = True
            allowed[row, tail, 1 + row] = False
            allowed[row, tail, tail] = True
    return allowed, allowed[:, None, TOKENS - TAILS :]


KINDS = ["none", "shared", "additive", "tails"]


def probabilities_by_hand(q, k, row: int, head: int, allowed, tokens=slice(None)) -> torch.Tensor:
    """``(tokens, T)``: softmax(q·k × SCALE) of query head ``head`` of batch row ``row``, in float64,
    query head h reading kv head h // groups."""
    key = k[row, head // (q.shape[1] // k.shape[1])].double()
    scores = q[row, head, tokens].double() @ key.T * SCALE
    return torch.softmax(scores.masked_fill(~allowed[row, tokens], float("-inf")), dim=-1)


def by_hand(q, k, v, allowed) -> torch.Tensor:
    """``(rows, tokens, heads, d)``: attention's output, as SDPA lays it out for transformers."""
    groups = q.shape[1] // k.shape[1]
    out = torch.zeros(q.shape[0], q.shape[2], q.shape[1], q.shape[3], dtype=torch.float64)
    for row in range(q.shape[0]):
        for head in range(q.shape[1]):
            out[row, :, head] = probabilities_by_hand(q, k, row, head, allowed) @ v[row, head // groups].double()
    return out


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ungrouped", [False, True], ids=["grouped", "kv-repeated"])
def test_the_registered_attention_is_attention_by_hand(kv_heads, kind, ungrouped, monkeypatch):
    """``ungrouped``: K/V repeated to every query head first, the route float32 takes on CUDA."""
    monkeypatch.setattr(attention, "needs_ungrouped", lambda query, key: ungrouped)
    module = layer(kv_heads)
    q, k, v = states(kv_heads)
    allowed, handed = mask_case(kind, ROWS)
    with torch.no_grad():
        out, _ = ALL_ATTENTION_FUNCTIONS[IMPLEMENTATION](module, q, k, v, handed, dropout=0.0, scaling=SCALE)
    torch.testing.assert_close(out.double(), by_hand(q, k, v, allowed), atol=1e-5, rtol=1e-5)


def rows_by_hand(q, k, heads, spans, allowed) -> torch.Tensor:
    """``(rows, len(heads), T)``: each head's softmax rows averaged over the row's query tokens."""
    out = torch.zeros(q.shape[0], len(heads), TOKENS, dtype=torch.float64)
    for row, (start, end) in enumerate(spans):
        for place, head in enumerate(heads):
            out[row, place] = probabilities_by_hand(q, k, row, head, allowed, slice(start, end)).mean(dim=0)
    return out


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk_start", [0, 3], ids=["whole", "after-cache"])
@pytest.mark.parametrize("one_row_at_a_time", [False, True])
def test_recorded_rows_are_softmax_rows_by_hand(kv_heads, kind, chunk_start, one_row_at_a_time, monkeypatch):
    """Query spans of different lengths, some straddling the tails' first token; a pass over the
    whole prompt or over its last tokens after a cache; keys read in one piece or row by row."""
    module = layer(kv_heads)
    module.scaling = SCALE
    if one_row_at_a_time:
        monkeypatch.setattr(attention, "FLOAT_KEYS_BYTES", 1)
    rows = 3
    q, k, _ = states(kv_heads, rows)
    allowed, handed = mask_case(kind, rows, chunk_start)
    spans, heads = [(3, 6), (4, 7), (6, 7)], [3, 0, 2]
    recorder = RowRecorder({0: heads}, spans)
    recorder.record(module, q[:, :, chunk_start:], k, handed)
    expected = rows_by_hand(q, k, heads, spans, allowed)
    torch.testing.assert_close(recorder.rows[0].double(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("depth", [0, 4])
def test_a_depth_outside_the_models_layers_is_refused(depth):
    model = AutoModelForCausalLM.from_config(tiny_config("llama", 32, layers=3))
    with pytest.raises(ValueError, match=whole_message(f"truncation depth {depth} is outside the model's 1..3 layers")):
        TruncatedModel(model, depth)


def test_a_family_without_the_key_only_layer_reads_through_its_full_layers(tokenizer):
    """Mistral (not in ``KEY_ONLY_FAMILIES``): recorded passes run the whole deepest layer, and
    their rows are still the eager attention maps."""
    shape = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")
    llama = tiny_config("llama", len(tokenizer))
    config = MistralConfig(
        vocab_size=len(tokenizer), num_hidden_layers=3, **{name: getattr(llama, name) for name in shape}
    )
    assert config.model_type == "mistral"
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    eager = AutoModelForCausalLM.from_config(config).eval()
    model = AutoModelForCausalLM.from_config(copy.deepcopy(config)).eval()  # its own config: truncation switches it
    model.load_state_dict(eager.state_dict())
    truncated = TruncatedModel(model, depth=3)
    assert truncated.reading is truncated.base
    layout = build_layout(tokenizer, QUERY, PASSAGES[:3], PromptSettings())
    heads = {0: [1], 2: [3, 0]}
    recorder = RowRecorder(heads, [layout.query_span])
    with torch.no_grad():
        truncated.forward(layout.input_ids, None, recorder)
        maps = eager(torch.tensor([layout.input_ids]), output_attentions=True).attentions
    start, end = layout.query_span
    for layer, layer_heads in heads.items():
        torch.testing.assert_close(
            recorder.rows[layer][0], maps[layer][0, layer_heads, start:end].mean(dim=1), atol=1e-6, rtol=1e-5
        )


def test_a_checkpoint_saved_without_its_cache_still_reuses_the_prompts_keys(tokenizer):
    """``use_cache: false`` in a checkpoint's config (common after training with gradient
    checkpointing): the two-pass calibration still reads the tails after the cached prompt."""
    model = tiny_model("qwen3", len(tokenizer))
    with torch.no_grad():
        expected = HeadRanker(model, tokenizer, HeadProfile("tiny", SELECTED)).reader.head_scores(QUERY, PASSAGES)
        model.config.use_cache = False
        ranker = HeadRanker(model, tokenizer, HeadProfile("tiny", SELECTED))
        ranker.reader.fold_calibration = False
        got = ranker.reader.head_scores(QUERY, PASSAGES)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def states_like(cuda: bool, dtype: torch.dtype, kv_heads: int):
    """What ``needs_ungrouped`` reads of a query and a key: their device kind, dtype and heads."""
    query = SimpleNamespace(is_cuda=cuda, dtype=dtype, shape=(1, HEADS, TOKENS, DIM))
    return query, SimpleNamespace(is_cuda=cuda, dtype=dtype, shape=(1, kv_heads, TOKENS, DIM))


@pytest.mark.parametrize(
    "cuda, dtype, kv_heads, expected",
    [
        (True, torch.float32, 2, True),  # no flash kernel, and the efficient one takes no grouped K/V
        (True, torch.float32, 1, True),
        (True, torch.float32, HEADS, False),  # nothing to repeat
        (True, torch.bfloat16, 2, False),  # flash serves grouped K/V
        (True, torch.float16, 2, False),
        (False, torch.float32, 2, False),  # the CPU's kernels take grouped K/V
    ],
)
def test_kv_is_repeated_only_for_float32_grouped_attention_on_cuda(cuda, dtype, kv_heads, expected):
    assert attention.needs_ungrouped(*states_like(cuda, dtype, kv_heads)) is expected


def test_a_recording_inside_another_hands_the_layers_back_to_the_outer_one():
    outer, inner = RowRecorder({0: [0]}, []), RowRecorder({1: [1]}, [])
    seen = []
    module = SimpleNamespace(layer_idx=0)
    with patch.object(RowRecorder, "record", lambda self, *_: seen.append(self)):
        with attention.recording(outer):
            with attention.recording(inner):
                attention.record_active(module, None, None, None)
            attention.record_active(module, None, None, None)
        attention.record_active(module, None, None, None)  # none active: nothing is called
    assert seen == [inner, outer]


def test_the_truncated_config_describes_the_truncated_layers():
    model = AutoModelForCausalLM.from_config(tiny_config("qwen3", 32, layers=4))
    truncated = TruncatedModel(model, 2)
    assert (truncated.config.num_hidden_layers, len(truncated.config.layer_types)) == (2, 2)
    assert (model.config.num_hidden_layers, len(model.config.layer_types)) == (4, 4)  # the model's own is intact
