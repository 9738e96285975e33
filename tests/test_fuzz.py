"""Malformed inputs and faults, as a new user makes them: every one ends in one clear line that
names the file and the field (or a documented result), never a traceback, and never leaves an
output that looks complete. Then two writers on one output, and a finished output edited later."""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

from headrank_ir.engine.adapter import AdapterSpec, save_adapter
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.records import Candidate, Query, Request
from headrank_ir.rerank import main

REPO = Path(__file__).resolve().parents[1]

GOOD_FILES = {
    "topics.tsv": "q1\twhat is a lobster roll\nq2\thow do bees fly\n",
    "run.txt": "q1 Q0 d1 1 3.0 bm25\nq1 Q0 d2 2 2.0 bm25\nq2 Q0 d3 1 1.5 bm25\nq2 Q0 d1 2 1.0 bm25\n",
    "corpus.jsonl": "".join(
        json.dumps({"id": d, "contents": t}) + "\n"
        for d, t in [("d1", "A lobster roll is a sandwich."), ("d2", "Bees fly by flapping."), ("d3", "Wings beat.")]
    ),
    "qrels.txt": "q1 0 d1 1\nq2 0 d3 1\n",
}
PROFILE = {"model": "{model}", "heads": [[0, 1, 0.5], [2, 3, 0.5]]}


def profile_json(**changes) -> str:
    return json.dumps({**PROFILE, **changes})


@dataclass(frozen=True)
class Case:
    files: dict  # file name → text (str) or bytes, written over the good files
    argv: tuple = ()  # appended to a good command line; a repeated flag wins
    expect: tuple = ()  # each must appear in the one error line


def case(files=None, argv=(), *expect) -> Case:
    return Case(files or {}, tuple(argv), expect)


