"""tools/bench_dtype.py's record maker on made-up per-query values: the paired test is scipy's
``ttest_rel`` and the counts are what changed (no model, no data)."""

from __future__ import annotations

import sys

import pytest
from pipeline_support import REPO

sys.path.insert(0, str(REPO / "tools"))
import bench_dtype  # noqa: E402

BM25 = {"1": 0.30, "2": 0.50, "3": 0.10, "4": 0.70, "5": 0.40, "6": 0.20}
FP32 = {"1": 0.40, "2": 0.55, "3": 0.20, "4": 0.70, "5": 0.45, "6": 0.25}
BF16 = {"1": 0.42, "2": 0.55, "3": 0.15, "4": 0.70, "5": 0.47, "6": 0.25}  # 1, 5 up; 3 down; 2, 4, 6 equal


def test_paired_p_is_scipys_ttest_rel_and_the_counts_are_the_changed_queries():
    from scipy import stats

    row = bench_dtype.set_record("dl19", BM25, {"float32": FP32, "bfloat16": BF16}, {"float32": 2.0, "bfloat16": 5.0})
    qids = sorted(FP32)
    expected = stats.ttest_rel([BF16[q] for q in qids], [FP32[q] for q in qids])
    assert row["p_ttest"] == pytest.approx(float(expected.pvalue), rel=1e-12)
    assert row["queries"] == 6 and row["queries_changed"] == 3
    assert (row["bf16_higher"], row["bf16_lower"]) == (2, 1)
    assert row["delta_bf16_minus_fp32"] == pytest.approx((0.02 - 0.05 + 0.02) / 6)
    assert row["nDCG@10"] == pytest.approx({"bm25": 2.2 / 6, "float32": 2.55 / 6, "bfloat16": 2.54 / 6})
    assert row["bf16_over_fp32_seconds"] == 2.5 and row["seconds_per_query"]["float32"] == pytest.approx(2 / 6)
    assert row["within_noise"] is (row["p_ttest"] >= bench_dtype.ALPHA)  # |Δ| is 0.0017, under MAX_DELTA
    assert 0 <= row["p_randomisation"] <= 1


def test_identical_dtypes_change_nothing_and_are_within_noise():
    row = bench_dtype.set_record(
        "vaswani", BM25, {"float32": FP32, "bfloat16": dict(FP32)}, {"float32": 1, "bfloat16": 1}
    )
    assert row["queries_changed"] == 0 and row["delta_bf16_minus_fp32"] == 0.0
    assert row["p_ttest"] == 1.0 and row["within_noise"] is True


def test_a_query_missing_from_one_dtype_is_refused():
    short = {q: v for q, v in BF16.items() if q != "6"}
    with pytest.raises(ValueError, match="different queries"):
        bench_dtype.set_record("dl20", BM25, {"float32": FP32, "bfloat16": short}, {"float32": 1, "bfloat16": 1})


def test_the_table_shows_every_set_and_the_missing_ones():
    row = bench_dtype.set_record("dl19", BM25, {"float32": FP32, "bfloat16": BF16}, {"float32": 2.0, "bfloat16": 5.0})
    flags = bench_dtype.cpu_flags("model name\t: X\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert flags == {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_tile": False, "amx_bf16": False}
    machine = {"cpu": "X", "cpus": 2, "flags": flags, "torch": "2", "torch_cpu_capability": "AVX2", "threads": 2}
    record = {"model": "m", "depth": 20, "sets": [row], "missing": ["cranfield"], "load_seconds": {"float32": 1.0}}
    table = bench_dtype.markdown({**record, "machine": {**machine, "load_average_at_start": [3.0, 2.0, 1.0]}})
    assert "| dl19 | 6 | 0.3667 | 0.4250 | 0.4233 | -0.0017 |" in table and "| 3 (2/1) | 2.0 | 5.0 | 2.50 |" in table
    assert "Missing or incomplete sets: cranfield." in table and "avx512_bf16 yes" in table


def test_a_set_cut_off_part_way_says_how_many_of_its_queries_it_holds():
    row = bench_dtype.set_record("dl19", BM25, {"float32": FP32, "bfloat16": BF16}, {"float32": 2.0, "bfloat16": 5.0})
    flags = bench_dtype.cpu_flags("flags\t: avx2\n")
    machine = {"cpu": "X", "cpus": 2, "flags": flags, "torch": "2", "torch_cpu_capability": "AVX2", "threads": 2}
    record = {"model": "m", "depth": 20, "missing": ["dl19"], "load_seconds": {}}
    record["machine"] = {**machine, "load_average_at_start": [3.0, 2.0, 1.0]}
    table = bench_dtype.markdown({**record, "sets": [{**row, "complete": False, "queries_of_set": 43}]})
    assert "| dl19 | 6 of 43 | 0.3667 |" in table and "Missing or incomplete sets: dl19." in table
