"""A new user's fuzz of bad inputs and faults against ``rerank``, ``evaluate`` and the Python API.

Every case says what a correct package does: fail with one ``error:`` line that names the file
or field (``clear error``), or produce a stated result (``documented behaviour``). What it saw is
classified against that: ``clear error``, ``documented behaviour``, ``silently wrong`` (exit 0
but a wrong or missing result, or an error case that left an output), ``traceback`` (an
exception escaped the command) or ``unclear`` (an error that does not name what is wrong, or a
refusal of valid input). The cases of ``tests/test_fuzz.py`` run here too, with many more.

    python tests/fuzz_inputs.py --out runs/fuzz_inputs    # writes .json (records) and .md (table)

It lives beside the suite whose cases and helpers it imports (run as a script, its folder is on
the path); not a test module itself, pytest does not collect it. It tests the installed package:
from a checkout other than the one installed, run it with ``PYTHONPATH=.``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import test_fuzz as suite  # the suite's cases and file helpers
from conftest import tiny_model

from headrank_ir import evaluate as evaluate_cli
from headrank_ir import rerank as rerank_cli
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.pipeline.runfile import RunWriter
from headrank_ir.records import Candidate, Query, Request

REPO = Path(__file__).resolve().parents[1]

OUTCOMES = ("clear error", "documented behaviour", "silently wrong", "traceback", "unclear")


@dataclass
class Seen:
    code: int | None
    out: str
    err: str
    crash: str = ""  # the exception that escaped, if any


@dataclass
class Record:
    case: str
    surface: str
    outcome: str
    detail: str


# -- running a command in-process, as a user would see it -------------------------------------------


def run_command(entry: Callable[[list[str]], int], argv: list[str]) -> Seen:
    out, err = io.StringIO(), io.StringIO()
    logging.getLogger().handlers.clear()  # each command configures logging to its own stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = entry(argv)
    except SystemExit as stop:  # argparse
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001 (a traceback is the finding)
        return Seen(None, out.getvalue(), err.getvalue(), traceback.format_exc().strip().splitlines()[-1])
    return Seen(code, out.getvalue(), err.getvalue())


def judge_error(seen: Seen, expect: tuple[str, ...], output: Path | None) -> tuple[str, str]:
    """An error case: a non-zero exit with one ``error:`` line holding every expected word."""
    if seen.crash:
        return "traceback", seen.crash
    lines = [line for line in seen.err.splitlines() if "error: " in line]
    if seen.code == 0:
        return "silently wrong", f"exit 0: {seen.out.strip()[:120]}"
    if output is not None and output.exists():
        return "silently wrong", f"failed but left {output.name}"
    if len(lines) != 1 or "Traceback" in seen.err:
        return "unclear", seen.err.strip()[-200:]
    message = lines[0]
    missing = [word for word in expect if word not in message]
    return ("unclear", f"lacks {missing}: {message}") if missing else ("clear error", message)


def judge_result(seen: Seen, check: Callable[[], bool], what: str) -> tuple[str, str]:
    """A valid-input case: exit 0 and ``check()`` true."""
    if seen.crash:
        return "traceback", seen.crash
    if seen.code != 0:
        return "unclear", f"refused valid input: {seen.err.strip()[-200:]}"
    return ("documented behaviour", what) if check() else ("silently wrong", f"exit 0 but not: {what}")


# -- the scratch folder -------------------------------------------------------------------------------


class Scratch:
    """A fresh folder per case with the suite's good files; the tiny model is shared."""

    def __init__(self, base: Path, model: str):
        self.base, self.model, self.count = base, model, 0

    def folder(self, files: dict | None = None) -> Path:
        self.count += 1
        folder = self.base / f"case{self.count:03d}"
        suite.write_files(folder, files or {}, self.model)
        return folder

    def argv(self, folder: Path, *extra: str) -> list[str]:
        return suite.command(folder, self.model, *extra)


def reference_run(scratch: Scratch) -> bytes:
    folder = scratch.folder()
    seen = run_command(rerank_cli.main, scratch.argv(folder))
    if seen.code != 0:
        raise SystemExit(f"the good inputs do not rerank: {seen.err}")
    return (folder / "out.txt").read_bytes()


