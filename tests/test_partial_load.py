"""``load_model(depth=...)``, what ``HeadRanker.from_pretrained`` does for a profile: only the
layers the profile reads, no LM head, and exactly the scores of the whole model."""

from __future__ import annotations

import torch
from test_engine import PASSAGES, QUERY

from headrank_ir.engine.adapter import AdapterSpec, save_adapter
from headrank_ir.engine.models import load_model
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker

SHALLOW = ((0, 1, 0.5), (1, 3, 0.25), (1, 0, 0.25))  # depth 2 of the tiny model's 3 layers


def test_a_depth_loads_that_many_layers_and_no_lm_head(tiny_model_dir):
    model, _ = load_model(tiny_model_dir, depth=2)
    assert len(model.layers) == 2 and model.config.num_hidden_layers == 2
    assert not any(name.startswith("lm_head") for name, _ in model.named_parameters())
    whole, _ = load_model(tiny_model_dir)
    assert len(whole.model.layers) == 3  # without a depth: the causal LM as it is


def test_a_depth_past_the_model_loads_it_whole(tiny_model_dir):
    model, _ = load_model(tiny_model_dir, depth=3)
    assert len(model.model.layers) == 3


def test_the_partial_model_scores_exactly_as_the_whole_one(tiny_model_dir):
    profile = HeadProfile(tiny_model_dir, SHALLOW)
    partial = HeadRanker.from_pretrained(tiny_model_dir, profile, device="cpu", dtype="float32")
    model, tokenizer = load_model(tiny_model_dir, device="cpu", dtype="float32")
    whole = HeadRanker(model, tokenizer, profile, name=tiny_model_dir)
    assert len(partial.reader.model.layers) == 2
    assert partial.score(QUERY, PASSAGES) == whole.score(QUERY, PASSAGES)


def test_an_adapter_merges_into_the_partial_model_as_into_the_whole(tiny_model_dir, tmp_path):
    """Adapters are saved from the causal LM (``model.layers...``); the base model has no prefix."""
    torch.manual_seed(1)
    state = {
        "model.layers.1.self_attn.q_proj.lora_A.weight": torch.randn(2, 64),
        "model.layers.1.self_attn.q_proj.lora_B.weight": torch.randn(64, 2),
    }
    save_adapter(state, AdapterSpec(2, 4.0, (1,)), tmp_path / "adapter.safetensors")
    profile = HeadProfile(tiny_model_dir, SHALLOW, adapter=str(tmp_path / "adapter.safetensors"))
    partial = HeadRanker.from_pretrained(tiny_model_dir, profile, device="cpu", dtype="float32")
    model, tokenizer = load_model(tiny_model_dir, device="cpu", dtype="float32")
    whole = HeadRanker(model, tokenizer, profile, name=tiny_model_dir)
    plain = HeadRanker.from_pretrained(tiny_model_dir, HeadProfile(tiny_model_dir, SHALLOW))
    assert partial.score(QUERY, PASSAGES) == whole.score(QUERY, PASSAGES) != plain.score(QUERY, PASSAGES)
