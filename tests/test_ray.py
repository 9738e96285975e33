"""``--ray``: a pool of Ray workers writes the single-process run's bytes, through a worker's death
and the driver's. One local Ray instance (2 CPUs) serves the whole module: it takes seconds to start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from pipeline_support import DL19, kill_rerank_midway

from headrank_ir.command_helpers import requests_from_args
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.pipeline.distributed import PoolShape, RayPool, pool_shape, start_ray, stop_ray
from headrank_ir.pipeline.runfile import format_trec
from headrank_ir.pipeline.signal_handlers import FATAL_SIGNALS, signal_handler
from headrank_ir.records import Candidate, Query, Request
from headrank_ir.rerank import build_parser, main

QUERIES = 10
HITS = 8


@pytest.fixture(scope="module")
def handlers_before_ray() -> dict[str, int]:
    return handlers()


@pytest.fixture(scope="module")
def cluster(handlers_before_ray):
    ray = pytest.importorskip("ray")
    # Started and stopped as RayPool does: the JVM an earlier test module started in this process
    # (Pyserini's) keeps its SIGSEGV handler, without which pytest dies at random later.
    start_ray(ray, num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    # The workers unpickle the killing ranker below by value: they cannot import this test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray.get_runtime_context().gcs_address
    stop_ray(ray)
    assert handlers() == handlers_before_ray, "ray.shutdown left the process's fatal-signal handlers changed"


def handlers() -> dict[str, int]:
    """The C handler of each fatal signal: Ray's driver replaces them all in ``ray.init``."""
    return {signal.Signals(n).name: signal_handler(n) for n in FATAL_SIGNALS}


def test_the_driver_keeps_its_fatal_signal_handlers_while_ray_runs(handlers_before_ray, cluster):
    assert handlers() == handlers_before_ray


@pytest.fixture(scope="module")
def args(tiny_model_dir) -> list[str]:
    return [
        *("--run", str(DL19 / "run.bm25.txt"), "--corpus", str(DL19 / "corpus.jsonl")),
        *("--topics", str(DL19 / "topics.tsv"), "--max-queries", str(QUERIES), "--hits", str(HITS)),
        *("--model", tiny_model_dir),
    ]


@pytest.fixture(scope="module")
def reference(args, tmp_path_factory) -> bytes:
    """The single-process run, one query per batch."""
    out = tmp_path_factory.mktemp("single") / "run.txt"
    assert main([*args, "--output", str(out)]) == 0
    return out.read_bytes()


def test_two_workers_write_the_single_process_bytes(cluster, args, reference, tmp_path, capsys):
    out = tmp_path / "run.txt"
    assert main([*args, "--ray", "--workers", "2", "--batch-size", "2", "--output", str(out)]) == 0
    assert f"reranked {QUERIES} queries" in capsys.readouterr().out
    assert out.read_bytes() == reference
    assert len(reference.splitlines()) == QUERIES * HITS


class DiesOnFirstTry:
    """A ranker whose process kills itself (SIGKILL) the first time it is handed ``doomed``'s batch,
    leaving ``marker`` behind, and records the process that ranks that batch in the end."""

    def __init__(self, ranker: HeadRanker, marker: Path, doomed: str):
        self.ranker, self.marker, self.doomed = ranker, marker, doomed

    @classmethod
    def load(cls, model: str, marker: Path, doomed: str) -> DiesOnFirstTry:
        return cls(HeadRanker.from_pretrained(model), marker, doomed)

    def rerank_ahead(self, batch, **kwargs):
        if any(r.query.qid == self.doomed for r in batch):
            if not self.marker.exists():
                self.marker.write_text(f"{os.getpid()}\n")
                os.kill(os.getpid(), signal.SIGKILL)
            with self.marker.open("a") as handle:
                handle.write(f"{os.getpid()}\n")
        return self.ranker.rerank_ahead(batch, **kwargs)


def test_a_worker_killed_mid_batch_costs_only_that_batchs_retry(cluster, args, reference, tmp_path):
    requests = requests_from_args(build_parser().parse_args([*args, "--output", "unused"]))
    batches = [requests[i : i + 2] for i in range(0, len(requests), 2)]
    marker = tmp_path / "killed"
    # The first batch dies, so it finishes last: the other worker's later batches wait in the driver.
    load = partial(DiesOnFirstTry.load, args[-1], marker, requests[0].query.qid)
    with RayPool(load, depth=100, address=None, workers=2) as pool:
        ranked = list(pool.ranked(batches))
    assert [batch for batch, _ in ranked] == batches
    written = "".join(format_trec(result, "headrank") for _, results in ranked for result in results)
    assert written.encode() == reference
    killed, survivor = marker.read_text().split()
    assert killed != survivor, "the batch was not run again in a restarted worker"


def planning_in_a_process(model: str) -> HeadRanker:
    ranker = HeadRanker.from_pretrained(model)
    ranker.overlap = "process"  # a GPU's default, here on the CPU: a planner process inside a Ray worker
    return ranker


