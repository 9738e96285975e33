"""Planning ahead (engine/planning.py): ``rerank_batches`` gives the same results and the same
errors with the next batch planned in a planner process as without, and leaves no
process behind; on a tiny random Qwen3 with SmolLM2's real tokenizer. Each planner process costs
seconds to start (it imports torch), so the module shares one ranker."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_batching import LISTS, requests, windowed_ranker

from headrank_ir.pipeline.distributed import RankerWorker
from headrank_ir.pipeline.execution import ranked_here

ROUTES = [False, "process"]


@pytest.fixture(scope="module")
def ranker(tokenizer):
    with windowed_ranker(tokenizer, "qwen3") as ranker:
        yield ranker


def batches():
    """Three batches, the last query of each needing two windows under the ranker's context."""
    return [requests(LISTS), requests(LISTS)[::-1], requests(LISTS)[1:]]


def ranked(ranker, overlap, batch_list, **kwargs):
    ranker.overlap = overlap
    return [outcome(results) for results in ranker.rerank_batches(batch_list, **kwargs)]


def outcome(results):
    return [(r.query.qid, [(c.docid, c.score) for c in r.candidates], r.invocations_history) for r in results]


def test_planning_ahead_gives_the_results_of_planning_in_turn_exactly(ranker):
    kwargs = dict(rank_start=1, rank_end=5, populate_invocations_history=True)
    assert ranked(ranker, "process", batches(), **kwargs) == ranked(ranker, False, batches(), **kwargs)


def planner_children() -> list[int]:
    """Pids of this process's children that run a spawned planner (zombies show an empty command
    line, so a planner that was not reaped is caught by its pid, see ``gone``)."""
    mine = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if parent == os.getpid() and b"spawn_main" in command:
            mine.append(int(stat.parent.name))
    return mine


def gone(pid: int) -> bool:
    """The process ``pid`` was reaped: no entry, or (pid reused) another process's."""
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1]) != os.getpid()
    except OSError:
        return True


def test_bad_input_raises_the_error_of_planning_in_turn(ranker):
    bad = [requests(LISTS)[:2], requests([["fine"], ["  "], ["x"]])]
    errors = {}
    for overlap in ROUTES:
        ranker.overlap = overlap
        reranked = ranked_here(ranker, bad, 6)
        assert len(next(reranked)[1]) == 2  # the batch before the bad one is unaffected
        with pytest.raises(ValueError) as caught:
            next(reranked)
        errors[overlap] = (type(caught.value), str(caught.value), str(caught.value.__cause__))
    assert errors["process"] == errors[False]
    assert "candidate 0" in errors[False][1] and "\n" not in errors[False][1]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads child processes from /proc")
def test_a_planner_process_is_stopped_when_the_caller_stops_early_fails_or_closes(ranker, tokenizer):
    ranker.overlap = "process"
    reranked = ranker.rerank_batches(batches())
    next(reranked)
    started = planner_children()
    assert len(started) == 1
    reranked.close()  # stopped early: the batch planned ahead is dropped, the process kept for the next call
    with pytest.raises(RuntimeError, match="the caller's"):
        for _ in ranker.rerank_batches(batches()):
            raise RuntimeError("the caller's own error")
    assert ranked(ranker, "process", batches()[:1]) == ranked(ranker, False, batches()[:1])
    assert planner_children() == started
    ranker.close()
    assert planner_children() == [] and gone(started[0])
    with windowed_ranker(tokenizer, "qwen3") as other:  # an exception leaving ``with`` closes too
        other.overlap = "process"
        with pytest.raises(ValueError):
            list(other.rerank_batches([requests([["  "]])]))
        assert len(planner_children()) == 1
    assert planner_children() == []
    dropped = windowed_ranker(tokenizer, "qwen3")
    dropped.overlap = "process"
    list(dropped.rerank_batches(batches()[:1]))
    del dropped
    gc.collect()  # a ranker dropped unclosed stops its planner
    assert planner_children() == []


def test_a_ray_workers_batches_sent_at_once_are_read_one_at_a_time_with_the_results_in_turn(ranker):
    """Ray runs a worker's queued batches on threads of one actor (``max_concurrency``); here two
    threads stand in for Ray's, on the ranker whose planner process the module already started."""
    ranker.overlap = "process"
    list(ranker.rerank_batches(batches()[:1]))  # the planner process started, as after a worker's first batch
    worker = RankerWorker(lambda: ranker, depth=5, threads=1)
    reading, most = [], []
    read_plans = ranker.reader.read_plans

    def watched(plans):
        reading.append(1)
        most.append(len(reading))
        try:
            time.sleep(0.5)  # time enough for the other batch's plans to come back, unless it waits its turn
            return read_plans(plans)
        finally:
            reading.pop()

    ranker.reader.read_plans = watched
    try:
        with ThreadPoolExecutor(max_workers=2) as actor:
            results = [outcome(r) for r in actor.map(worker.rank, batches())]
    finally:
        del ranker.reader.read_plans
    assert results == ranked(ranker, False, batches(), rank_end=5)
    assert len(most) == len(batches()) and max(most) == 1  # never two batches on the model at once


UNGUARDED_SCRIPT = """
import sys
from pathlib import Path

with Path(sys.argv[1]).open("a") as log:
    log.write("script ran\\n")
from transformers import AutoTokenizer
from headrank_ir.engine.models import resolve_model_folder
from headrank_ir.engine.planning import Planner
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.reader import PromptPlanner
from headrank_ir.records import Candidate, Query, Request

tokenizer = AutoTokenizer.from_pretrained(resolve_model_folder("smollm2-135m"))
planner = Planner(PromptPlanner(tokenizer, HeadProfile("tiny", ((0, 1, 1.0),)), 2048), "process")
batch = [Request(Query("what is a lobster roll?", "q1"), [Candidate("d1", 1.0, {"contents": "bread"})])]
in_turn = planner.submit(batch, 0, 10).result()
in_process = planner.submit(batch, 0, 10).result()
planner.close()
print(in_turn == in_process)
"""


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """A spawned process imports its parent's script; the planner's must not, or a script that
    plans at top level (no ``if __name__ == "__main__":``) would run again inside it."""
    script, log = tmp_path / "unguarded.py", tmp_path / "runs.log"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=600)
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr[-2000:]
    assert log.read_text() == "script ran\n"