BOM = "\ufeff"
RUN, CORPUS = GOOD_FILES["run.txt"], GOOD_FILES["corpus.jsonl"]
QRELS = ("--qrels", "{d}/qrels.txt")
MANY_DOCS = "".join(json.dumps({"id": f"d{i}", "contents": f"passage {i} " * 9}) + "\n" for i in range(300))
RUN_GZ, CORPUS_GZ = ("--run", "{d}/r.txt.gz"), ("--corpus", "{d}/c.jsonl.gz")
CLI_CASES = {
    # topics
    "topics three fields": case({"topics.tsv": "q1\ta\tb\n"}, (), "topics.tsv:1:", "3 tab-separated fields"),
    "topics not utf-8": case({"topics.tsv": b"q1\twh\xffat\n"}, (), "topics.tsv:1:", "not UTF-8"),
    "topics lone surrogate": case(
        {"t.jsonl": '{"qid": "q1", "query": "x\\ud800"}\n'}, ("--topics", "{d}/t.jsonl"), "t.jsonl:1:", "surrogate"
    ),
    "topics json list": case({"t.json": "[1, 2]"}, ("--topics", "{d}/t.json"), "t.json:", "JSON object"),
    "topics trec no title": case(
        {"t.trec": "<top><num> 1 <desc> x </top>"}, ("--topics", "{d}/t.trec"), "t.trec:1:", "no <title>"
    ),
    "topics unknown suffix": case({"t.csv": "q1,a\n"}, ("--topics", "{d}/t.csv"), "t.csv:", "topics format"),
    "topics empty": case({"topics.tsv": ""}, (), "topics.tsv:", "no queries"),
    "topics duplicate": case({"topics.tsv": "q1\ta\nq1\tb\n"}, (), "topics.tsv:2:", "appears twice"),
    "topics empty query": case({"topics.tsv": "q1\t  \n"}, (), "topics.tsv:1:", "is empty"),
    "topics missing": case({}, ("--topics", "{d}/nope.tsv"), "nope.tsv", "not found"),
    "calibration query": case({"topics.tsv": "q1\tN/A\n"}, (), "query 'q1'", "calibration query"),
    # qrels
    "qrels three fields": case({"qrels.txt": "q1 0 d1\n"}, ("--qrels", "{d}/qrels.txt"), "qrels.txt:1:", "fields"),
    "qrels grade": case({"qrels.txt": "q1 0 d1 high\n"}, ("--qrels", "{d}/qrels.txt"), "qrels.txt:1:", "'high'"),
    "qrels empty": case({"qrels.txt": "\n"}, ("--qrels", "{d}/qrels.txt"), "qrels.txt:", "no judgements"),
    "qrels other topics": case({"qrels.txt": "z1 0 d1 1\n"}, ("--qrels", "{d}/qrels.txt"), "no query of the run has"),
    "qrels not utf-8": case({"qrels.txt": b"q1 0 d\xfe1 1\n"}, ("--qrels", "{d}/qrels.txt"), "qrels.txt:1:"),
    # first-stage run
    "run five fields": case({"run.txt": "q1 Q0 d1 1 3.0\n"}, (), "run.txt:1:", "got 5 fields"),
    "run score text": case({"run.txt": "q1 Q0 d1 1 high x\n"}, (), "run.txt:1:", "'high'"),
    "run score nan": case({"run.txt": "q1 Q0 d1 1 nan x\n"}, (), "run.txt:1:", "'nan' is not finite"),
    "run duplicate docid": case({"run.txt": "q1 Q0 d1 1 2 x\nq1 Q0 d1 2 1 x\n"}, (), "run.txt:2:", "twice"),
    "run empty": case({"run.txt": ""}, (), "run.txt:", "no hits"),
    "run docid not in corpus": case({"run.txt": "q1 Q0 d9 1 2 x\n"}, (), "run.txt:1:", "'d9' is not in the corpus"),
    "run other collection": case({"run.txt": "x9 Q0 d1 1 2 x\n"}, (), "no query of the topics"),
    # corpus
    "corpus bad json": case({"corpus.jsonl": '{"id": "d1", \n'}, (), "corpus.jsonl:1:", "not valid JSON"),
    "corpus no id": case({"corpus.jsonl": '{"contents": "x"}\n'}, (), "corpus.jsonl:1:", "no docid field"),
    "corpus empty passage": case(
        {"corpus.jsonl": GOOD_FILES["corpus.jsonl"].replace("Wings beat.", " ")},
        (),
        "corpus.jsonl:3:",
        "docid 'd3' is empty",
    ),
    "corpus lone surrogate": case(
        {"corpus.jsonl": GOOD_FILES["corpus.jsonl"].replace("Wings", "\\udc00Wings")},
        (),
        "corpus.jsonl:3:",
        "'contents' holds a lone surrogate",
    ),
    "corpus duplicate": case({"corpus.jsonl": GOOD_FILES["corpus.jsonl"] * 2}, (), "corpus.jsonl:4:", "twice"),
    "corpus list line": case({"corpus.jsonl": "[1]\n"}, (), "corpus.jsonl:1:", "JSON object"),
    "corpus list text": case(
        {"corpus.jsonl": GOOD_FILES["corpus.jsonl"].replace('"Bees fly by flapping."', '["Bees"]')},
        (),
        "corpus.jsonl:2:",
        "must be a string",
    ),
    # One reader every file goes through (issue 26): a byte-order mark inside a line (two files
    # joined without a newline), numbers as trec_eval reads them, gzip by content, JSON Lines.
    "run bom inside a line": case({"run.txt": RUN.replace("\nq2", BOM + "q2", 1)}, (), "run.txt:2:", "U+FEFF"),
    "topics bom inside a line": case({"topics.tsv": "q1\ta\ufeffq2\tb\n"}, (), "topics.tsv:1:", "column 5"),
    "qrels bom inside a line": case({"qrels.txt": "q1 0 d1 1\ufeffq2 0 d3 1\n"}, QRELS, "qrels.txt:1:", "U+FEFF"),
    "qrels conflicting duplicate": case(
        {"qrels.txt": "q1 0 d1 3\nq2 0 d3 1\nq1 0 d1 0\n"}, QRELS, "qrels.txt:3:", "0, but 3 on line 1"
    ),
    "qrels absurd grade": case({"qrels.txt": "q1 0 d1 99999999999\n"}, QRELS, "qrels.txt:1:", "out of range"),
    "qrels absurd negative grade": case({"qrels.txt": "q1 0 d1 -5000\n"}, QRELS, "qrels.txt:1:", "out of range"),
    "qrels fractional grade": case({"qrels.txt": "q1 0 d1 1.5\n"}, QRELS, "qrels.txt:1:", "'1.5' is not an integer"),
    "qrels underscore grade": case({"qrels.txt": "q1 0 d1 1_0\n"}, QRELS, "qrels.txt:1:", "'1_0'"),
    "qrels full-width grade": case({"qrels.txt": "q1 0 d1 \uff11\n"}, QRELS, "qrels.txt:1:", "not an integer"),
    "qrels exponent grade": case({"qrels.txt": "q1 0 d1 1e0\n"}, QRELS, "qrels.txt:1:", "'1e0'"),
    "qrels as jsonl": case({"qrels.txt": '{"qid": "q1", "docid": "d1", "rel": 1}\n'}, QRELS, "looks like JSON Lines"),
    "run score underscore": case({"run.txt": "q1 Q0 d1 1 15_7806 x\n"}, (), "run.txt:1:", "'15_7806'"),
    "run score hex": case({"run.txt": "q1 Q0 d1 1 0x1p3 x\n"}, (), "run.txt:1:", "not a decimal number"),
    "run score infinity word": case(
        {"run.txt": "q1 Q0 d1 1 -Infinity x\n"}, (), "run.txt:1:", "'-Infinity' is not finite"
    ),
    "run score overflow": case({"run.txt": "q1 Q0 d1 1 1e999 x\n"}, (), "run.txt:1:", "not finite"),
    "run score full-width": case({"run.txt": "q1 Q0 d1 1 \uff13.0 x\n"}, (), "run.txt:1:", "not a decimal"),
    "run rank underscore": case({"run.txt": "q1 Q0 d1 1_0 3.0 x\n"}, (), "run.txt:1:", "rank '1_0' must be an integer"),
    "run as jsonl named txt": case(
        {"run.txt": '{"query": {"text": "a", "qid": "q1"}, "candidates": [{"docid": "d1", "score": 1}]}\n'},
        (),
        "run.txt:1:",
        "looks like JSON Lines",
    ),
    "run gz truncated": case({"r.txt.gz": gzip.compress(RUN.encode() * 50)[:-40]}, RUN_GZ, "r.txt.gz", "truncated"),
    "run plain text named gz": case({"r.txt.gz": RUN}, RUN_GZ, "r.txt.gz", "not gzip-compressed"),
    "run gzip named txt": case({"run.txt": gzip.compress(RUN.encode())}, (), "run.txt", "not named .gz; add .gz"),
    "corpus gz truncated": case(
        {"c.jsonl.gz": gzip.compress(MANY_DOCS.encode())[:-40]}, CORPUS_GZ, "c.jsonl.gz", "truncated"
    ),
    "corpus plain text named gz": case({"c.jsonl.gz": CORPUS}, CORPUS_GZ, "c.jsonl.gz", "not gzip-compressed"),
    "topics jsonl named json": case(
        {"t.json": '{"qid": "q1", "query": "a"}\n{"qid": "q2", "query": "b"}\n'},
        ("--topics", "{d}/t.json"),
        "t.json:2:",
        "name it .jsonl",
    ),
    "topics plain text named gz": case(
        {"t.tsv.gz": "q1\ta\n"}, ("--topics", "{d}/t.tsv.gz"), "t.tsv.gz", "not gzip-compressed"
    ),
    "corpus one json array": case(
        {"corpus.jsonl": json.dumps([json.loads(line) for line in CORPUS.splitlines()]) + "\n"},
        (),
        "corpus.jsonl:1:",
        "one JSON array",
        "jq -c",
    ),
    "corpus pretty json array": case(
        {"corpus.jsonl": json.dumps([json.loads(line) for line in CORPUS.splitlines()], indent=1)},
        (),
        "corpus.jsonl:1:",
        "one JSON array",
    ),
    "corpus pretty json object": case(
        {"corpus.jsonl": json.dumps({"id": "d1", "contents": "x"}, indent=1)}, (), "corpus.jsonl:1:", "many lines"
    ),
    "corpus bom inside a line": case(
        {"corpus.jsonl": CORPUS.replace("\n", BOM, 1)}, (), "corpus.jsonl:1:", "byte-order mark"
    ),
    # profiles
    "profile no heads": case({"p.json": '{"model": "{model}"}'}, ("--profile", "{d}/p.json"), "p.json:", "'heads'"),
    "profile unknown key": case({"p.json": profile_json(head=1)}, ("--profile", "{d}/p.json"), "p.json:", "'head'"),
    "profile unknown prompt key": case(
        {"p.json": profile_json(prompt={"max_tokens": 3})}, ("--profile", "{d}/p.json"), "p.json:", "prompt.max_tokens"
    ),
    "profile two-value head": case(
        {"p.json": profile_json(heads=[[0, 1]])}, ("--profile", "{d}/p.json"), "p.json:", "heads[0]"
    ),
    "profile list": case({"p.json": "[[0, 1, 1.0]]"}, ("--profile", "{d}/p.json"), "p.json:", "JSON object"),
    "profile text layer": case(
        {"p.json": profile_json(heads=[["one", 1, 1.0]])}, ("--profile", "{d}/p.json"), "p.json:", "heads[0] layer"
    ),
    "profile fractional layer": case(
        {"p.json": profile_json(heads=[[1.5, 1, 1.0]])}, ("--profile", "{d}/p.json"), "p.json:", "whole number, got 1.5"
    ),
    "profile fractional head": case(
        {"p.json": profile_json(heads=[[1, 2.9, 1.0]])}, ("--profile", "{d}/p.json"), "p.json:", "heads[0] head"
    ),
    "profile nan weight": case(
        {"p.json": profile_json().replace("0.5]]", "NaN]]")}, ("--profile", "{d}/p.json"), "p.json:", "heads[1] weight"
    ),
    "profile infinite weight": case(
        {"p.json": profile_json().replace("0.5]]", "-Infinity]]")}, ("--profile", "{d}/p.json"), "p.json:", "weight"
    ),
    "profile not utf-8": case(
        {"p.json": profile_json().encode().replace(b"heads", b"he\xffads")}, ("--profile", "{d}/p.json"), "not UTF-8"
    ),
    "profile bad json": case({"p.json": '{"model": '}, ("--profile", "{d}/p.json"), "p.json:1:", "not valid JSON"),
    "profile text setting": case(
        {"p.json": profile_json(prompt={"max_passage_tokens": "64"})},
        ("--profile", "{d}/p.json"),
        "prompt.max_passage_tokens",
    ),
    "profile version": case({"p.json": profile_json(version=7)}, ("--profile", "{d}/p.json"), "p.json:", "version 7"),
    "profile other model": case(
        {"p.json": profile_json(model="Qwen/Qwen3-0.6B")},
        ("--profile", "{d}/p.json"),
        "made for model 'Qwen/Qwen3-0.6B'",
        "--allow-profile-model-mismatch",
    ),
    "profile layer beyond model": case(
        {"p.json": profile_json(heads=[[9, 0, 1.0]])}, ("--profile", "{d}/p.json"), "layer 9", "layers 0..2"
    ),
    # output
    "output is a folder": case({}, ("--output", "{d}"), "is a folder"),
    "output parent is a file": case({}, ("--output", "{d}/topics.tsv/run.txt"), "topics.tsv is a file"),
    # A named pipe stands for every non-regular file (never the real /dev/null: a build that lost
    # this check would replace it for the whole machine).
    "output is a pipe": case({}, ("--output", "{d}/pipe", "--no-resume"), "pipe is a device, pipe or socket"),
    "output foreign file": case({"out.txt": "mine\n"}, (), "out.txt exists", "left alone"),
    "output empty name": case({}, ("--output", ""), "--output ''", "names no file"),
    "output onto the topics": case({}, ("--output", "{d}/topics.tsv"), "topics.tsv is an input of this command"),
    "output onto the model's config": case({}, ("--output", "{m}/config.json"), "is an input of this command"),
    # the first-stage run goes through the same guard (it replaced the --run input before)
    "first stage onto the run": case({}, ("--first-stage-output", "{d}/run.txt"), "run.txt is an input"),
    "first stage onto the corpus": case({}, ("--first-stage-output", "{d}/corpus.jsonl"), "corpus.jsonl is an input"),
    "first stage onto the qrels": case({}, ("--first-stage-output", "{d}/qrels.txt", *QRELS), "qrels.txt is an input"),
    "first stage onto a pipe": case({}, ("--first-stage-output", "{d}/pipe"), "pipe is a device, pipe or socket"),
    "first stage onto a folder": case({}, ("--first-stage-output", "{d}"), "is a folder"),
    "first stage empty name": case({}, ("--first-stage-output", ""), "--first-stage-output ''", "names no file"),
    "first stage parent is a file": case(
        {}, ("--first-stage-output", "{d}/run.txt/fs.txt"), "run.txt is a file, not a folder"
    ),
    # checked before the output is touched: a second topic too long for the context, no hits at all
    "second topic cannot fit": case(
        {"topics.tsv": "q1\twhat is a lobster roll\nq2\t" + "word " * 15000 + "\n"}, (), "query 'q2'", "context holds"
    ),
    "no hits in the first topics": case(
        {"topics.tsv": "q9\tunjudged\nq1\twhat is a lobster roll\n"},
        ("--max-queries", "1"),
        "no hits for any of the first 1 topics",
        "raise --max-queries",
    ),
    # Ray: an address where nothing answers is one line within seconds (Ray retries it for ever)
    "ray unreachable": case({}, ("--ray", "127.0.0.1:1"), "--ray 127.0.0.1:1: nothing answers at 127.0.0.1:1"),
    "ray unreachable client": case({}, ("--ray", "ray://127.0.0.1:1"), "nothing answers at 127.0.0.1:1"),
    "ray address without port": case({}, ("--ray", "headnode"), "--ray takes auto, HOST:PORT"),
    # model
    "model typo": case({}, ("--model", "smollm2-135"), "'smollm2-135' did not resolve", "did you mean"),
    "model folder without config": case({"m/x": "x"}, ("--model", "{d}/m"), "has no config.json"),
    "model not an id": case({}, ("--model", "not an id"), "'not an id' did not resolve"),
}