def tiny_model_dir(base: Path) -> str:
    from transformers import AutoTokenizer

    from headrank_ir.engine.models import resolve_model_folder

    folder = base / "tiny-llama"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_folder("smollm2-135m"))
    tiny_model("llama", len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


# -- the cases ------------------------------------------------------------------------------------------

GOOD = suite.GOOD_FILES
BOM = "\ufeff"


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def gz(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"))


# Valid inputs written differently: the run must be byte-identical to the reference run.
SAME_RUN = {
    "topics crlf": ({"topics.tsv": crlf(GOOD["topics.tsv"])}, ()),
    "topics gzip": ({"t.tsv.gz": gz(GOOD["topics.tsv"])}, ("--topics", "{d}/t.tsv.gz")),
    "topics jsonl": (
        {"t.jsonl": '{"qid": "q1", "query": "what is a lobster roll"}\n{"_id": "q2", "text": "how do bees fly"}\n'},
        ("--topics", "{d}/t.jsonl"),
    ),
    "topics json titles": (
        {"t.json": '{"q1": {"title": "what is a lobster roll"}, "q2": {"title": "how do bees fly"}}'},
        ("--topics", "{d}/t.json"),
    ),
    "topics json bare": (
        {"t.json": '{"q1": "what is a lobster roll", "q2": "how do bees fly"}'},
        ("--topics", "{d}/t.json"),
    ),
    "topics trec": (
        {
            "t.trec": "<top>\n<num> Number: q1\n<title> what is a lobster roll\n</top>\n"
            "<top>\n<num> Number: q2\n<title> how do bees fly\n</top>\n"
        },
        ("--topics", "{d}/t.trec"),
    ),
    "topics bom": ({"topics.tsv": BOM + GOOD["topics.tsv"]}, ()),
    "topics blank lines": ({"topics.tsv": "\n" + GOOD["topics.tsv"] + "\n\n"}, ()),
    "topics extra spaces in text": ({"topics.tsv": "q1\twhat is a lobster roll   \nq2\thow do bees fly\n"}, ()),
    "run crlf": ({"run.txt": crlf(GOOD["run.txt"])}, ()),
    "run tabs": ({"run.txt": GOOD["run.txt"].replace(" ", "\t")}, ()),
    "run bom": ({"run.txt": BOM + GOOD["run.txt"]}, ()),
    "run gzip": ({"run.txt.gz": gz(GOOD["run.txt"])}, ("--run", "{d}/run.txt.gz")),
    "run lines shuffled": ({"run.txt": "".join(reversed(GOOD["run.txt"].splitlines(keepends=True)))}, ()),
    "run blank lines": ({"run.txt": "\n" + GOOD["run.txt"] + "\n"}, ()),
    "corpus bom": ({"corpus.jsonl": BOM + GOOD["corpus.jsonl"]}, ()),
    "corpus crlf": ({"corpus.jsonl": crlf(GOOD["corpus.jsonl"])}, ()),
    "corpus gzip": ({"c.jsonl.gz": gz(GOOD["corpus.jsonl"])}, ("--corpus", "{d}/c.jsonl.gz")),
    "corpus docid/text keys": (
        {"corpus.jsonl": GOOD["corpus.jsonl"].replace('"id"', '"docid"').replace('"contents"', '"text"')},
        (),
    ),
    "corpus extra docs": ({"corpus.jsonl": GOOD["corpus.jsonl"] + '{"id": "d9", "contents": "x"}\n'}, ()),
    "corpus empty passage not in the run": (
        {"corpus.jsonl": GOOD["corpus.jsonl"] + '{"id": "d9", "contents": ""}\n'},
        (),
    ),
    "corpus blank lines": ({"corpus.jsonl": "\n" + GOOD["corpus.jsonl"] + "\n"}, ()),
    "output in new folders": ({}, ("--output", "{d}/a/b/c/out.txt")),
    "everything with bom and crlf": ({name: BOM + crlf(text) for name, text in GOOD.items()}, ()),
}

# Invalid inputs beyond the suite's: (files, argv, words the error line must hold).
MORE_ERRORS = {
    "topics jsonl no text": ({"t.jsonl": '{"qid": "q1"}\n'}, ("--topics", "{d}/t.jsonl"), ("t.jsonl:1:", "query text")),
    "topics jsonl bool id": (
        {"t.jsonl": '{"qid": true, "query": "x"}\n'},
        ("--topics", "{d}/t.jsonl"),
        ("t.jsonl:1:", "must be a string"),
    ),
    "topics json no title": ({"t.json": '{"q1": {"desc": "x"}}'}, ("--topics", "{d}/t.json"), ("t.json:", "'title'")),
    "topics json invalid": ({"t.json": '{"q1": '}, ("--topics", "{d}/t.json"), ("t.json:1:", "not valid JSON")),
    "topics empty id": ({"topics.tsv": "\tquery\n"}, (), ("topics.tsv:1:", "empty query id")),
    "topics only a bom": ({"topics.tsv": BOM}, (), ("topics.tsv:", "no queries")),
    "topics a folder": ({"tf/x": ""}, ("--topics", "{d}/tf"), ("tf", "not a file")),
    "topics name offline": ({}, ("--topics", "dl19"), ("dl19", "pass a file")),
    "topics unknown name": ({}, ("--topics", "nosuchtopics"), ("unknown topics 'nosuchtopics'",)),
    "topics share nothing with run": ({"topics.tsv": "x1\tq\n"}, (), ("no query of the topics",)),
    "qrels five fields": ({"qrels.txt": "q1 0 d1 1 x\n"}, ("--qrels", "{d}/qrels.txt"), ("qrels.txt:1:",)),
    "qrels missing": ({}, ("--qrels", "{d}/nope.txt"), ("nope.txt", "not found")),
    "qrels a folder": ({"qf/x": ""}, ("--qrels", "{d}/qf"), ("qf", "not a file")),
    "qrels for topics of another collection": (
        {"qrels.txt": "z1 0 d9 1\nz2 0 d8 0\n"},
        ("--qrels", "{d}/qrels.txt"),
        ("no query of the run",),
    ),
    "qrels float grade": ({"qrels.txt": "q1 0 d1 0.5\n"}, ("--qrels", "{d}/qrels.txt"), ("qrels.txt:1:", "'0.5'")),
    "qrels name offline": ({}, ("--qrels", "dl20"), ("dl20", "pass a file")),
    "run rank not integer": ({"run.txt": "q1 Q0 d1 1.5 2 x\n"}, (), ("run.txt:1:", "'1.5'")),
    "run score inf": ({"run.txt": "q1 Q0 d1 1 inf x\n"}, (), ("run.txt:1:", "not finite")),
    "run not utf-8": ({"run.txt": b"q1 Q0 d\xff1 1 2 x\n"}, (), ("run.txt:1:", "not UTF-8")),
    "run missing": ({}, ("--run", "{d}/nope.txt"), ("nope.txt", "not found")),
    "run a folder": ({"rf/x": ""}, ("--run", "{d}/rf"), ("rf", "not a file")),
    "run seven fields": ({"run.txt": "q1 Q0 d1 1 2 x y\n"}, (), ("run.txt:1:", "7 fields")),
    "corpus missing": ({}, ("--corpus", "{d}/nope.jsonl"), ("nope.jsonl", "not found")),
    "corpus not utf-8 outside the run": (
        {"corpus.jsonl": GOOD["corpus.jsonl"].encode() + b'{"id": "d9", "contents": "\xff"}\n'},
        (),
        ("corpus.jsonl:4:", "not UTF-8"),
    ),
    "corpus whitespace passage": (
        {"corpus.jsonl": GOOD["corpus.jsonl"].replace("Wings beat.", "\\t \\n")},
        (),
        ("corpus.jsonl:3:", "'d3' is empty"),
    ),
    "corpus null text": (
        {"corpus.jsonl": GOOD["corpus.jsonl"].replace('"Wings beat."', "null")},
        (),
        ("corpus.jsonl:3:", "must be a string"),
    ),
    "corpus empty file": ({"corpus.jsonl": ""}, (), ("corpus.jsonl:", "no documents")),
    "corpus surrogate docid": (
        {"corpus.jsonl": GOOD["corpus.jsonl"] + '{"id": "\\ud800", "contents": "x"}\n'},
        (),
        ("corpus.jsonl:4:", "surrogate"),
    ),
    "profile folder without profile.json": ({"pf/x": ""}, ("--profile", "{d}/pf"), ("profile.json", "does not exist")),
    "profile empty heads": (
        {"p.json": suite.profile_json(heads=[])},
        ("--profile", "{d}/p.json"),
        ("p.json:", "heads"),
    ),
    "profile text weight": (
        {"p.json": suite.profile_json(heads=[[0, 1, "1"]])},
        ("--profile", "{d}/p.json"),
        ("p.json:", "heads[0] weight"),
    ),
    "profile negative head": (
        {"p.json": suite.profile_json(heads=[[0, -1, 1.0]])},
        ("--profile", "{d}/p.json"),
        ("p.json:", "heads[0] head"),
    ),
    "profile bool layer": (
        {"p.json": suite.profile_json(heads=[[True, 1, 1.0]])},
        ("--profile", "{d}/p.json"),
        ("p.json:", "heads[0] layer"),
    ),
    "profile head as object": (
        {"p.json": suite.profile_json(heads=[{"layer": 0, "head": 1, "weight": 1}])},
        ("--profile", "{d}/p.json"),
        ("p.json:", "heads[0]"),
    ),
    "profile heads as object": (
        {"p.json": suite.profile_json(heads={"0": [1, 1.0]})},
        ("--profile", "{d}/p.json"),
        ("p.json:", "heads must be"),
    ),
    "profile missing adapter": (
        {"p.json": suite.profile_json(adapter="gone.safetensors")},
        ("--profile", "{d}/p.json"),
        ("p.json:", "gone.safetensors does not exist"),
    ),
    "profile empty calibration query": (
        {"p.json": suite.profile_json(prompt={"calibration_query": " "})},
        ("--profile", "{d}/p.json"),
        ("p.json:", "prompt.calibration_query"),
    ),
    "profile passage order": (
        {"p.json": suite.profile_json(prompt={"passage_order": "random"})},
        ("--profile", "{d}/p.json"),
        ("p.json:", "prompt.passage_order"),
    ),
    "profile zero context": (
        {"p.json": suite.profile_json(prompt={"max_context_tokens": 0})},
        ("--profile", "{d}/p.json"),
        ("p.json:", "prompt.max_context_tokens"),
    ),
    "profile meta list": ({"p.json": suite.profile_json(meta=[1])}, ("--profile", "{d}/p.json"), ("p.json:", "meta")),
    "profile version text": (
        {"p.json": suite.profile_json(version="1")},
        ("--profile", "{d}/p.json"),
        ("p.json:", "version '1'"),
    ),
    "profile model missing": (
        {"p.json": json.dumps({"heads": [[0, 1, 1.0]]})},
        ("--profile", "{d}/p.json"),
        ("p.json:", "'model'"),
    ),
    "profile empty file": ({"p.json": ""}, ("--profile", "{d}/p.json"), ("p.json:", "not valid JSON")),
    "profile for a short name on a folder": (
        {"p.json": suite.profile_json(model="smollm2-135m")},
        ("--profile", "{d}/p.json"),
        ("made for model 'smollm2-135m'",),
    ),
    "output symlink": ({"target.txt": "keep\n"}, ("--output", "{d}/link.txt"), ("link.txt is a symbolic link",)),
    "output journal is a folder": ({"out.txt.journal/x": ""}, (), ("out.txt.journal is a folder",)),
    "output partial is a folder": ({"out.txt.partial/x": ""}, (), ("out.txt.partial is a folder",)),
    "output foreign with no-resume": ({"out.txt": "mine\n"}, ("--no-resume",), ("out.txt exists", "left alone")),
    "run tag with space": ({}, ("--run-tag", "two words"), ("run tag 'two words'",)),
    "index and run": ({}, ("--index", "{d}"), ("either --index",)),
    "no first stage": ({}, ("--run", ""), ("no first stage",)),
    "model hub id offline": ({}, ("--model", "Qwen/Qwen3-0.6B"), ("'Qwen/Qwen3-0.6B' did not resolve",)),
    "model empty": ({}, ("--model", ""), ("model must be",)),
    "model a file": ({"m.bin": "x"}, ("--model", "{d}/m.bin"), ("has no config.json",)),
    "depth zero": ({}, ("--depth", "0"), ("--depth", "positive integer")),
    "hits text": ({}, ("--hits", "ten"), ("--hits", "'ten'")),
    "format csv": ({}, ("--output-format", "csv"), ("--output-format", "'csv'")),
    "batch size negative": ({}, ("--batch-size", "-1"), ("--batch-size",)),
    # the one output guard: never an input, a device or a foreign folder, whichever flag names it
    "output onto the run": ({}, ("--output", "{d}/run.txt", "--no-resume"), ("run.txt is an input",)),
    "output onto the corpus": ({}, ("--output", "{d}/corpus.jsonl"), ("corpus.jsonl is an input",)),
    "first stage onto the topics": ({}, ("--first-stage-output", "{d}/topics.tsv"), ("topics.tsv is an input",)),
    "first stage onto the profile": (
        {"p.json": suite.profile_json()},
        ("--profile", "{d}/p.json", "--first-stage-output", "{d}/p.json"),
        ("p.json is an input",),
    ),
    "first stage onto the output journal": ({}, ("--first-stage-output", "{d}/out.txt"), ("another file",)),
    "first stage symlink": (
        {"target.txt": "keep\n"},
        ("--first-stage-output", "{d}/link.txt"),
        ("link.txt is a symbolic link",),
    ),
    "first stage blank name": ({}, ("--first-stage-output", "  "), ("names no file",)),
    "ray unreachable host name": ({}, ("--ray", "localhost:1"), ("nothing answers at localhost:1",)),
    "ray port text": ({}, ("--ray", "127.0.0.1:port"), ("--ray takes auto",)),
}


def output_of(folder: Path, argv: tuple[str, ...]) -> Path:
    """The --output a command line names (the last one wins, as in argparse)."""
    given = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--output"]
    return Path(given[-1].replace("{d}", str(folder))) if given else folder / "out.txt"


def cli_error_cases(scratch: Scratch) -> list[Record]:
    cases = {name: (c.files, c.argv, c.expect) for name, c in suite.CLI_CASES.items()}
    records = []
    for name, (files, argv, expect) in {**cases, **MORE_ERRORS}.items():
        folder = scratch.folder(files)
        if name == "output symlink":
            (folder / "link.txt").symlink_to(folder / "target.txt")
        if name == "first stage symlink":
            (folder / "link.txt").symlink_to(folder / "target.txt")
        output = output_of(folder, argv)
        existed = output.exists() or output.is_symlink()
        inputs = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
        seen = run_command(rerank_cli.main, scratch.argv(folder, *argv))
        outcome, detail = judge_error(seen, expect, None if existed else output)
        changed = [p.name for p, data in inputs.items() if not p.is_file() or p.read_bytes() != data]
        if changed:
            outcome, detail = "silently wrong", f"data loss: {changed[0]} was changed"
        if existed and outcome == "clear error" and name in ("output foreign file", "output foreign with no-resume"):
            outcome, detail = (outcome, detail) if output.read_text() == "mine\n" else ("silently wrong", "replaced")
        records.append(Record(name, "rerank", outcome, detail))
    return records


def cli_same_run_cases(scratch: Scratch, reference: bytes) -> list[Record]:
    records = []
    for name, (files, argv) in SAME_RUN.items():
        folder = scratch.folder(files)
        seen = run_command(rerank_cli.main, scratch.argv(folder, *argv))
        output = output_of(folder, argv)
        verdict = judge_result(
            seen, lambda o=output: o.exists() and o.read_bytes() == reference, "run byte-identical to the reference"
        )
        records.append(Record(name, "rerank", *verdict))
    return records


# -- documented behaviours of the command line, and faults ------------------------------------------


def behaviour_cases(scratch: Scratch, reference: bytes) -> list[Record]:
    records = []

    def record(name: str, verdict: tuple[str, str], surface: str = "rerank") -> None:
        records.append(Record(name, surface, *verdict))

    folder = scratch.folder({"p.json": suite.profile_json(prompt={"calibrate": False}), "topics.tsv": "q1\tN/A\n"})
    seen = run_command(rerank_cli.main, scratch.argv(folder, "--profile", "{d}/p.json"))
    record(
        "calibration query without calibration", judge_result(seen, lambda: "reranked 1 queries" in seen.out, "ranks")
    )

    folder = scratch.folder({"topics.tsv": "q1\twhat is a lobster roll\nq3\tunknown query\n"})
    seen = run_command(rerank_cli.main, scratch.argv(folder))
    record("topic without hits", judge_result(seen, lambda: "have no first-stage hits" in seen.err, "left out, said"))

    folder = scratch.folder({"topics.tsv": "q2\thow do bees fly\n"})
    seen = run_command(rerank_cli.main, scratch.argv(folder))
    record(
        "topics a subset of the run",
        judge_result(seen, lambda: (folder / "out.txt").read_text().split()[0] == "q2", "only q2 reranked"),
    )

    folder = scratch.folder()
    seen = run_command(rerank_cli.main, scratch.argv(folder, "--max-queries", "1"))
    record("max queries", judge_result(seen, lambda: (folder / "out.txt").read_text().count("\n") == 2, "one query"))

    folder = scratch.folder({"qrels.txt": BOM + "q1 0 d1 -1\nq2 0 d3 2\n"})
    seen = run_command(rerank_cli.main, scratch.argv(folder, "--qrels", f"{folder}/qrels.txt"))
    record("qrels negative grade and bom", judge_result(seen, lambda: "2 judged queries" in seen.out, "evaluated"))

    folder = scratch.folder()
    first = run_command(rerank_cli.main, scratch.argv(folder))
    again = run_command(rerank_cli.main, scratch.argv(folder))
    record(
        "rerun of a finished run",
        judge_result(again, lambda: first.code == 0 and "nothing to rerank" in again.out, "nothing to rerank"),
    )
    seen = run_command(rerank_cli.main, scratch.argv(folder, "--depth", "1"))
    record("rerun with other settings", judge_error(seen, ("other settings (depth: 100 → 1)",), None))
    seen = run_command(rerank_cli.main, scratch.argv(folder, "--depth", "1", "--no-resume"))
    record(
        "no-resume over our own run",
        judge_result(seen, lambda: (folder / "out.txt").read_bytes() != reference, "rewritten with depth 1"),
    )

    for tamper in ("truncated", "edited", "appended", "emptied"):
        folder = scratch.folder()
        run_command(rerank_cli.main, scratch.argv(folder, "--qrels", f"{folder}/qrels.txt"))
        out = folder / "out.txt"
        data = out.read_bytes()
        changed = {
            "truncated": data[:-7],
            "edited": data.replace(b"Q0 d1", b"Q0 d3", 1),
            "appended": data + data,
            "emptied": b"",
        }[tamper]
        out.write_bytes(changed)
        seen = run_command(rerank_cli.main, scratch.argv(folder, "--qrels", f"{folder}/qrels.txt"))
        verdict = judge_error(seen, ("changed after the run finished",), None)
        if "nDCG" in seen.out:
            verdict = ("silently wrong", "evaluated a changed output")
        record(f"finished output {tamper}", verdict)

    folder = scratch.folder()
    run_command(rerank_cli.main, scratch.argv(folder, "--output-format", "jsonl"))
    (folder / "out.txt").write_bytes((folder / "out.txt").read_bytes().replace(b"d1", b"d2"))
    seen = run_command(rerank_cli.main, scratch.argv(folder, "--output-format", "jsonl"))
    record("finished jsonl output edited", judge_error(seen, ("SHA-256 differs",), None))

    folder = scratch.folder()
    writer = RunWriter(folder / "out.txt", {})
    seen = run_command(rerank_cli.main, scratch.argv(folder))
    writer.close()
    record("output held by another writer", judge_error(seen, ("being written by another run", "pid"), None))
    seen = run_command(rerank_cli.main, scratch.argv(folder))
    record(
        "output released by the writer",
        judge_result(seen, lambda: (folder / "out.txt").read_bytes() == reference, "same run"),
    )

    folder = scratch.folder({"out.txt.journal": "not json\n"})
    seen = run_command(rerank_cli.main, scratch.argv(folder))
    record("corrupt journal", judge_error(seen, ("out.txt.journal", "corrupt", "--no-resume"), folder / "out.txt"))
    seen = run_command(rerank_cli.main, scratch.argv(folder, "--no-resume"))
    record(
        "corrupt journal with no-resume",
        judge_result(seen, lambda: (folder / "out.txt").read_bytes() == reference, "same run"),
    )

    records.extend(fault_cases(scratch, reference))
    records.extend(evaluate_cases(scratch))
    return records


def fault_cases(scratch: Scratch, reference: bytes) -> list[Record]:
    """Crashes of a real ``rerank`` process at random points: the rerun must give the same bytes."""
    records = []
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for number, delay in enumerate((2.0, 4.0, 6.0), start=1):
        folder = scratch.folder({"topics.tsv": GOOD["topics.tsv"]})
        argv = [sys.executable, "-m", "headrank_ir.rerank", *scratch.argv(folder)]
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        seen = run_command(rerank_cli.main, scratch.argv(folder))
        verdict = judge_result(seen, lambda f=folder: (f / "out.txt").read_bytes() == reference, "resumed, same bytes")
        records.append(Record(f"SIGKILL after {delay:.0f} s, rerun {number}", "rerank", *verdict))

    folder = scratch.folder()
    writer = RunWriter(folder / "out.txt", {})
    writer.close()
    (folder / "out.txt.lock").write_text("pid 1 on elsewhere, started long ago\n")
    seen = run_command(rerank_cli.main, scratch.argv(folder))
    records.append(
        Record(
            "stale lock file of a dead run",
            "rerank",
            *judge_result(
                seen, lambda: (folder / "out.txt").read_bytes() == reference, "lock file without a lock is no obstacle"
            ),
        )
    )
    return records


def evaluate_cases(scratch: Scratch) -> list[Record]:
    records = []
    folder = scratch.folder()
    run_command(rerank_cli.main, scratch.argv(folder))
    run, qrels = str(folder / "out.txt"), str(folder / "qrels.txt")
    clean = run_command(evaluate_cli.main, [qrels, run])
    (folder / "bom.txt").write_text(BOM + (folder / "out.txt").read_text(), encoding="utf-8")
    (folder / "qrels_bom.txt").write_text(BOM + GOOD["qrels.txt"], encoding="utf-8")
    seen = run_command(evaluate_cli.main, [str(folder / "qrels_bom.txt"), str(folder / "bom.txt")])
    records.append(
        Record(
            "evaluate with boms",
            "evaluate",
            # the output names the run file: compare with the clean run's name put back
            *judge_result(
                seen,
                lambda: clean.code == 0 and seen.out.replace("bom.txt", "out.txt") == clean.out,
                "same measures as without",
            ),
        )
    )
    errors = {
        "evaluate run missing": ([qrels, str(folder / "nope.txt")], ("nope.txt", "not found")),
        "evaluate qrels missing": ([str(folder / "nope.txt"), run], ("nope.txt", "not found")),
        "evaluate bad measure": ([qrels, run, "nDCG@x"], ("unknown measure",)),
        "evaluate qrels as the run": ([qrels, qrels], ("qrels.txt is qrels", "not a run")),
        "evaluate swapped": ([run, qrels], ("is a run and", "the order is QRELS RUN")),
        "evaluate broken jsonl": ([qrels, str(folder / "c.jsonl")], ("c.jsonl:1:", "rank_llm Result")),
    }
    shutil.copy(folder / "corpus.jsonl", folder / "c.jsonl")
    for name, (argv, expect) in errors.items():
        records.append(Record(name, "evaluate", *judge_error(run_command(evaluate_cli.main, argv), expect, None)))
    return records


# -- the Python API ---------------------------------------------------------------------------------


def api_cases(model_dir: str) -> list[Record]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ranker = HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, HeadProfile("tiny", ((0, 1, 0.5), (2, 3, 0.5))))
    more_errors = {
        "from_pretrained number": (lambda r: HeadRanker.from_pretrained(123), ValueError, "got 123"),
        "from_pretrained hub id offline": (
            lambda r: HeadRanker.from_pretrained("Qwen/Qwen3-0.6B"),
            ValueError,
            "did not resolve",
        ),
        "profile beyond the model": (
            lambda r: HeadRanker(r.reader.model, r.reader.tokenizer, HeadProfile("tiny", ((5, 0, 1.0),))),
            ValueError,
            "profile names layer 5",
        ),
        "rank_start negative": (lambda r: r.rerank_batch([request("ok")], rank_start=-1), ValueError, "rank_start"),
        "load missing profile": (lambda r: HeadProfile.load("/nonexistent/p.json"), ValueError, "does not exist"),
        "from_json none": (lambda r: HeadProfile.from_json(None), ValueError, "JSON object"),
        "doc bytes": (lambda r: r.rank("q", [b"bytes"]), TypeError, "passage 0 must be a str"),
        "docs a set": (lambda r: r.rank("q", {"a", "b"}), TypeError, "passages must be a list"),
        "request of strings": (lambda r: r.rerank_batch(["q"]), TypeError, "rank_llm-style Request"),
        "score_batch a tuple too short": (lambda r: r.score_batch(("a", "b", "c"), ([], [])), ValueError, "3 queries"),
        "score_batch list of str": (lambda r: r.score_batch(["a"], ["one passage"]), TypeError, "passage_lists"),
        "score bytes query": (lambda r: r.score(b"q", ["ok"]), TypeError, "query must be a str"),
        "score tab-only passage": (lambda r: r.score("q", ["\t\n"]), ValueError, "passage 0 is empty"),
        "rank_start None": (lambda r: r.rerank_batch([request("ok")], rank_start=None), TypeError, "rank_start"),
        "rank_end float": (lambda r: r.rerank_batch([request("ok")], rank_end=2.5), TypeError, "rank_end"),
        "rerank_batch a dict": (lambda r: r.rerank_batch({"query": "q"}), TypeError, "must be a list of Request"),
        "metadata string": (lambda r: r.rank("q", ["a"], metadata=["x"]), TypeError, "metadata 0 must be a dict"),
        "from_pretrained profile blank": (
            lambda r: HeadRanker.from_pretrained("smollm2-135m", profile="  "),
            ValueError,
            "names no file",
        ),
        "from_pretrained profile number": (
            lambda r: HeadRanker.from_pretrained("smollm2-135m", profile=3),
            TypeError,
            "got int",
        ),
    }
    records = []
    for name, (call, kind, message) in {**suite.API_CASES, **more_errors}.items():
        try:
            call(ranker)
        except kind as error:
            text = str(error)
            ok = message in text and "\n" not in text
            records.append(Record(name, "api", "clear error" if ok else "unclear", text[:200]))
        except Exception:  # noqa: BLE001 (another exception type is a traceback for the user)
            records.append(Record(name, "api", "traceback", traceback.format_exc().strip().splitlines()[-1]))
        else:
            records.append(Record(name, "api", "silently wrong", "no error"))
    docs = ["A lobster roll is a sandwich.", "Bees fly."]
    behaviours = {
        "no passages": (lambda: ranker.rank("q", []), lambda got: len(got) == 0, "empty results"),
        "int doc ids": (
            lambda: ranker.rank("q", docs, doc_ids=[7, 3]),
            lambda got: {d.doc_id for d in got} == {7, 3},
            "ids kept",
        ),
        "emoji query": (lambda: ranker.rank("lobster \U0001f99e", docs), lambda got: len(got) == 2, "ranked"),
        "lower-case n/a": (lambda: ranker.rank("n/a", docs), lambda got: len(got) == 2, "not the calibration query"),
        "request without candidates": (
            lambda: ranker.rerank_batch([Request(Query("q", "q1"), [])]),
            lambda got: got[0].candidates == [],
            "returned unchanged",
        ),
        "rank_end beyond the candidates": (
            lambda: ranker.rerank_batch([request("a b", "c d")], rank_end=50),
            lambda got: len(got[0].candidates) == 2,
            "all reranked",
        ),
        "rank_start after the candidates": (
            lambda: ranker.rerank_batch([request("a b", "c d")], rank_start=5, rank_end=9),
            lambda got: [c.docid for c in got[0].candidates] == ["d0", "d1"],
            "kept in order",
        ),
        "same model, same adapter-free profile twice": (
            lambda: HeadRanker(ranker.reader.model, ranker.reader.tokenizer, ranker.profile).score("q", docs),
            lambda got: got == ranker.score("q", docs),
            "same scores",
        ),
        "negated profile": (
            lambda: HeadRanker(
                ranker.reader.model, ranker.reader.tokenizer, HeadProfile("tiny", ((0, 1, -0.5), (2, 3, -0.5)))
            ).score("q", docs),
            lambda got: len(got) == 2,
            "accepted, said once in a log line",
        ),
        "score_batch empty list beside a full one": (
            lambda: ranker.score_batch(["q", "r"], [docs, []]),
            lambda got: len(got[0]) == 2 and got[1] == [],
            "no scores for no passages",
        ),
        "from_pretrained a Path": (
            lambda: HeadRanker.from_pretrained(Path(model_dir)).rank("q", docs),
            lambda got: len(got) == 2,
            "loads",
        ),
    }
    for name, (call, check, what) in behaviours.items():
        try:
            got = call()
        except Exception:  # noqa: BLE001
            records.append(Record(name, "api", "traceback", traceback.format_exc().strip().splitlines()[-1]))
            continue
        records.append(Record(name, "api", "documented behaviour" if check(got) else "silently wrong", what))
    return records


def request(*texts: str) -> Request:
    return Request(Query("lobster", "q1"), [Candidate(f"d{i}", 1.0, {"contents": t}) for i, t in enumerate(texts)])


# -- report -----------------------------------------------------------------------------------------------


def write_report(records: list[Record], out: Path, seconds: float) -> None:
    counts = Counter(r.outcome for r in records)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {"counts": {o: counts[o] for o in OUTCOMES}, "cases": [r.__dict__ for r in records]},
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    lines = [
        "# New-user fuzz of bad inputs and faults",
        "",
        f"`python tests/fuzz_inputs.py --out {out}`: {len(records)} cases in {seconds:.0f} s.",
        "",
        "| outcome | cases |",
        "| --- | --- |",
        *(f"| {o} | {counts[o]} |" for o in OUTCOMES),
        "",
        "| case | surface | outcome | what was seen |",
        "| --- | --- | --- | --- |",
        *(f"| {r.case} | {r.surface} | {r.outcome} | {r.detail[:160].replace('|', '/')} |" for r in records),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(", ".join(f"{counts[o]} {o}" for o in OUTCOMES), f"({len(records)} cases)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/fuzz_inputs", help="report path without suffix (.json and .md)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as base:
        model = tiny_model_dir(Path(base))
        scratch = Scratch(Path(base), model)
        reference = reference_run(scratch)
        records = cli_error_cases(scratch) + cli_same_run_cases(scratch, reference)
        records += behaviour_cases(scratch, reference) + api_cases(model)
    write_report(records, Path(args.out), time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
