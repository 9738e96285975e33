"""Progress in a log: each plain line carries the elapsed time and an ETA; ``rerank --quiet``
silences the run's progress."""

from __future__ import annotations

import io
import sys

import pytest
from pipeline_support import DL19

from headrank_ir import progress, rerank


@pytest.fixture(autouse=True)
def loud_again():
    yield
    progress.set_quiet(False)  # --quiet is process-wide: later tests get their progress back


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_say_elapsed_and_eta(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    stream = io.StringIO()
    bar = progress.PlainProgress(total=6, initial=2, desc="reranking", unit="query", every=30.0, file=stream)
    clock.now += 60
    bar.update(2)  # 2 done here in 60 s, 2 left: one more minute
    clock.now += 3600
    bar.update(2)  # done: no ETA
    bar.close()
    assert stream.getvalue().splitlines() == [
        "reranking: 4/6 query, elapsed 1:00, ETA 1:00",
        "reranking: 6/6 query, elapsed 1:01:00",
    ]


def test_no_eta_before_any_work_or_without_a_total(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    stream = io.StringIO()
    progress.PlainProgress(total=3, desc="x", file=stream).close()
    unknown = progress.PlainProgress(desc="y", file=stream)
    clock.now += 31
    unknown.update()
    assert stream.getvalue().splitlines() == ["x: 0/3 it, elapsed 0:00", "y: 1 it, elapsed 0:31"]
    assert (progress.clock(59.6), progress.clock(3725)) == ("1:00", "1:02:05")


def rerank_argv(tmp_path, *extra: str) -> list[str]:
    argv = ["--run", str(DL19 / "run.bm25.txt"), "--corpus", str(DL19 / "corpus.jsonl")]
    argv += ["--topics", str(DL19 / "topics.tsv"), "--max-queries", "2", "--hits", "4", "--depth", "3"]
    return [*argv, "--output", str(tmp_path / "run.txt"), "--no-resume", *extra]


def test_rerank_quiet_silences_the_progress_and_nothing_else(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log, not a terminal
    assert rerank.main(rerank_argv(tmp_path, "--model", tiny_model_dir)) == 0
    loud = sys.stderr.getvalue()
    assert "reranking: 2/2 query" in loud and "elapsed" in loud and "Loading weights" in loud
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert rerank.main(rerank_argv(tmp_path, "--model", tiny_model_dir, "--quiet")) == 0
    assert "reranking" not in sys.stderr.getvalue()
    assert "Loading weights" not in sys.stderr.getvalue()  # transformers' bar is silenced too
    assert "reranked 2 queries" in capsys.readouterr().out  # the closing line stays
    assert rerank.build_parser().parse_args(rerank_argv(tmp_path, "--quiet")).quiet is True