def test_a_worker_planning_in_a_process_writes_the_single_process_bytes(cluster, args, reference):
    requests = requests_from_args(build_parser().parse_args([*args, "--output", "unused"]))
    batches = [requests[i : i + 2] for i in range(0, len(requests), 2)]
    with RayPool(partial(planning_in_a_process, args[-1]), depth=100, address=None, workers=1) as pool:
        ranked = list(pool.ranked(batches))
    written = "".join(format_trec(result, "headrank") for _, results in ranked for result in results)
    assert written.encode() == reference


def test_bad_input_on_a_worker_comes_back_as_the_single_process_error(cluster, tiny_model_dir):
    good = Request(Query("what is a lobster roll", "q1"), [Candidate("d1", 1.0, {"contents": "a sandwich"})])
    bad = Request(Query("   ", "q2"), [Candidate("d2", 1.0, {"contents": "a sandwich"})])
    with RayPool(partial(HeadRanker.from_pretrained, tiny_model_dir), depth=100, address=None, workers=1) as pool:
        with pytest.raises(ValueError) as raised:
            list(pool.ranked([[good], [bad]]))
    assert type(raised.value) is ValueError and str(raised.value).startswith("query q2: ")
    assert "\n" not in str(raised.value)


def test_a_killed_driver_resumes_on_the_cluster(cluster, args, reference, tmp_path, capsys):
    out = tmp_path / "run.txt"
    finished = kill_rerank_midway([*args, "--ray", cluster], out)
    assert 2 <= finished < QUERIES and not out.exists()
    assert main([*args, "--ray", "--workers", "2", "--output", str(out)]) == 0
    assert f"reranked {QUERIES - finished} queries" in capsys.readouterr().out
    assert out.read_bytes() == reference


@pytest.mark.parametrize(
    ("resources", "workers", "max_threads", "shape"),
    [
        ({"CPU": 2.0}, None, None, PoolShape(1, 0, 2)),
        ({"CPU": 2.0}, 2, None, PoolShape(2, 0, 1)),
        ({"CPU": 16.0}, 2, 3, PoolShape(2, 0, 3)),
        ({"CPU": 16.0, "GPU": 8.0}, None, None, PoolShape(8, 1, 2)),
        ({"CPU": 16.0, "GPU": 8.0}, 4, None, PoolShape(4, 1, 4)),
        ({"CPU": 2.0}, 3, None, "the Ray cluster has 2 CPUs"),
        ({"CPU": 16.0, "GPU": 8.0}, 9, None, "the Ray cluster has 8 GPUs"),
    ],
)
def test_one_worker_per_gpu_or_as_many_as_asked_on_cpus(resources, workers, max_threads, shape):
    if isinstance(shape, PoolShape):
        assert pool_shape(resources, workers, max_threads) == shape
    else:
        with pytest.raises(ValueError, match=shape):
            pool_shape(resources, workers, max_threads)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray"], "--ray needs Ray, an optional extra: pip install 'headrank_ir[ray]'"),
        (["--workers", "2"], "--workers sets the number of Ray workers: give it with --ray"),
    ],
)
def test_ray_flags_fail_in_one_line(flags, message, args, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: importing it fails
    assert main([*args, *flags, "--output", str(tmp_path / "run.txt")]) == 1
    stderr = capsys.readouterr().err
    assert stderr == f"error: {message}\n"


# A JVM (Pyserini's) and a Ray driver in one process, then Java code that raises SIGSEGV on purpose:
# nulls sorted by JIT-compiled code meet its implicit null checks. Without the JVM's own handler
# the process dies: with Ray's crash reporter while Ray runs, silently once Ray has shut down.
JAVA_NULLS_AROUND_RAY = """
import sys, ray
from headrank_ir.pipeline.distributed import start_ray, stop_ray
from headrank_ir.pipeline.jvm import ensure_java
ensure_java()
from pyserini.search.lucene import LuceneSearcher  # starts the JVM, as the first stage does
from jnius import JavaException, autoclass
start_ray(ray, num_cpus=1, include_dashboard=False)
if sys.argv[1] == "stopped":
    stop_ray(ray)
Collections, ArrayList = autoclass("java.util.Collections"), autoclass("java.util.ArrayList")
Integer = autoclass("java.lang.Integer")
numbers, with_nulls = ArrayList(), ArrayList()
for n in (3, 1, 2, 5, 4) * 8:
    numbers.add(Integer(n))
for n in (3, None, 1) * 4:
    with_nulls.add(n if n is None else Integer(n))
caught = 0
for i in range(60_000):
    Collections.sort(numbers)  # hot enough to be compiled
    if i % 10 == 0:
        try:
            Collections.sort(with_nulls)
        except JavaException:
            caught += 1
print(caught)
"""


@pytest.mark.slow
@pytest.mark.parametrize("ray_state", ["running", "stopped"])
def test_java_null_checks_survive_a_ray_driver_in_the_same_process(ray_state, tmp_path):
    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, "-c", JAVA_NULLS_AROUND_RAY, ray_state],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # where a crashing JVM leaves its hs_err log
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "6000"  # every null became a Java exception
