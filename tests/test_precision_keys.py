"""A precision that moves scores (bfloat16, now `auto` on a CPU with native bfloat16) never shares a
cache or a report with float32: the bench's cells, the research commands' feature cache, reports
and alignment folders are keyed by it, float32's keeping the names they were committed under."""

from __future__ import annotations

import pytest
import torch
from test_research_commands import research_args

# Names other engineers may move: imported here only.
from headrank_ir.bench.cli import main as bench_main
from headrank_ir.bench.store import CellKey, read_json
from headrank_ir.engine.models import DTYPE_ENV
from headrank_ir.train import align_folds, store


def test_a_cells_folder_names_its_precision_unless_float32(tmp_path):
    float32 = CellKey("smollm2-135m", "dl19", "icr", 20, None)
    assert float32.folder(tmp_path) == tmp_path / "smollm2-135m" / "dl19.all.d20"  # as committed
    bfloat16 = CellKey("smollm2-135m", "dl19", "icr", 20, None, "bfloat16")
    assert bfloat16.folder(tmp_path) == tmp_path / "smollm2-135m" / "dl19.all.d20.bfloat16"


def test_the_bench_keeps_each_precisions_cells_apart(tmp_path, monkeypatch):
    argv = ["--datasets", "dl19", "--methods", "bm25", "--depth", "3", "--max-queries", "1", "--out", str(tmp_path)]
    argv += ["--cache", str(tmp_path / "cache"), "--no-isolate"]
    monkeypatch.setenv(DTYPE_ENV, "float32")  # the bench sets it for its cells: the suite's pin comes back after
    assert bench_main(argv + ["--dtype", "float32"]) == 0
    assert bench_main(argv + ["--dtype", "bfloat16"]) == 0
    float32 = read_json(CellKey("smollm2-135m", "dl19", "bm25", 3, 1).result(tmp_path / "bench"))
    bfloat16 = read_json(CellKey("smollm2-135m", "dl19", "bm25", 3, 1, "bfloat16").result(tmp_path / "bench"))
    assert float32["dtype"] == "float32" and bfloat16["dtype"] == "bfloat16"  # two cells: none resumed from the other
    assert "--dtype bfloat16" in (tmp_path / "results.md").read_text()  # the table of the last run


@pytest.mark.parametrize("dtype, suffix", [("float32", ""), ("bfloat16", ".bfloat16"), ("auto", None)])
def test_research_features_reports_and_alignments_name_their_precision(monkeypatch, dtype, suffix):
    monkeypatch.setenv(DTYPE_ENV, dtype)
    if suffix is None:  # auto: what this CPU computes natively
        monkeypatch.setattr("headrank_ir.engine.models.native_cpu_bfloat16", lambda: True)
        suffix = ".bfloat16"
    args = research_args("loco", "evaluate")
    assert store.report_name(args, "loco") == f"loco.smollm2-135m{suffix}"
    assert store.feature_folder(args, "dl19").name == f"smollm2-135m.dl19.top20.tok64.d24{suffix}"
    assert align_folds.align_folder(args, "dl19").name == f"smollm2-135m{suffix}.q40.without-dl19.top20"


def test_an_alignment_checkpoint_resumes_only_in_its_own_precision(tokenizer, tmp_path, monkeypatch):
    import test_training_alignment
    from conftest import tiny_model

    from headrank_ir.train.alignment import AlignConfig

    config = AlignConfig(epochs=1, lr=5e-3, lora_rank=4, checkpoint_every=1, seed=7)
    checkpoint = tmp_path / "checkpoint.pt"
    test_training_alignment.run_alignment(tokenizer, checkpoint, config)  # float32: written as before
    assert "dtype" not in torch.load(checkpoint, weights_only=True)["fingerprint"]
    test_training_alignment.run_alignment(tokenizer, checkpoint, config)  # and resumed
    # the same training (settings, heads, query ids) on the same model in bfloat16
    monkeypatch.setattr(test_training_alignment, "tiny_model", lambda *args: tiny_model(*args).to(torch.bfloat16))
    with pytest.raises(ValueError, match="other settings, precision, heads or queries"):
        test_training_alignment.run_alignment(tokenizer, checkpoint, config)
