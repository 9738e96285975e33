"""The read path never waits for the device inside a batch: each group of prompts uploads what
its passes index with once, the batch's scores come back once, and nothing in between reads a
tensor on the host (``tolist``, ``item``, ``if tensor:`` ...), which on a GPU would drain the queue.

On the CPU the hook counts the crossings; on CUDA ``set_sync_debug_mode("error")`` makes any
synchronising call inside the batch fail (skipped without a GPU)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from conftest import tiny_model
from test_batching import LISTS, QUERIES
from test_engine import SELECTED

import headrank_ir.engine.reader as reader_module
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.engine.windows import batch_groups

HOST_READS = ("tolist", "item", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


def small_group_ranker(tokenizer, family="qwen3", **prompt):
    """A ranker whose token budget splits the three test queries into several groups."""
    profile = HeadProfile("tiny", SELECTED).with_prompt(**prompt) if prompt else HeadProfile("tiny", SELECTED)
    return HeadRanker(tiny_model(family, len(tokenizer)), tokenizer, profile, batch_tokens=700)


def count_crossings(monkeypatch, reader):
    """Counts of ``upload``/``download`` calls and of host reads of any tensor, made while
    ``reader.read_plans`` runs (only then: planning on the host may read what it likes)."""
    counts = Counter()
    active = [False]

    def counting(name, function):
        def wrapper(*args, **kwargs):
            if active[0]:
                counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(reader_module, "upload", counting("upload", reader_module.upload))
    download = reader_module.download

    def download_alone(tensors):
        counts["download"] += 1
        active[0] = False  # the one wait for the device, by design
        try:
            return download(tensors)
        finally:
            active[0] = True

    monkeypatch.setattr(reader_module, "download", download_alone)
    read_plans = reader.read_plans

    def observed(plans):
        active[0] = True
        try:
            return read_plans(plans)
        finally:
            active[0] = False

    monkeypatch.setattr(reader, "read_plans", observed)
    return counts


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("calibrate", [True, False])
def test_each_group_uploads_once_and_the_batch_downloads_once(tokenizer, monkeypatch, family, calibrate):
    ranker = small_group_ranker(tokenizer, family, calibrate=calibrate)
    reader = ranker.reader
    plans = [reader.plan(q, p) for q, p in zip(QUERIES, LISTS)]
    groups = batch_groups([len(job.real.input_ids) for _, jobs in plans for job in jobs], reader.batch_tokens)
    assert len(groups) > 1  # else the test would not tell a group from a batch
    counts = count_crossings(monkeypatch, reader)
    readings = reader.read_plans(plans)
    assert counts == Counter(upload=len(groups), download=1)
    assert all(s.device.type == "cpu" for reading in readings for s in reading.head_scores)


def test_the_counting_hook_sees_a_host_read(tokenizer, monkeypatch):
    """The hook would notice one: a ``tolist`` per window put back into the read path is counted."""
    reader = small_group_ranker(tokenizer).reader
    plans = [reader.plan(q, p) for q, p in zip(QUERIES, LISTS)]
    read_jobs = reader.read_jobs
    monkeypatch.setattr(reader, "read_jobs", lambda jobs: [s.tolist() and s for s in read_jobs(jobs)])
    counts = count_crossings(monkeypatch, reader)
    reader.read_plans(plans)
    assert counts["tolist"] == sum(len(jobs) for _, jobs in plans)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_synchronising_call_inside_a_batch_on_cuda(tokenizer):
    model = tiny_model("qwen3", len(tokenizer)).to("cuda")
    reader = HeadRanker(model, tokenizer, HeadProfile("tiny", SELECTED), batch_tokens=700).reader
    plans = [reader.plan(q, p) for q, p in zip(QUERIES, LISTS)]
    reader.read_plans(plans)  # warm-up: kernels chosen, caches made
    jobs = [job for _, batch in plans for job in batch]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.inference_mode():
            scores = reader.read_jobs(jobs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(scores) == len(jobs)
