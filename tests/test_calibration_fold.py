"""Calibration folded into the prompts' forward (``fold_calibration=True``: one forward per group,
the calibration tails after the prompts, under a ``tails × T`` mask) against the two-pass route
(the prompts' forward, then the tails over its cache), on the same model and inputs: tiny random
Qwen3 and Llama (float32), batches of queries of unequal lengths and passage counts, split into
several windows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
from conftest import tiny_model
from pipeline_support import REPO
from test_batching import LISTS, QUERIES
from test_engine import PASSAGES, QUERY, SELECTED
from test_host_crossings import count_crossings

from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.prompt import build_layout
from headrank_ir.engine.reader import HeadReader
from headrank_ir.engine.windows import batch_groups

FAMILIES = ["qwen3", "llama"]


def reader_pair(tokenizer, family, context_extra=None):
    """Two readers over one model, the folded one and the two-pass one; ``context_extra``: a
    context that many tokens longer than the longest query's empty prompt (several windows)."""
    model = tiny_model(family, len(tokenizer))
    profile = HeadProfile("tiny", SELECTED)
    if context_extra is not None:
        overhead = len(build_layout(tokenizer, QUERIES[2], [], profile.prompt).input_ids)
        profile = profile.with_prompt(max_context_tokens=overhead + context_extra)
    return [HeadReader(model, tokenizer, profile, batch_tokens=10**6, fold_calibration=fold) for fold in (True, False)]


def counted_forwards(reader):
    calls = []
    forward = reader.truncated.forward
    reader.truncated.forward = lambda *args, **kwargs: (
        calls.append(kwargs.get("attention_mask")) or forward(*args, **kwargs)
    )
    return calls


@pytest.mark.parametrize("family", FAMILIES)
def test_folded_scores_equal_the_two_pass_route_in_batches_and_windows(tokenizer, family):
    folded, two_pass = reader_pair(tokenizer, family, context_extra=120)
    plans = [folded.plan(q, p) for q, p in zip(QUERIES, LISTS)]
    jobs = [job for _, query_jobs in plans for job in query_jobs]
    lengths = [len(job.real.input_ids) for job in jobs]
    groups = batch_groups(lengths, folded.batch_tokens)
    # rows of different lengths share a forward, and a query is split in several windows
    assert any(len({lengths[i] for i in group}) > 1 for group in groups)
    assert max(len(windows) for windows, _ in plans) > 1
    forwards = counted_forwards(folded)
    got = folded.read_plans(plans)
    assert len(forwards) == len(groups)  # one forward per group: the calibration rides in it
    tails = max(len(job.blank.input_ids) - job.prefix for job in jobs)
    assert all(mask.shape[-2] == tails for mask in forwards)  # a tails × T mask, never T × T
    expected = two_pass.read_plans(plans)
    for a, b in zip(got, expected):
        assert a.windows == b.windows
        for x, y in zip(a.head_scores, b.head_scores):
            torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_folded_masses_and_their_gradients_equal_the_two_pass_route(tokenizer, family):
    """What training reads (``head_masses``, with gradients): both masses, and the gradient of a
    loss on the calibrated scores with respect to the attention weights."""
    folded, two_pass = reader_pair(tokenizer, family)
    weights = folded.truncated.base.layers[1].self_attn.q_proj.weight
    gradients, masses = [], []
    for reader in (folded, two_pass):
        real, blank = reader.head_masses(QUERY, PASSAGES)
        masses.append((real.detach(), blank.detach()))
        (gradient,) = torch.autograd.grad(((real - blank) ** 2).sum(), weights)
        gradients.append(gradient)
    for x, y in zip(*masses):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)
    assert gradients[0].abs().max() > 0  # the loss reaches the weights
    torch.testing.assert_close(gradients[0], gradients[1], atol=1e-6, rtol=1e-5)


def test_the_calibration_bench_times_both_routes_on_the_same_plans(tmp_path, tiny_model_dir):
    output = tmp_path / "rows.json"
    argv = [sys.executable, str(REPO / "tools" / "bench_calibration.py"), "--model", tiny_model_dir]
    argv += ["--passages", "3", "--batch-sizes", "1", "2", "--profile", "all:2", "--repeats", "1"]
    subprocess.run(argv + ["--output", str(output)], cwd=REPO, check=True, capture_output=True, timeout=300)
    rows = json.loads(output.read_text())
    assert [(row["passages"], row["queries"]) for row in rows] == [(3, 1), (3, 2)]
    assert all(row["folded_best_s"] > 0 and row["two_pass_best_s"] > 0 for row in rows)
    assert all(row["max_abs_score_difference"] <= 1e-6 for row in rows)


def test_the_folded_route_uploads_once_per_group_and_reads_nothing_back(tokenizer, monkeypatch):
    folded, _ = reader_pair(tokenizer, "qwen3", context_extra=120)
    folded.batch_tokens = 700  # several groups
    plans = [folded.plan(q, p) for q, p in zip(QUERIES, LISTS)]
    groups = batch_groups([len(job.real.input_ids) for _, jobs in plans for job in jobs], folded.batch_tokens)
    assert len(groups) > 1
    counts = count_crossings(monkeypatch, folded)
    folded.read_plans(plans)
    assert counts == Counter(upload=len(groups), download=1)
