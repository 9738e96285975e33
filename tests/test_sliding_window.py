"""Sliding-window attention (Qwen2's ``use_sliding_window``, Mistral): a prompt no longer than the
window, where the window masks nothing, read exactly as full attention reads it (before, the
calibration tails' second pass crashed inside SDPA, and their own 4-D masks know no window)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

from headrank_ir.engine.attention import TruncatedModel, attention_window
from headrank_ir.engine.checks import preflight
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.reader import HeadReader, context_tokens
from headrank_ir.records import Candidate, Query, Request

QUERY = "when was the eiffel tower built?"
PASSAGES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Bananas are rich in potassium and fibre.",
    "Python first appeared in 1991.",
    "Lobster rolls are a New England dish: lobster meat on a grilled hot-dog bun.",
]
HEADS = ((0, 1, 1.0), (1, 3, 0.5), (2, 0, 0.25), (2, 2, 2.0))


def qwen2(vocab_size: int, window=None):
    """A tiny Qwen2; with ``window``, every layer slides (the same weights either way)."""
    sliding = {"use_sliding_window": True, "sliding_window": window, "max_window_layers": 0}
    config = Qwen2Config(
        **{**tiny_config("qwen2", vocab_size).to_dict(), "layer_types": None, **(sliding if window else {})}
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def profile(**prompt) -> HeadProfile:
    return HeadProfile("tiny", HEADS, prompt=PromptSettings(**prompt))


def qwen2_config(**window):
    return Qwen2Config(num_hidden_layers=3, max_position_embeddings=4096, **window)


def mistral_config(window):
    return MistralConfig(num_hidden_layers=3, max_position_embeddings=32768, sliding_window=window)


SLIDING = {"use_sliding_window": True, "sliding_window": 512, "max_window_layers": 0}  # layers from 0 on slide


@pytest.mark.parametrize("fold", [False, True], ids=["two-pass", "folded"])
def test_a_sliding_window_model_reads_as_full_attention_within_its_window(tokenizer, fold):
    window = 110  # two windows of passages
    sliding = HeadReader(qwen2(len(tokenizer), window), tokenizer, profile(), fold_calibration=fold)
    full = HeadReader(qwen2(len(tokenizer)), tokenizer, profile(max_context_tokens=window), fold_calibration=fold)
    assert sliding.planner.context_tokens == window

    (read,), (expected,) = sliding.read_batch([QUERY], [PASSAGES]), full.read_batch([QUERY], [PASSAGES])
    assert read.windows == expected.windows and len(read.windows) > 1
    for scores, reference in zip(read.head_scores, expected.head_scores):
        torch.testing.assert_close(scores, reference, atol=1e-6, rtol=1e-5)


def test_the_cache_keeps_every_key_of_a_prompt_as_long_as_the_window(tokenizer):
    """The calibration tails' pass reads the whole prompt from the cache; transformers' sliding
    cache would keep its last ``window - 1`` keys only."""
    window = 24
    truncated = TruncatedModel(qwen2(len(tokenizer), window), depth=3)
    cache = truncated.new_cache()
    truncated.forward(list(range(100, 100 + window)), cache)
    assert [layer.keys.shape[2] for layer in cache.layers] == [window] * 3


@pytest.mark.parametrize(
    "config, depth, limit, window, context",
    [
        (LlamaConfig(num_hidden_layers=3, max_position_embeddings=4096), 3, None, None, 4096),
        (qwen2_config(sliding_window=512), 3, None, None, 4096),  # Qwen2.5: a window given, not used
        (qwen2_config(**SLIDING), 3, None, 512, 512),
        (qwen2_config(**{**SLIDING, "max_window_layers": 2}), 2, None, None, 4096),  # the read layers are full
        (qwen2_config(**{**SLIDING, "max_window_layers": 2}), 3, None, 512, 512),
        (mistral_config(4096), 1, None, 4096, 4096),  # v0.1: every layer slides, no layer_types
        (mistral_config(4096), 1, 2048, 4096, 2048),
        (mistral_config(None), 1, None, None, 32768),  # v0.2
    ],
    ids=[
        "llama",
        "qwen2.5-window-off",
        "qwen2-every-layer-slides",
        "qwen2-read-layers-full",
        "qwen2-deepest-read-layer-slides",
        "mistral-v0.1",
        "profile-limit-inside-the-window",
        "mistral-v0.2",
    ],
)
def test_the_context_is_the_profile_limit_or_the_positions_and_no_more_than_the_window(
    config, depth, limit, window, context
):
    assert attention_window(config, depth) == window
    read_to_depth = HeadProfile("m", ((depth - 1, 0, 1.0),), prompt=PromptSettings(max_context_tokens=limit))
    assert context_tokens(read_to_depth, config) == context


def test_preflight_plans_within_the_window(tokenizer, tmp_path):
    """A passage that fits the model's positions but not its window stops the run before it starts,
    as the engine would refuse it."""
    folder = tmp_path / "sliding-qwen2"
    qwen2(len(tokenizer), window=100).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    passage = "The Eiffel Tower was built between 1887 and 1889 for the World's Fair in Paris. " * 3
    request = Request(Query(QUERY, "q1"), [Candidate("d1", 1.0, {"contents": passage})])
    with pytest.raises(
        ValueError,
        match=r"^query 'q1': passage 0 needs \d+ tokens next to a \d+-token prompt, but the context holds 100;",
    ):
        preflight(str(folder), profile(), [request], allow_profile_model_mismatch=True)
    preflight(str(folder), profile(max_passage_tokens=16), [request], allow_profile_model_mismatch=True)