def write_files(folder: Path, files: dict, model: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "pipe").exists():
        os.mkfifo(folder / "pipe")
    for name, content in {**GOOD_FILES, **files}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{model}", model), encoding="utf-8")


def command(folder: Path, model: str, *extra: str) -> list[str]:
    base = ["--topics", "{d}/topics.tsv", "--run", "{d}/run.txt", "--corpus", "{d}/corpus.jsonl"]
    tail = ["--model", model, "--output", "{d}/out.txt", "--hits", "2"]
    return [a.replace("{d}", str(folder)).replace("{m}", model) for a in (*base, *tail, *extra)]


def rerank(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", CLI_CASES)
def test_bad_input_on_the_command_line(name, tmp_path, tiny_model_dir, capsys):
    bad = CLI_CASES[name]
    write_files(tmp_path, bad.files, tiny_model_dir)
    inputs = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, out, err = rerank(capsys, command(tmp_path, tiny_model_dir, *bad.argv))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for expected in bad.expect:
        assert expected in err, err
    assert "out.txt" in bad.files or not (tmp_path / "out.txt").exists()
    assert {p: p.read_bytes() for p in inputs} == inputs and stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)


def test_a_byte_order_mark_everywhere_changes_nothing(tmp_path, tiny_model_dir, capsys):
    clean, marked = tmp_path / "clean", tmp_path / "marked"
    write_files(clean, {}, tiny_model_dir)
    write_files(marked, {name: BOM + text for name, text in GOOD_FILES.items()}, tiny_model_dir)
    for folder in (clean, marked):
        (folder / "p.json").write_text(BOM + profile_json().replace("{model}", tiny_model_dir), encoding="utf-8")
        argv = command(folder, tiny_model_dir, "--profile", "{d}/p.json", "--qrels", "{d}/qrels.txt")
        code, out, err = rerank(capsys, argv)
        assert code == 0, err
    assert (marked / "out.txt").read_bytes() == (clean / "out.txt").read_bytes()
    assert (marked / "out.txt").read_text().startswith("q1 Q0 ")


