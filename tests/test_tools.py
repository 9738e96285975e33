"""The benchmark tools still run against the package they measure (tiny model, a few queries):
a refactor of the command's loop once broke ``bench_throughput`` without any test noticing."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline_support import REPO


def test_bench_throughput_runs_the_commands_loop(tmp_path, tiny_model_dir):
    output = tmp_path / "rows.json"
    argv = [sys.executable, str(REPO / "tools" / "bench_throughput.py"), "--model", tiny_model_dir]
    argv += ["--passages", "3", "--profiles", "2:2", "--batch-sizes", "1", "2", "--max-queries", "2"]
    argv += ["--repeats", "1", "--batches", "2", "--no-warmup", "--baseline-queries", "0", "--output", str(output)]
    subprocess.run(argv + ["--passage-tokens", "8", "16"], cwd=REPO, check=True, capture_output=True, timeout=300)
    rows = json.loads(output.read_text())
    assert [(row["passage_tokens"], row["batch_size"]) for row in rows] == [(8, 1), (8, 2), (16, 1), (16, 2)]
    assert [row["queries"] for row in rows] == [2, 4, 2, 4]  # at least --batches batches: queries cycled
    assert all(row["engine_s_per_query"] > 0 and row["floor_s_per_query"] > 0 for row in rows)
    # the engine's promise, counted on the CPU: no host read inside a group, one download per batch
    assert all(row["syncs_per_group"] == 0 and row["groups_counted"] >= 1 for row in rows)
    assert [row["downloads_counted"] for row in rows] == [2, 2, 2, 2]  # batches of the first repeat
    assert all(0 <= row["hidden_share"] <= 1 and row["plan_s"] > 0 and row["forward_s"] > 0 for row in rows)
