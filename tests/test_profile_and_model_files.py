"""What profiles, model folders, the conversion cache and LoRA adapters say when something is off,
word for word (the messages are the user's only guide), and what they do when nothing is."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import save_file

from headrank_ir.engine import models
from headrank_ir.engine.adapter import AdapterSpec, add_lora, apply_adapter, ensure_adapter, save_adapter
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.errors import InputError

HEADS = ((0, 1, 0.5),)


def message(kind, call, *args, **kwargs) -> str:
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def test_profile_fields_of_the_wrong_type_are_named():
    assert message(ValueError, HeadProfile, 5, HEADS) == "model must be a str, got 5"
    assert message(ValueError, HeadProfile, "m", HEADS, adapter=3) == "adapter must be a str, got 3"
    assert message(ValueError, PromptSettings, max_passage_tokens=1.5) == (
        "prompt.max_passage_tokens must be a whole number, got 1.5"
    )
    assert message(ValueError, PromptSettings, calibration_query=3) == "prompt.calibration_query must be a str, got 3"
    assert message(ValueError, HeadProfile.from_json, {"model": "m", "heads": [[0, 1, 0.5]], "version": 9}) == (
        "profile version 9 is not supported (this package reads 1)"
    )


def test_a_profile_file_problem_names_the_file(tmp_path):
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"model": "\xff"}')
    assert message(InputError, HeadProfile.load, binary) == (
        f"{binary}: profile is not UTF-8 text (byte 0xff at offset 11)"
    )
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"model": 5, "heads": [[0, 1, 0.5]]}))
    assert message(InputError, HeadProfile.load, wrong) == f"{wrong}: invalid profile: model must be a str, got 5"


def test_a_relative_adapter_is_found_next_to_the_profile(tmp_path, monkeypatch):
    (tmp_path / "lora.safetensors").write_bytes(b"")
    (tmp_path / "profile.json").write_text(
        json.dumps({"model": "m", "heads": [[0, 1, 0.5]], "adapter": "lora.safetensors"})
    )
    monkeypatch.chdir(tmp_path.parent)  # not the profile's folder: the path must not be left relative
    assert HeadProfile.load(tmp_path).adapter == str(tmp_path / "lora.safetensors")


def test_all_negative_weights_are_said_once(caplog):
    with caplog.at_level(logging.WARNING, logger="headrank_ir.engine.profile"):
        HeadProfile("negated-model", ((0, 1, -0.37), (1, 2, -0.11)))
    assert caplog.messages == [
        "every head weight of the profile for negated-model is negative: passages that get less attention rank "
        "higher; right for trained signed weights, else flip the signs"
    ]


def test_a_model_name_that_is_no_name_lists_the_short_ones():
    assert message(ValueError, models.resolve_model_folder, " ") == (
        "model must be a short name (smollm2-135m, qwen2.5-coder-0.5b), a folder or a Hugging Face id, got ' '"
    )


def test_a_model_folder_without_a_tokenizer_says_so(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    assert message(ValueError, models.resolve_model_folder, tmp_path) == (
        f"model folder {str(tmp_path)!r} has a config.json but lacks its tokenizer "
        "(tokenizer.json, tokenizer_config.json, vocab.json, *.model, *.tiktoken)"
    )


def test_a_safetensors_file_with_bytes_past_its_tensors_gives_the_expected_length(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    whole = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(b"\0" * 5)
    assert models.safetensors_problem(path) == f"truncated ({whole + 5} bytes, {whole} expected)"


def test_the_cache_defaults_to_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(models.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models.cache_dir() == tmp_path / ".cache" / "headrank_ir"


def test_a_short_name_is_converted_from_its_gguf_into_the_cache(tmp_path, monkeypatch, caplog):
    """A cached conversion without weights is converted again: the GGUF file and the target are handed on."""
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    target = tmp_path / "cache" / "smollm2-135m"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    gguf = tmp_path / "model.gguf"
    converted = []
    monkeypatch.setattr(models, "_gguf_file", lambda name: gguf)
    monkeypatch.setattr(models, "_convert_gguf", lambda *args: converted.append(args))
    with caplog.at_level(logging.INFO, logger="headrank_ir.engine.models"):
        assert models.converted_folder("smollm2-135m") == target
    assert converted == [(gguf, target)]
    assert caplog.messages == [
        f"the cached conversion {target} is missing its model.safetensors; converting it again",
        f"converting {gguf} once to safetensors in {target} (about 20 s)",
    ]


def test_an_empty_adapter_spec_is_refused():
    assert message(ValueError, AdapterSpec, 2, 4.0, ()) == "a LoRA adapter needs at least one layer"


def test_lora_factors_have_the_spec_rank():
    model = tiny_model("llama", 100)
    add_lora(model, AdapterSpec(2, 4.0, (1,)))
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters() if "lora_A" in name}
    assert shapes and set(shapes.values()) == {(2, 64)}  # rank 2 by hidden 64 (q and k read the hidden state)


def test_a_model_holding_an_adapter_is_refused_for_a_profile_without_one(tmp_path):
    path = save_adapter(
        {
            "model.layers.1.self_attn.q_proj.lora_A.weight": torch.ones(2, 64),
            "model.layers.1.self_attn.q_proj.lora_B.weight": torch.ones(64, 2),
        },
        AdapterSpec(2, 4.0, (1,)),
        tmp_path / "adapter.safetensors",
    )
    model = tiny_model("llama", 100)
    apply_adapter(model, path)
    assert message(ValueError, ensure_adapter, model, None) == (
        f"the model already holds the merged LoRA adapter {path.resolve()} (from an earlier HeadRanker), "
        "but this profile has no adapter; load a fresh model for it"
    )


def test_a_profile_without_a_method_is_labelled_profile():
    assert HeadProfile("m", ((0, 1, 0.5), (2, 3, 0.5))).label() == "profile-2h-d3"
