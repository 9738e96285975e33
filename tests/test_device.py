"""Device and dtype: names resolved or refused in one line, and every tensor where the model is."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from test_engine import PASSAGES, QUERY, SELECTED

from headrank_ir.engine import models
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.rerank import main as rerank_main

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA GPU")


@pytest.mark.parametrize(
    "device, dtype, message",
    [
        ("tpu", "auto", "device 'tpu' is not one of auto, cpu, cuda, cuda:N"),
        ("cuda:x", "auto", "device 'cuda:x' is not one of"),
        ("cpu", "float64", "dtype 'float64' is not one of auto, float32, bfloat16, float16"),
        ("cuda:99", "auto", "cuda:99" if GPU else "sees no CUDA GPU"),
    ],
)
def test_bad_device_or_dtype_is_one_line(device, dtype, message):
    with pytest.raises(ValueError, match=message) as error:
        models.resolve_placement(device, dtype)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(GPU, reason="checks the machine without a GPU")
@pytest.mark.parametrize("native", [True, False], ids=["native-bfloat16", "emulated-bfloat16"])
def test_auto_on_the_cpu_is_bfloat16_only_where_it_is_native(monkeypatch, native):
    monkeypatch.delenv(models.DTYPE_ENV, raising=False)  # the suite pins float32
    monkeypatch.setattr(models, "native_cpu_bfloat16", lambda: native)
    expected = torch.bfloat16 if native else torch.float32
    assert models.resolve_placement() == (torch.device("cpu"), expected)
    assert models.resolve_placement("cpu", "auto") == (torch.device("cpu"), expected)


@pytest.mark.parametrize(
    "flags, native",
    [
        ("fpu sse avx2 avx512f avx512_bf16 avx512_vnni", True),  # AMD Zen 4, Intel Cooper Lake
        ("fpu sse avx2 avx512f amx_bf16 amx_tile", True),  # Intel Sapphire Rapids
        ("fpu sse avx2 avx512f avx512_vnni", False),  # AVX-512 without its bf16 instructions
        ("fpu sse avx2 avx512_bf16x", False),  # a flag is a whole word
        ("", False),
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU with bf16 in its name\nflags\t\t: {flags}\n\n")
    assert models.native_cpu_bfloat16(cpuinfo) is native
    assert models.native_cpu_bfloat16(tmp_path / "missing") is False  # no /proc (macOS, Windows): float32


@pytest.mark.skipif(GPU, reason="checks the machine without a GPU")
def test_float32_by_env_and_cuda_refused_without_a_gpu(monkeypatch):
    monkeypatch.setenv(models.DTYPE_ENV, "float32")
    assert models.resolve_placement() == (torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="install its CUDA build"):
        models.resolve_placement("cuda")
    monkeypatch.setenv(models.DTYPE_ENV, "bfloat16")  # what the bench sets for its cell processes
    assert models.resolve_placement() == (torch.device("cpu"), torch.bfloat16)
    assert models.resolve_placement(dtype=torch.float16)[1] == torch.float16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_the_cpu_scores_close_to_float32(tokenizer, dtype):
    """float16 is allowed on the CPU: torch 2.13 runs it (slowly); rows are read in float32."""
    model = tiny_model("qwen3", len(tokenizer))
    exact = HeadRanker(model, tokenizer, HeadProfile("tiny", SELECTED)).score(QUERY, PASSAGES)
    half = HeadRanker(tiny_model("qwen3", len(tokenizer)).to(dtype), tokenizer, HeadProfile("tiny", SELECTED))
    scores = half.score(QUERY, PASSAGES)
    assert scores == pytest.approx(exact, abs=0.05 * (max(exact) - min(exact)))  # measured: 1.6% (bf16), 0.2%
    assert sorted(range(5), key=scores.__getitem__) == sorted(range(5), key=exact.__getitem__)


def test_load_model_places_the_model(tiny_model_dir):
    model, _ = models.load_model(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"


def test_rerank_command_refuses_a_missing_device_in_one_line(capsys):
    code = rerank_main(["--run", "r", "--corpus", "c", "--topics", "t", "--output", "o", "--device", "tpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "device 'tpu' is not one of" in err


@needs_gpu
@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_cuda_float32_equals_cpu(tokenizer, family):
    profile = HeadProfile("tiny", SELECTED)
    cpu = HeadRanker(tiny_model(family, len(tokenizer)), tokenizer, profile)
    gpu = HeadRanker(tiny_model(family, len(tokenizer)).to("cuda"), tokenizer, profile)
    queries, lists = [QUERY, "lobster roll"], [PASSAGES, PASSAGES[:3]]
    for got, expected in zip(gpu.reader.read_batch(queries, lists), cpu.reader.read_batch(queries, lists)):
        assert all(s.device.type == "cpu" for s in got.head_scores)  # brought back once per batch
        for g, e in zip(got.head_scores, expected.head_scores):
            torch.testing.assert_close(g.cpu(), e, atol=1e-4, rtol=1e-3)


@needs_gpu
def test_training_step_runs_on_cuda(tokenizer):
    from test_training_alignment import PROFILE, initial_scores, misordered_query

    from headrank_ir.train.alignment import AlignConfig, Trainer

    query = misordered_query(initial_scores(tokenizer))
    model = tiny_model("llama", len(tokenizer)).to("cuda")
    references = {"q": torch.zeros(len(query.passages))}  # on the CPU, as features are
    trainer = Trainer(model, tokenizer, PROFILE, [query], references, AlignConfig(epochs=1))
    trainer.step(query)
    assert trainer.weights.device.type == "cuda" and trainer.history[0]["loss"] > 0
