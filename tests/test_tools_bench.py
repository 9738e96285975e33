"""The arithmetic of tools/bench_throughput.py and tools/gpu_acceptance.py (hidden share, syncs per
group, PASS/MISS), and the crossing counter they share, on a tiny model: no download, seconds."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch
from pipeline_support import REPO

sys.path.insert(0, str(REPO / "tools"))

import bench_throughput  # noqa: E402
import gpu_plan  # noqa: E402


def test_hidden_share_is_the_share_of_planning_that_overlapped_and_stays_within_0_and_1():
    assert bench_throughput.hidden_share(plan_s=2.0, forward_s=10.0, wall_s=12.0) == 0.0  # in turn: none hidden
    assert bench_throughput.hidden_share(plan_s=2.0, forward_s=10.0, wall_s=10.5) == 0.75
    assert bench_throughput.hidden_share(plan_s=2.0, forward_s=10.0, wall_s=9.0) == 1.0  # clipped
    assert bench_throughput.hidden_share(plan_s=2.0, forward_s=10.0, wall_s=13.0) == 0.0  # other work: clipped
    assert bench_throughput.hidden_share(plan_s=0.0, forward_s=1.0, wall_s=1.0) == 0.0


def test_syncs_per_group_counts_host_reads_per_upload_and_not_the_download():
    counts = Counter(upload=4, download=1, tolist=6, item=2, cuda_sync_warnings=3)
    assert bench_throughput.syncs_per_group(counts) == 2.0
    assert bench_throughput.syncs_per_group(Counter(download=1)) is None  # no group read


def test_cycled_fills_a_cell_with_distinct_query_ids():
    from headrank_ir.records import Query, Request

    requests = [Request(Query(f"text {i}", f"q{i}"), []) for i in range(3)]
    cell = bench_throughput.cycled(requests, 7)
    assert [r.query.qid for r in cell] == ["q0", "q1", "q2", "q0#1", "q1#1", "q2#1", "q0#2"]
    assert [r.query.text for r in cell][3:6] == ["text 0", "text 1", "text 2"]
    assert bench_throughput.cycled(requests, 2) == requests[:2]


def test_judge_and_verdicts_against_the_targets():
    assert [gpu_plan.judge(v, ">=", 100) for v in (100, 99.9, None)] == ["PASS", "MISS", "n/a"]
    assert [gpu_plan.judge(v, "<=", 1.25) for v in (1.25, 1.3)] == ["PASS", "MISS"]
    assert [gpu_plan.judge(v, "==", 0) for v in (0, 0.5)] == ["PASS", "MISS"]
    plan = gpu_plan.GPU
    cell = {"shape": "qwen3-0.6b", "dtype": "bfloat16", "passages": 20, "batch_size": 32}
    cells = [{**cell, "queries_per_s": 120.0, "engine_over_floor": 1.3}]
    out = {v["target"]: v["verdict"] for v in gpu_plan.verdicts(cells, {"syncs_per_group": 0}, gpu_plan.targets(plan))}
    assert out["qwen3-0.6b bf16, 20 passages, batch 32: q/s"] == "PASS"
    assert out["qwen3-0.6b bf16, 20 passages, batch 32: engine/floor"] == "MISS"
    assert out["syncs inside a group"] == "PASS"
    assert out["qwen3-4b bf16, 100 passages, batch 32: q/s"] == "n/a"  # not measured
    assert len(out) == 7


def test_order_change_ignores_swaps_between_near_ties():
    alone = [[0.5, 0.3, 0.3000001], [0.9, 0.1]]
    swapped_ties = [[0.5, 0.3000001, 0.3], [0.9, 0.1]]
    assert gpu_plan.order_change(alone, swapped_ties, tie=1e-6)[1] == 0
    worst, reordered = gpu_plan.order_change(alone, [[0.3, 0.5, 0.3], [0.9, 0.1]], tie=1e-6)
    assert reordered == 1 and worst == pytest.approx(0.2)


def test_the_acceptance_bounds_are_the_batch_invariance_tests():
    from test_batch_invariance import BOUND

    assert gpu_plan.BOUND == {str(dtype).removeprefix("torch."): bound for dtype, bound in BOUND.items()}


def test_host_crossings_count_a_planted_read_and_put_everything_back(tokenizer, monkeypatch):
    from test_batching import LISTS, QUERIES
    from test_host_crossings import small_group_ranker

    reader = small_group_ranker(tokenizer).reader
    plans = [reader.plan(q, p) for q, p in zip(QUERIES, LISTS)]
    before = (torch.Tensor.tolist, vars(reader).copy())
    with bench_throughput.HostCrossings(reader) as clean:
        reader.read_plans(plans)
    assert clean.summary()["syncs_per_group"] == 0 and clean.counts["download"] == 1 and clean.counts["upload"] > 1
    read_jobs = reader.read_jobs
    monkeypatch.setattr(reader, "read_jobs", lambda jobs: [s.tolist() and s for s in read_jobs(jobs)])
    with bench_throughput.HostCrossings(reader) as planted:
        reader.read_plans(plans)
    assert planted.counts["tolist"] == sum(len(jobs) for _, jobs in plans)
    monkeypatch.undo()
    assert (torch.Tensor.tolist, vars(reader)) == before