def test_files_joined_by_cat_read_as_their_sum(tmp_path, tiny_model_dir, capsys):
    """``cat a b`` of two files that each start with a byte-order mark: the second mark starts a
    line in the middle; nothing is dropped and no phantom query appears."""
    clean, joined = tmp_path / "clean", tmp_path / "joined"
    write_files(clean, {}, tiny_model_dir)

    def cat(text: str) -> str:
        lines = text.splitlines(keepends=True)
        return BOM + "".join(lines[:1]) + BOM + "".join(lines[1:])

    write_files(joined, {name: cat(text) for name, text in GOOD_FILES.items()}, tiny_model_dir)
    assert (joined / "run.txt").read_text(encoding="utf-8").count(BOM) == 2
    for folder in (clean, joined):
        code, out, err = rerank(capsys, command(folder, tiny_model_dir, "--qrels", "{d}/qrels.txt"))
        assert code == 0, err
    assert (joined / "out.txt").read_bytes() == (clean / "out.txt").read_bytes()
    assert {line.split()[0] for line in (joined / "out.txt").read_text().splitlines()} == {"q1", "q2"}


def test_a_profile_for_another_model_runs_only_when_asked(tmp_path, tiny_model_dir, capsys):
    write_files(tmp_path, {"p.json": profile_json(model="Qwen/Qwen3-0.6B")}, tiny_model_dir)
    argv = command(tmp_path, tiny_model_dir, "--profile", "{d}/p.json", "--allow-profile-model-mismatch")
    assert rerank(capsys, argv)[0] == 0
    assert (tmp_path / "out.txt").read_text().count("\n") == 4


def test_a_failed_model_leaves_nothing_that_blocks_the_corrected_rerun(tmp_path, tiny_model_dir, capsys):
    write_files(tmp_path, {"p.json": profile_json(heads=[[9, 0, 1.0]])}, tiny_model_dir)
    assert rerank(capsys, command(tmp_path, tiny_model_dir, "--profile", "{d}/p.json"))[0] == 1
    code, out, err = rerank(capsys, command(tmp_path, tiny_model_dir))
    assert code == 0 and "reranked 2 queries" in out, err


# -- two writers, one output; a finished output edited later --------------------------------------

