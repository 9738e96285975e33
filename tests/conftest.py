"""Shared fixtures: a real tokenizer, tiny randomly initialised models built from configs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config, Qwen3Config

from headrank_ir.engine.models import resolve_model_folder

# The bench's built-in datasets are found through $HEADRANK_DATA (the package never guesses a checkout layout).
# The tests honour it too, so a worktree or a scratch copy (tools/mutation.sh) finds the data; a
# checkout next to ../shared needs nothing set.
SHARED_DATA = Path(os.environ.get("HEADRANK_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
os.environ.setdefault("HEADRANK_DATA", str(SHARED_DATA))

FAMILIES = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}

# One thread: the suite's tensors are tiny, and on a shared machine extra threads only contend.
# Measured here, the suite at 3e7410a back to back under a load average of 5-8: 113 s and 205 s
# with torch's default thread count, 60 s and 63 s with one. The variables reach the processes
# tests start (bench cells, CLI runs), which read them at start-up.
torch.set_num_threads(1)
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# float32 unless a test says otherwise: `--dtype auto` is bfloat16 on a CPU with native bfloat16
# (this machine's and CI's), and the suite's references and stated bounds are float32 ones. Like the
# threads, this reaches the processes tests start; tests/test_device.py checks what auto picks.
os.environ.setdefault("HEADRANK_DTYPE", "float32")


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's real tokenizer (with its chat template), from the offline weights package."""
    return AutoTokenizer.from_pretrained(resolve_model_folder("smollm2-135m"))


def whole_message(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly ``message``: ``match`` alone searches, so a
    message with anything added around it would pass."""
    return f"^{re.escape(message)}$"


def tiny_config(family: str, vocab_size: int, layers: int = 3):
    extra = {"attention_bias": True} if family == "qwen2" else {}
    return FAMILIES[family](
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        **extra,
    )


def tiny_model(family: str, vocab_size: int, attn: str = "sdpa", layers: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    config = tiny_config(family, vocab_size, layers)
    config._attn_implementation = attn
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A folder with a tiny random Llama and the real tokenizer: usable as ``--model DIR``."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
