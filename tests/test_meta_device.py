"""The read path on PyTorch's ``meta`` device: tensors there have shapes but no data, and an
operation that mixes them with CPU tensors, or reads one back to the host (``.item()``,
``.tolist()``, ``if tensor``), raises. So a reader whose model sits on ``meta`` finishing its
forwards shows, without a GPU, that every tensor the path makes follows the model's device and
that nothing in it waits for the device (the one wait is ``download``, left out here)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from test_engine import PASSAGES, QUERY, SELECTED

from headrank_ir.engine.attention import RowRecorder, TruncatedModel
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker

META = torch.device("meta")


def test_meta_tensors_cannot_be_read_back():
    """What the tests below lean on."""
    with pytest.raises(RuntimeError):
        torch.ones(1, device=META).item()
    with pytest.raises(RuntimeError):
        torch.ones(1, device=META) + torch.ones(1)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("fold", [True, False], ids=["folded", "two-pass"])
def test_the_read_path_stays_on_the_models_device(tokenizer, family, fold):
    reader = HeadRanker(tiny_model(family, len(tokenizer)).to(META), tokenizer, HeadProfile("tiny", SELECTED)).reader
    reader.fold_calibration = fold
    assert reader.device == META
    plans = [reader.plan(QUERY, PASSAGES), reader.plan("lobster", PASSAGES[:2])]
    with torch.inference_mode():
        scores = reader.read_jobs([job for _, jobs in plans for job in jobs])
    assert [(s.device, tuple(s.shape)) for s in scores] == [(META, (len(SELECTED), 5)), (META, (len(SELECTED), 2))]


def test_a_truncated_models_passes_stay_on_its_device(tokenizer):
    """A full pass, and a recorded one whose recorder makes its own spans and head indices."""
    truncated = TruncatedModel(tiny_model("qwen3", len(tokenizer)).to(META), 2)
    recorder = RowRecorder({0: [1], 1: [0, 3]}, [(6, 9), (7, 9)])
    with torch.no_grad():
        hidden = truncated.forward(list(range(9)), truncated.new_cache())
        truncated.forward(torch.arange(18).view(2, 9), None, recorder)
    assert hidden.device == META and hidden.shape == (1, 9, 64)
    assert {layer: (rows.device, tuple(rows.shape)) for layer, rows in recorder.rows.items()} == {
        0: (META, (2, 1, 9)),
        1: (META, (2, 2, 9)),
    }


def test_ids_given_as_a_list_reach_the_layers_on_the_models_device(tokenizer):
    """An embedding takes CPU indices for ``meta`` weights (a GPU's does not), so the ids the
    decoder is handed are checked where they arrive."""
    truncated = TruncatedModel(tiny_model("llama", len(tokenizer)).to(META), 2)
    arrived = []  # the embedding runs first in both decoders (full and reading), and is one module
    truncated.base.embed_tokens.register_forward_pre_hook(lambda _, args: arrived.append(args[0].device))
    with torch.no_grad():
        truncated.forward(list(range(9)), truncated.new_cache())
        truncated.forward(list(range(9)), None, RowRecorder({1: [0]}, [(6, 9)]))
    assert arrived == [META, META]  # the full pass and the recorded one