HOLD = """
import sys, time
from headrank_ir.pipeline.runfile import RunWriter
RunWriter(sys.argv[1], {})
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_rerank_on_the_same_output_fails_at_once(tmp_path, tiny_model_dir, capsys):
    write_files(tmp_path, {}, tiny_model_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out.txt")], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline() == b"holding\n"
        code, _, err = rerank(capsys, command(tmp_path, tiny_model_dir))
    finally:
        holder.kill()
        holder.wait()
    assert code == 1 and f"being written by another run (pid {holder.pid} on " in err
    assert not (tmp_path / "out.txt").exists()
    code, _, err = rerank(capsys, command(tmp_path, tiny_model_dir))
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert code == 0 and len(lines) == 4 and len({tuple(line.split()[:3]) for line in lines}) == 4, err


@pytest.mark.parametrize("tamper", ["truncate", "edit"])
def test_a_finished_output_edited_later_is_neither_trusted_nor_evaluated(tamper, tmp_path, tiny_model_dir, capsys):
    write_files(tmp_path, {}, tiny_model_dir)
    argv = command(tmp_path, tiny_model_dir, "--qrels", "{d}/qrels.txt")
    assert rerank(capsys, argv)[0] == 0
    out = tmp_path / "out.txt"
    data = out.read_bytes()
    out.write_bytes(data[: data.index(b"\n") + 1] if tamper == "truncate" else data.replace(b"d1", b"d3", 1))
    code, stdout, err = rerank(capsys, argv)
    assert code == 1 and "changed after the run finished" in err and "nDCG@10" not in stdout
    assert rerank(capsys, [*argv, "--no-resume"])[0] == 0 and out.read_bytes() == data


# -- the Python API ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ranker(tokenizer) -> HeadRanker:
    return HeadRanker(tiny_model("llama", len(tokenizer)), tokenizer, HeadProfile("tiny", ((0, 1, 0.5), (2, 3, 0.5))))


DOCS = ["A lobster roll is a sandwich.", "Bees fly."]


def request(*texts: str) -> Request:
    return Request(Query("lobster", "q1"), [Candidate(f"d{i}", 1.0, {"contents": t}) for i, t in enumerate(texts)])


API_CASES = {
    "query None": (lambda r: r.rank(None, DOCS), TypeError, "query must be a str"),
    "query empty": (lambda r: r.rank("  ", DOCS), ValueError, "query is empty"),
    "doc empty": (lambda r: r.rank("q", ["ok", " "]), ValueError, "passage 1 is empty"),
    "doc number": (lambda r: r.rank("q", ["ok", 3]), TypeError, "passage 1 must be a str"),
    "doc_ids string": (lambda r: r.rank("q", DOCS, doc_ids="xy"), TypeError, "doc_ids must be a list"),
    "doc_ids count": (lambda r: r.rank("q", DOCS, doc_ids=["a"]), ValueError, "1 doc_ids for 2 passages"),
    "query surrogate": (lambda r: r.rank("q\ud800", DOCS), ValueError, "the query holds a lone surrogate"),
    "doc surrogate": (lambda r: r.rank("q", ["\udfffx"], doc_ids=["z"]), ValueError, "passage 0 (docid 'z') holds"),
    "calibration query": (lambda r: r.rank(" N/A ", DOCS), ValueError, "is the calibration query"),
    "request dict": (lambda r: r.rerank_batch([{"query": "q"}]), TypeError, "rank_llm-style Request"),
    "request empty candidate": (
        lambda r: r.rerank_batch([request("ok", "")]),
        ValueError,
        "query 'q1': candidate 1 (docid 'd1') is empty",
    ),
    "candidate without text": (
        lambda r: r.rerank_batch([Request(Query("q", "q1"), [Candidate("d0", 1.0, {"title": "t"})])]),
        ValueError,
        "query 'q1': candidate 'd0' has no text field",
    ),
    "shuffle": (lambda r: r.rerank_batch([request("ok")], shuffle_candidates=True), ValueError, "shuffle_candidates"),
    "rank window": (lambda r: r.rerank_batch([request("ok")], rank_start=5, rank_end=2), ValueError, "rank_start"),
    "from_pretrained None": (lambda r: HeadRanker.from_pretrained(None), ValueError, "got None"),
    "from_pretrained typo": (lambda r: HeadRanker.from_pretrained("smollm2-135"), ValueError, "did you mean"),
    "profile as text": (
        lambda r: HeadRanker(r.reader.model, r.reader.tokenizer, "p.json"),
        TypeError,
        "must be a HeadProfile",
    ),
    "profile fractional": (lambda r: HeadProfile("m", [(3.7, 1, 1.0)]), ValueError, "heads[0] layer"),
    "profile no heads": (lambda r: HeadProfile("m", []), ValueError, "non-empty list"),
    "profile inf weight": (lambda r: HeadProfile("m", [(0, 1, float("inf"))]), ValueError, "heads[0] weight"),
    "prompt setting": (lambda r: PromptSettings(calibrate="yes"), ValueError, "prompt.calibrate"),
    # score and score_batch get exactly rank's checks
    "score_batch lists short": (lambda r: r.score_batch(["a", "b"], [DOCS]), ValueError, "2 queries for 1 passage"),
    "score_batch lists long": (lambda r: r.score_batch(["a"], [DOCS, DOCS]), ValueError, "1 queries for 2 passage"),
    "score_batch one query str": (lambda r: r.score_batch("ab", [DOCS, DOCS]), TypeError, "queries must be a list"),
    "score_batch flat passages": (lambda r: r.score_batch(["a"], DOCS), TypeError, "passage_lists must be a list"),
    "score calibration query": (lambda r: r.score("N/A", DOCS), ValueError, "is the calibration query"),
    "score_batch calibration": (lambda r: r.score_batch(["a", "N/A"], [DOCS, DOCS]), ValueError, "query 1: the query"),
    "score one string": (lambda r: r.score("q", "one string"), TypeError, "passages must be a list"),
    "score empty passages": (lambda r: r.score("q", ["", "  "]), ValueError, "passage 0 is empty"),
    "score surrogate": (lambda r: r.score("q", ["ok \udc80"]), ValueError, "passage 0 holds a lone surrogate"),
    "score query surrogate": (lambda r: r.score("\ud800", DOCS), ValueError, "the query holds a lone surrogate"),
    "score query None": (lambda r: r.score(None, DOCS), TypeError, "query must be a str"),
    "score passage None": (lambda r: r.score("q", [None]), TypeError, "passage 0 must be a str"),
    "score_batch passage None": (lambda r: r.score_batch(["q"], [["ok", None]]), TypeError, "query 0: passage 1"),
    "score query empty": (lambda r: r.score("", DOCS), ValueError, "query is empty"),
    "rank metadata None item": (lambda r: r.rank("q", DOCS, metadata=[None, {}]), TypeError, "metadata 0 must be"),
    "rank metadata dict": (lambda r: r.rank("q", DOCS, metadata={"a": 1}), TypeError, "metadata must be a list"),
    "rerank_batch rank_end None": (lambda r: r.rerank_batch([request("ok")], rank_end=None), TypeError, "rank_end"),
    "rerank_batch one request": (lambda r: r.rerank_batch(request("ok")), TypeError, "rerank(request)"),
    "from_pretrained profile dict": (
        lambda r: HeadRanker.from_pretrained("smollm2-135m", profile={"model": "x"}),
        TypeError,
        "got a dict",
    ),
    "from_pretrained profile empty": (
        lambda r: HeadRanker.from_pretrained("smollm2-135m", profile=""),
        ValueError,
        "profile '' names no file",
    ),
    "profile other model": (
        lambda r: HeadRanker(
            r.reader.model, r.reader.tokenizer, HeadProfile("Qwen/Qwen3-0.6B", ((0, 0, 1.0),)), name="smollm2-135m"
        ),
        ValueError,
        "made for model 'Qwen/Qwen3-0.6B', not 'smollm2-135m'",
    ),
}


@pytest.mark.parametrize("name", API_CASES)
def test_bad_input_in_the_api(name, ranker):
    call, kind, message = API_CASES[name]
    with pytest.raises(kind) as error:
        call(ranker)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_score_neighbours_still_score(ranker):
    assert ranker.score("lobster", []) == [] and ranker.score_batch([], []) == []
    mixed = ranker.score_batch(["lobster", "bees"], [DOCS, []])
    assert len(mixed[0]) == 2 and mixed[1] == [] and mixed[0] == ranker.score("lobster", DOCS)
    assert len(ranker.rank("q", DOCS, metadata=[{}, {"a": 1}])) == 2


def test_the_calibration_query_is_allowed_without_calibration(ranker):
    plain = HeadRanker(ranker.reader.model, ranker.reader.tokenizer, ranker.profile.with_prompt(calibrate=False))
    assert len(plain.rank("N/A", DOCS)) == 2


def test_a_profile_for_another_model_is_used_when_asked(ranker):
    other = HeadProfile("Qwen/Qwen3-0.6B", ranker.profile.heads)
    mixed = HeadRanker(
        ranker.reader.model, ranker.reader.tokenizer, other, name="smollm2-135m", allow_profile_model_mismatch=True
    )
    assert mixed.score("lobster", DOCS) == ranker.score("lobster", DOCS)


def test_a_second_ranker_does_not_inherit_a_merged_adapter(tokenizer, tmp_path):
    model = tiny_model("llama", len(tokenizer), seed=1)
    torch.manual_seed(2)
    factors = {
        f"model.layers.0.self_attn.{name}.lora_{part}.weight": torch.randn(shape)
        for name, out in (("q_proj", 64), ("k_proj", 32))
        for part, shape in (("A", (2, 64)), ("B", (out, 2)))
    }
    adapter = save_adapter(factors, AdapterSpec(rank=2, alpha=4.0, layers=(0,)), tmp_path / "a.safetensors")
    plain = HeadProfile("tiny", ((0, 1, 1.0),))
    before = HeadRanker(model, tokenizer, plain).score("lobster", DOCS)
    adapted = HeadRanker(model, tokenizer, HeadProfile("tiny", plain.heads, adapter=str(adapter)))
    assert adapted.score("lobster", DOCS) != before
    with pytest.raises(ValueError, match=r"already holds the merged LoRA adapter .*a\.safetensors.*fresh model"):
        HeadRanker(model, tokenizer, plain)
    fresh = tiny_model("llama", len(tokenizer), seed=1)
    assert HeadRanker(fresh, tokenizer, plain).score("lobster", DOCS) == before


# -- index: every line read as --corpus reads it, counted, locked, overwrite only its own ------------


def index_cli(capsys, *argv: str) -> tuple[int, str]:
    from headrank_ir.index import main as index_main

    code = index_main([str(a) for a in argv])
    return code, capsys.readouterr().err


def docs(count: int) -> list[str]:
    return [json.dumps({"id": f"d{i}", "contents": f"passage {i}"}) for i in range(count)]


INDEX_CASES = {
    "broken json on line 3 of 10": (docs(2) + ['{"id": "d2", "contents": '] + docs(10)[3:], "c.jsonl:3:", "not valid"),
    "a doc without contents": (docs(4) + ['{"id": "d9", "body": "x"}'], "c.jsonl:5:", "no text field"),
    "a duplicate docid": (docs(5) + [docs(2)[1]], "c.jsonl:6:", "docid 'd1' appears twice (first on line 2)"),
    "no id": (docs(1) + ['{"contents": "x"}'], "c.jsonl:2:", "no docid field"),
    "a json array": ([json.dumps([{"id": "a", "contents": "x"}])], "c.jsonl:1:", "one JSON array"),
    "empty": ([""], "c.jsonl:", "no documents"),
    "every text empty": (['{"id": "a", "contents": " "}', '{"id": "b", "text": ""}'], "c.jsonl:", "every document"),
    "a mark inside a line": ([docs(2)[0] + BOM + docs(2)[1]], "c.jsonl:1:", "U+FEFF"),
}


@pytest.mark.parametrize("name", INDEX_CASES)
def test_a_bad_corpus_line_stops_the_index_before_java(name, tmp_path, capsys):
    lines, *expect = INDEX_CASES[name]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, err = index_cli(capsys, tmp_path / "c.jsonl", "--index", tmp_path / "idx")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: "), err
    assert all(part in err for part in expect), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # no index, staging or lock left


def test_a_duplicate_docid_across_corpus_files_names_both(tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text("\n".join(docs(3)) + "\n")
    (tmp_path / "corpus" / "b.jsonl.gz").write_bytes(gzip.compress(("\n".join(docs(4)[2:]) + "\n").encode()))
    code, err = index_cli(capsys, tmp_path / "corpus", "--index", tmp_path / "idx")
    assert code == 1 and "b.jsonl.gz:1: docid 'd2' appears twice (first at " in err and "a.jsonl:3)" in err, err


@pytest.mark.parametrize("layout", ["corpus inside", "foreign folder", "a file"])
def test_overwrite_never_replaces_what_this_command_did_not_build(layout, tmp_path, capsys):
    target = tmp_path / "dir"
    corpus = tmp_path / "c.jsonl"
    if layout == "a file":
        target.write_text("keep me\n")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("keep me\n")
        (target / ".headrank-index").write_text("{}\n") if layout == "corpus inside" else None
        corpus = target / "c.jsonl" if layout == "corpus inside" else corpus
    corpus.write_text("\n".join(docs(3)) + "\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, err = index_cli(capsys, corpus, "--index", target, "--overwrite")
    assert code == 1 and err.count("\n") == 1, err
    assert {"corpus inside": "never replaces an input", "foreign folder": "not built by this command"}.get(
        layout, "is not a folder"
    ) in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_second_build_into_a_locked_index_fails_at_once(tmp_path, capsys):
    from headrank_ir.pipeline.index import _IndexLock

    (tmp_path / "c.jsonl").write_text("\n".join(docs(3)) + "\n")
    with _IndexLock(tmp_path / "idx"):
        code, err = index_cli(capsys, tmp_path / "c.jsonl", "--index", tmp_path / "idx")
        assert code == 1 and "is being written by another process" in err and "choose another --index" in err, err
    assert not (tmp_path / "idx").exists() and not (tmp_path / ".idx.lock").exists()


def test_an_index_is_marked_counted_and_overwritten_only_as_its_own(tmp_path, capsys, caplog):
    """One real build (Java): a BEIR corpus, its title kept as --corpus keeps it; then --overwrite
    replaces the marked index; the lock and staging folders are gone."""
    from headrank_ir.pipeline.index import MARKER, export_corpus

    corpus = tmp_path / "c.jsonl"
    beir = [json.dumps({"_id": f"d{i}", "title": "Title", "text": f"body {i}"}) + "\n" for i in range(4)]
    corpus.write_text("".join(beir) + '{"_id": "empty", "title": "", "text": " "}\n')
    code, err = index_cli(capsys, corpus, "--index", tmp_path / "idx")
    assert code == 0, err
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "1 document(s) with empty text are not indexed" in warned[0], warned
    assert warned[0].endswith("c.jsonl:5")
    assert json.loads((tmp_path / "idx" / MARKER).read_text())["documents"] == 4
    code, err = index_cli(capsys, corpus, "--index", tmp_path / "idx", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "idx"]
    export_corpus(tmp_path / "idx", tmp_path / "back.jsonl")
    from headrank_ir.pipeline.readers import read_corpus

    expected = {f"d{i}": f"Title body {i}" for i in range(4)}
    assert (
        read_corpus(tmp_path / "back.jsonl") == expected == {k: v for k, v in read_corpus(corpus).items() if v.strip()}
    )


# -- model cache and folders: damaged files named at once, a damaged conversion rebuilt ------------


def copy_model(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_a_truncated_cached_conversion_is_converted_again(tmp_path, monkeypatch, tiny_model_dir):
    """The cache is ours: a cut-short model.safetensors is rebuilt, not loaded into a traceback."""
    from headrank_ir.engine import models

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    cached = copy_model(Path(tiny_model_dir), tmp_path / "smollm2-135m")
    weights = cached / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    rebuilt = []
    monkeypatch.setattr(models, "_gguf_file", lambda name: Path("x.gguf"))
    monkeypatch.setattr(
        models, "_convert_gguf", lambda gguf, target: rebuilt.append(target) or weights.write_bytes(whole)
    )
    assert models.resolve_model_folder("smollm2-135m") == str(cached) and rebuilt == [cached]
    assert models.resolve_model_folder("smollm2-135m") == str(cached) and rebuilt == [cached]  # whole now: kept


@pytest.mark.parametrize("cut", ["half", "header", "empty", "garbage"])
def test_damaged_weights_in_a_model_folder_are_one_line(cut, tmp_path, tiny_model_dir):
    from headrank_ir.engine import models

    folder = copy_model(Path(tiny_model_dir), tmp_path / "m")
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes({"half": whole[:-100], "header": whole[:20], "empty": b"", "garbage": b"x" * 64}[cut])
    with pytest.raises(ValueError, match=r"^model weights .*model\.safetensors are (truncated|not a readable)"):
        models.resolve_model_folder(folder)
    weights.write_bytes(whole)
    assert models.resolve_model_folder(folder) == str(folder)  # neighbour: the whole file passes


@pytest.mark.parametrize(
    "keep, lacks",
    [
        (("config.json",), "lacks its weights (*.safetensors, *.bin) and its tokenizer"),
        (("config.json", "model.safetensors"), "lacks its tokenizer (tokenizer.json"),
        (("config.json", "tokenizer.json", "tokenizer_config.json"), "lacks its weights"),
    ],
)
def test_a_model_folder_says_what_it_lacks(keep, lacks, tmp_path, tiny_model_dir):
    from headrank_ir.engine import models

    folder = copy_model(Path(tiny_model_dir), tmp_path / "m")
    for path in folder.iterdir():
        if path.name not in keep:
            path.unlink()
    with pytest.raises(ValueError, match=re.escape(lacks)):
        models.load_model(folder)


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_a_cache_that_cannot_be_a_folder_is_one_line_at_once(where, tmp_path, monkeypatch):
    from headrank_ir.engine import models

    (tmp_path / "f").write_text("x")
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "f" if where == "file" else tmp_path / "f" / "cache"))
    monkeypatch.setattr(models, "_gguf_file", lambda name: pytest.fail("no conversion may start"))
    with pytest.raises(ValueError, match=r"the model cache .* is a file; point \$HEADRANK_CACHE at a folder"):
        models.resolve_model_folder("smollm2-135m")


def test_a_read_only_cache_is_one_line_at_once(tmp_path, monkeypatch):
    from headrank_ir.engine import models

    (tmp_path / "ro").mkdir(mode=0o555)
    access = os.access  # root may write anywhere: the read-only folder is the one os.access denies
    monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and Path(p) != tmp_path / "ro")
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "ro" / "cache"))
    monkeypatch.setattr(models, "_gguf_file", lambda name: pytest.fail("no conversion may start"))
    with pytest.raises(ValueError, match=r"cannot be written \(.*ro is read-only\); set \$HEADRANK_CACHE"):
        models.resolve_model_folder("smollm2-135m")


def test_an_empty_cache_variable_is_the_default(monkeypatch):
    from headrank_ir.engine import models

    monkeypatch.setenv(models.CACHE_ENV, "")
    assert models.cache_dir() == Path.home() / ".cache" / "headrank_ir"
    monkeypatch.setenv(models.CACHE_ENV, "~/x")
    assert models.cache_dir() == Path.home() / "x"


@pytest.mark.parametrize("cut", ["half", "header", "empty"])
def test_a_truncated_adapter_is_one_line(cut, tmp_path):
    from headrank_ir.engine.adapter import load_adapter

    path = save_adapter(
        {"m.lora_A.weight": torch.ones(2, 8), "m.lora_B.weight": torch.zeros(8, 2)},
        AdapterSpec(2, 4.0, (0,)),
        tmp_path / "a.safetensors",
    )
    whole = path.read_bytes()
    assert load_adapter(path)[1] == AdapterSpec(2, 4.0, (0,))  # neighbour: the whole file loads
    path.write_bytes({"half": whole[:-16], "header": whole[:12], "empty": b""}[cut])
    with pytest.raises(
        ValueError, match=r"^adapter file .*a\.safetensors \(the profile names it\) is (truncated|not a)"
    ):
        load_adapter(path)


def test_an_adapter_without_its_settings_is_one_line(tmp_path):
    from safetensors.torch import save_file

    from headrank_ir.engine.adapter import FORMAT, load_adapter

    save_file({"m.lora_A.weight": torch.ones(2, 8)}, str(tmp_path / "a.safetensors"), metadata={"format": FORMAT})
    with pytest.raises(
        ValueError, match=r"a\.safetensors has unusable LoRA settings in its metadata \(KeyError\('rank'\)\)"
    ):
        load_adapter(tmp_path / "a.safetensors")


# -- one guard every write goes through -------------------------------------------------------------


def test_every_file_a_run_writes_respects_the_umask(tmp_path, tiny_model_dir, capsys):
    write_files(tmp_path, {}, tiny_model_dir)
    old = os.umask(0o027)
    try:
        argv = command(tmp_path, tiny_model_dir, "--first-stage-output", "{d}/fs/first.txt")
        assert rerank(capsys, argv)[0] == 0
    finally:
        os.umask(old)
    for name in ("out.txt", "out.txt.journal", "fs/first.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name


def test_the_first_stage_output_is_locked_while_written(tmp_path, tiny_model_dir, capsys):
    from headrank_ir.outputs import locked

    write_files(tmp_path, {}, tiny_model_dir)
    with locked(tmp_path / "first.txt", "--first-stage-output"):
        code, _, err = rerank(capsys, command(tmp_path, tiny_model_dir, "--first-stage-output", "{d}/first.txt"))
    assert code == 1 and "is being written by another process" in err and not (tmp_path / "first.txt").exists()


def train_cli(capsys, tmp_path, model: str, *argv: str) -> tuple[int, str]:
    from headrank_ir.train.cli import main as train_main

    write_files(tmp_path, {}, model)
    base = ["--topics", "{d}/topics.tsv", "--run", "{d}/run.txt", "--corpus", "{d}/corpus.jsonl"]
    base = [a.replace("{d}", str(tmp_path)) for a in base]
    base += ["--qrels", f"{tmp_path}/qrels.txt", "--model", model, "--device", "cpu"]
    try:
        code = train_main([*base, *argv])
    except SystemExit as exit:  # argparse refuses the flag
        code = exit.code
    return code, capsys.readouterr().err


TRAIN_CASES = {
    "output is a file": (("--output", "{d}/own/notes.txt"), 1, "is a file, not a folder"),
    "output is an input": (("--output", "{d}/topics.tsv"), 1, "topics.tsv is an input of this command"),
    "output someone's folder": (("--output", "{d}/own"), 1, "a folder this package did not create"),
    "output is the model": (("--output", "{m}"), 1, "is an input of this command"),
    "max depth 0": (("--output", "{d}/p", "--max-depth", "0"), 2, "--max-depth: must be a positive integer"),
    "top k 0": (("--output", "{d}/p", "--top-k", "0"), 2, "--top-k: must be a positive integer"),
    "entropy weight nan": (("--output", "{d}/p", "--entropy-weight", "nan"), 2, "must be a finite number"),
    "lr nan": (("--output", "{d}/p", "--lr", "nan"), 2, "--lr: must be a finite number"),
    "lr 0": (("--output", "{d}/p", "--lr", "0"), 2, "--lr: must be above 0"),
    "temperature inf": (("--output", "{d}/p", "--temperature", "inf"), 2, "must be a finite number"),
    "grades 0 and -1 only": (("--output", "{d}/p", "--no-align"), 1, "no query has a passage graded above 0"),
}


@pytest.mark.parametrize("name", TRAIN_CASES)
def test_train_refuses_bad_settings_before_the_model_loads(name, tmp_path, tiny_model_dir, capsys, monkeypatch):
    from headrank_ir.engine import models

    argv, expected_code, message = TRAIN_CASES[name]
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "notes.txt").write_text("mine\n")
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    if name.startswith("grades"):
        GOOD = {**GOOD_FILES, "qrels.txt": "q1 0 d1 -1\nq1 0 d2 0\nq2 0 d3 0\n"}
        monkeypatch.setitem(globals(), "GOOD_FILES", GOOD)
    argv = [a.replace("{d}", str(tmp_path)).replace("{m}", tiny_model_dir) for a in argv]
    code, err = train_cli(capsys, tmp_path, tiny_model_dir, *argv)
    assert code == expected_code and message in err and "Traceback" not in err, err
    assert (tmp_path / "own" / "notes.txt").read_text() == "mine\n" and (tmp_path / "topics.tsv").stat().st_size


def test_training_settings_refuse_non_finite_numbers_in_the_api():
    from headrank_ir.train.alignment import AlignConfig
    from headrank_ir.train.recipe import TrainingConfig

    with pytest.raises(ValueError, match="--entropy-weight must be a finite number"):
        TrainingConfig(entropy_weight=float("nan"))
    with pytest.raises(ValueError, match="--max-depth must be a positive integer"):
        TrainingConfig(max_depth=0)
    with pytest.raises(ValueError, match="--lr must be a finite number"):
        TrainingConfig(align=AlignConfig(lr=float("nan")))
    assert TrainingConfig(max_depth=2).max_depth == 2  # neighbour: a sound setting passes


@pytest.mark.parametrize("flag", ["--output", "--out"])
def test_bench_output_that_is_a_file_is_one_line_before_any_cell(flag, tmp_path, capsys):
    from headrank_ir.bench.cli import main as bench_main

    (tmp_path / "f").write_text("keep\n")
    assert bench_main(["--datasets", "cranfield", flag, str(tmp_path / "f"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and err.count("\n") == 1
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "x.txt").write_text("keep\n")
    assert bench_main(["--datasets", "cranfield", flag, str(tmp_path / "theirs"), "--device", "cpu"]) == 2
    assert "a folder this package did not create" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "keep\n" == (tmp_path / "theirs" / "x.txt").read_text()


def test_a_new_output_folder_is_marked_and_written_into_again(tmp_path):
    from headrank_ir.outputs import OUTPUT_MARKER, guard_folder

    folder = guard_folder(tmp_path / "a" / "b", "--output")
    assert (folder / OUTPUT_MARKER).is_file()
    (folder / "results.csv").write_text("x\n")
    assert guard_folder(folder, "--output") == folder  # ours: written into again


# -- resume identifies the weights, not their path ------------------------------------------------


@pytest.mark.parametrize("change", ["weights rewritten", "weights touched", "adapter retrained"])
def test_a_resume_after_the_weights_changed_is_refused(change, tmp_path, tiny_model_dir, capsys):

    from headrank_ir.pipeline.runfile import weights_digest

    model = copy_model(Path(tiny_model_dir), tmp_path / "m")
    write_files(tmp_path, {}, str(model))
    adapter = save_adapter(
        {"m.lora_A.weight": torch.ones(2, 8), "m.lora_B.weight": torch.zeros(8, 2)},
        AdapterSpec(2, 4.0, (0,)),
        tmp_path / "a.safetensors",
    )
    profile = HeadProfile(str(model), ((0, 1, 1.0),), adapter=str(adapter))
    before = weights_digest(str(model), profile)
    assert before == weights_digest(str(model), profile)  # neighbour: unchanged weights, same digest
    weights = model / "model.safetensors"
    if change == "weights rewritten":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif change == "weights touched":
        os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    else:
        adapter.write_bytes(adapter.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    assert weights_digest(str(model), profile) != before


def test_the_run_journal_names_the_weights_and_refuses_a_resume_on_others(tmp_path, tiny_model_dir, capsys):
    model = copy_model(Path(tiny_model_dir), tmp_path / "m")
    write_files(tmp_path, {}, str(model))
    argv = command(tmp_path, str(model))
    assert rerank(capsys, argv)[0] == 0
    journal = json.loads((tmp_path / "out.txt.journal").read_text().splitlines()[0])
    assert len(journal["header"]["weights"]) == 64
    assert rerank(capsys, argv)[0] == 0  # neighbour: the same weights, nothing to redo
    weights = model / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    code, _, err = rerank(capsys, argv)
    assert code == 1 and "started with other settings (weights: " in err, err


# -- said once, refused in one line ---------------------------------------------------------------


def test_a_profile_with_every_weight_negated_is_accepted_and_said_once(caplog):
    heads = ((0, 1, -1.0), (2, 3, -0.25))
    with caplog.at_level("WARNING", logger="headrank_ir.engine.profile"):
        first = HeadProfile("m", heads)
        HeadProfile("m", heads)
        first.with_prompt(calibrate=False)
        HeadProfile("m", ((0, 1, -1.0), (2, 3, 0.5)))  # neighbour: mixed signs are said nothing about
    said = [r.getMessage() for r in caplog.records if "is negative" in r.getMessage()]
    assert len(said) == 1 and "every head weight of the profile for m is negative" in said[0]


def test_out_of_memory_is_one_line(capsys):
    import argparse

    from headrank_ir.command_helpers import run_command

    def run(args):
        raise MemoryError()

    assert run_command(run, argparse.Namespace(), resume_hint="x") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and err.count("\n") == 1 and "--batch-size" in err

    def unmappable(args):  # what `import torch` raises under `ulimit -v 500000`
        raise ImportError("libtorch_cpu.so: failed to map segment from shared object")

    assert run_command(unmappable, argparse.Namespace(), resume_hint="x") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory loading a library") and err.count("\n") == 1

    def missing(args):  # neighbour: a missing package is not memory, and keeps its traceback
        raise ImportError("No module named 'nothing_here'")

    with pytest.raises(ImportError, match="nothing_here"):
        run_command(missing, argparse.Namespace(), resume_hint="x")


def test_ray_logs_in_redirected_output_are_plain(monkeypatch):
    import logging

    from headrank_ir.pipeline.distributed import quiet_ray_logs

    monkeypatch.setenv("RAY_COLOR_PREFIX", "")  # recorded, so that the test leaves the variable as it was
    monkeypatch.delenv("RAY_COLOR_PREFIX")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
    monkeypatch.setattr(auth, "level", logging.NOTSET)
    quiet_ray_logs()
    assert os.environ["RAY_COLOR_PREFIX"] == "0" and auth.level == logging.ERROR
