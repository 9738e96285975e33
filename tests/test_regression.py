"""A pinned regression, in Pyserini's manner: the real SmolLM2-135M, ICR's profile, two DL19
queries, BM25 top 20 reranked, against committed run lines.

``fixtures/dl19.smollm2-135m.depth20.trec`` was written once at commit 3e7410a, one torch thread, by

    OMP_NUM_THREADS=1 python -m headrank_ir.rerank --run ../shared/data/msmarco-passage/dl19/run.bm25.txt \\
        --corpus ../shared/data/msmarco-passage/dl19/corpus.jsonl \\
        --topics ../shared/data/msmarco-passage/dl19/topics.tsv \\
        --max-queries 2 --hits 20 --depth 20 --output dl19.smollm2-135m.depth20.trec

(ICR's profile was then the default; it is now ``--profile icr``, which the test passes.)

A change to the prompt, the attention rows, calibration or the run writer shows here as moved
passages or scores. The test took 12 s here (model load included; 26 s under a load average of
6.6), so it runs by default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_support import DL19

from headrank_ir.rerank import main

FIXTURES = Path(__file__).parent / "fixtures"


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


# The shipped profile's pin is written the same way, without --profile; it is rewritten whenever the
# shipped profile is (last: 8 heads of layers 15-21, RRF fusion with BM25 at weight 0.3, chosen by
# `python -m headrank_ir.train loco` on every evaluated query of the four sets). Passages are cut after
# max_passage_tokens of their tokens as they sit in the prompt (after a space), not tokenised alone.
@pytest.mark.parametrize(
    "profile, pinned",
    [(["--profile", "icr"], "dl19.smollm2-135m.depth20.trec"), ([], "dl19.smollm2-135m.shipped.depth20.trec")],
    ids=["icr", "shipped default"],
)
def test_dl19_two_queries_depth_20_match_the_pinned_run(tmp_path, profile, pinned):
    output = tmp_path / "run.trec"
    argv = ["--run", str(DL19 / "run.bm25.txt"), "--corpus", str(DL19 / "corpus.jsonl")]
    argv += ["--topics", str(DL19 / "topics.tsv"), "--max-queries", "2", "--hits", "20", "--depth", "20"]
    assert main([*argv, *profile, "--output", str(output)]) == 0
    got, pinned = _lines(output), _lines(FIXTURES / pinned)
    assert len(pinned) == 40
    # qid, Q0, docid, rank and tag exactly; scores to the printed precision (a swap of two
    # neighbours, 9e-6 apart at the closest, moves a score by more than that)
    assert [row[:4] + row[5:] for row in got] == [row[:4] + row[5:] for row in pinned]
    assert [float(row[4]) for row in got] == pytest.approx([float(row[4]) for row in pinned], abs=2e-6)
