"""``python -m headrank_ir.rerank`` end to end on real data with a tiny model.

Cranfield goes through a Lucene index built by Pyserini's indexer and BM25; DL19 through
``--run``/``--corpus``. Then the resume (by killing a real run), determinism and bad-input cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import ir_measures
import pytest
from pipeline_support import CRANFIELD, DL19, cranfield_index, kill_rerank_midway

from headrank_ir import evaluate as evaluate_cli
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.evaluation.tables import gain_table
from headrank_ir.pipeline.names import read_topics
from headrank_ir.pipeline.readers import read_corpus, read_qrels_file, read_trec_run
from headrank_ir.records import Candidate, Query, Request
from headrank_ir.rerank import main

DL19_INPUTS = [
    "--run",
    str(DL19 / "run.bm25.txt"),
    "--corpus",
    str(DL19 / "corpus.jsonl"),
    "--topics",
    str(DL19 / "topics.tsv"),
]
DL19_QUERIES = 5
DL19_HITS = 8


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    return cranfield_index(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def ranker(tiny_model_dir) -> HeadRanker:
    return HeadRanker.from_pretrained(tiny_model_dir)


def rerank(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_value(out: str, measure: str, column: int) -> float:
    row = next(line for line in out.splitlines() if line.split()[:1] == [measure])
    return float(row.split()[1 + column])


def trec_lines(path: Path) -> dict[str, list[str]]:
    by_query: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        by_query.setdefault(line.split()[0], []).append(line)
    return by_query


def test_cranfield_bm25_rerank_and_evaluate(index, tiny_model_dir, ranker, tmp_path, capsys):
    out = tmp_path / "runs" / "cranfield.txt"
    qrels = str(CRANFIELD / "qrels.txt")
    argv = [
        "--index",
        str(index),
        "--topics",
        str(CRANFIELD / "topics.tsv"),
        "--bm25",
        "--hits",
        "12",
    ]
    code, stdout, stderr = rerank(
        capsys,
        *argv,
        "--depth",
        "5",
        "--max-queries",
        "3",
        "--model",
        tiny_model_dir,
        "--qrels",
        qrels,
        "--output",
        str(out),
    )
    assert code == 0, stderr
    assert "reranked 3 queries, 15 passages" in stdout

    from headrank_ir.pipeline.firststage import open_searcher

    searcher = open_searcher(str(index))
    topics = list(read_topics(str(CRANFIELD / "topics.tsv")).queries.items())[:3]
    run = trec_lines(out)
    assert list(run) == [qid for qid, _ in topics]
    for qid, text in topics:
        hits = [h.docid for h in searcher.search(text, k=12)]
        docids = [line.split()[2] for line in run[qid]]
        texts = read_corpus(CRANFIELD / "corpus.jsonl", set(hits[:5]))
        reranked = [p.doc_id for p in ranker.rank(text, [texts[d] for d in hits[:5]], doc_ids=hits[:5])]
        assert docids == reranked + hits[5:]  # the top 5 reranked, BM25's order below
        assert [line.split()[3] for line in run[qid]] == [str(r) for r in range(1, 13)]
        assert all(line.endswith(" headrank") for line in run[qid])

    judged = {qid: j for qid, j in read_qrels_file(qrels).items() if qid in dict(topics)}
    scored = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], judged, ir_measures.read_trec_run(str(out)))
    assert table_value(stdout, "nDCG@10", 1) == pytest.approx(scored[ir_measures.nDCG @ 10], abs=5e-5)

    # The separate evaluate command agrees with ir_measures on the whole qrels.
    assert evaluate_cli.main([qrels, str(out), "nDCG@10", "ndcg_cut_5"]) == 0
    printed = capsys.readouterr().out
    everything = ir_measures.calc_aggregate(
        [ir_measures.nDCG @ 10],
        read_qrels_file(qrels),
        ir_measures.read_trec_run(str(out)),
    )
    assert table_value(printed, "nDCG@10", 0) == pytest.approx(everything[ir_measures.nDCG @ 10], abs=5e-5)
    assert "nDCG@5" in printed


@pytest.fixture(scope="module")
def dl19_args(tiny_model_dir) -> list[str]:
    return [
        *DL19_INPUTS,
        "--max-queries",
        str(DL19_QUERIES),
        "--hits",
        str(DL19_HITS),
        "--model",
        tiny_model_dir,
    ]


@pytest.fixture(scope="module")
def dl19_reference(dl19_args, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("dl19") / "run.txt"
    assert main([*dl19_args, "--output", str(out)]) == 0
    return out.read_bytes()


def test_dl19_through_run_and_corpus(dl19_args, dl19_reference, tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    code, stdout, stderr = rerank(
        capsys,
        *dl19_args,
        "--output-format",
        "jsonl",
        "--qrels",
        str(DL19 / "qrels.txt"),
        "--output",
        str(out),
    )
    assert code == 0, stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    bm25 = read_trec_run(DL19 / "run.bm25.txt")
    assert [r["query"]["qid"] for r in results] == list(bm25.hits)[:DL19_QUERIES]
    for r in results:
        assert sorted(c["docid"] for c in r["candidates"]) == sorted(
            h.docid for h in bm25.hits[r["query"]["qid"]][:DL19_HITS]
        )
    # The same ranking as the TREC reference run, in rank_llm's Result shape.
    trec_order = [line.split()[2] for line in dl19_reference.decode().splitlines()]
    assert [c["docid"] for r in results for c in r["candidates"]] == trec_order
    first = {qid: {h.docid: h.score for h in bm25.hits[qid][:DL19_HITS]} for qid in list(bm25.hits)[:DL19_QUERIES]}
    judged = {q: j for q, j in read_qrels_file(DL19 / "qrels.txt").items() if q in first}
    expected = ir_measures.calc_aggregate([ir_measures.RR @ 10], judged, first)[ir_measures.RR @ 10]
    assert table_value(stdout, "RR@10", 0) == pytest.approx(expected, abs=5e-5)
    assert f"{DL19_QUERIES} judged queries of {DL19_QUERIES}" in stdout


def test_same_inputs_give_a_byte_identical_run(dl19_args, dl19_reference, tmp_path, capsys):
    out = tmp_path / "again.txt"
    assert rerank(capsys, *dl19_args, "--output", str(out))[0] == 0
    assert out.read_bytes() == dl19_reference
    assert len(dl19_reference.splitlines()) == DL19_QUERIES * DL19_HITS


def test_a_killed_run_resumes_to_the_same_bytes(dl19_args, dl19_reference, tmp_path, capsys):
    out = tmp_path / "killed.txt"
    finished = kill_rerank_midway(dl19_args, out)
    assert 2 <= finished < DL19_QUERIES and not out.exists()

    code, stdout, _ = rerank(capsys, *dl19_args, "--output", str(out))
    assert code == 0
    assert f"reranked {DL19_QUERIES - finished} queries" in stdout
    assert out.read_bytes() == dl19_reference
    code, stdout, _ = rerank(capsys, *dl19_args, "--output", str(out))
    assert code == 0 and "nothing to rerank" in stdout


# -- bad input: one line on stderr, a non-zero exit, no output -----------------------------------


def broken_inputs(folder: Path) -> dict[str, str]:
    """Small variants of the DL19 files, each with one defect."""
    topics = (DL19 / "topics.tsv").read_text().splitlines()[:2]
    run = (DL19 / "run.bm25.txt").read_text().splitlines()
    run = [line for line in run if line.split()[0] in {t.split("\t")[0] for t in topics}][:200]
    docids = {line.split()[2] for line in run}
    corpus = [line for line in (DL19 / "corpus.jsonl").read_text().splitlines() if json.loads(line)["id"] in docids]
    files = {
        "topics": "\n".join(topics),
        "topics_one": topics[0],
        "topics_foreign": "999\tan extra query",
        "topics_empty": "\n".join([topics[0], topics[1].split("\t")[0] + "\t  "]),
        "run": "\n".join(run),
        "run_malformed": "\n".join([*run[:2], "264014 Q0 5611210 3 15.7806", *run[3:]]),
        "corpus": "\n".join(corpus),
        "corpus_missing": "\n".join(line for line in corpus if json.loads(line)["id"] != run[1].split()[2]),
        "corpus_duplicate": "\n".join([*corpus, corpus[0]]),
        "qrels_bad": "264014 0 5611210 high",
    }
    names = {
        key: folder / f"{key}.{'jsonl' if key.startswith('corpus') else 'tsv' if key.startswith('topics') else 'txt'}"
        for key in files
    }
    for key, text in files.items():
        names[key].write_text(text + "\n", encoding="utf-8")
    names["corpus_binary"] = folder / "corpus_binary.jsonl"
    names["corpus_binary"].write_bytes(b'{"id": "x", "contents": "\xff"}\n' + (files["corpus"] + "\n").encode())
    return {key: str(path) for key, path in names.items()}


def route(f: dict[str, str], topics: str = "topics", run: str = "run", corpus: str = "corpus") -> list[str]:
    return ["--topics", f[topics], "--run", f[run], "--corpus", f[corpus]]


BAD_INPUTS = {
    "missing topics file": (
        lambda f: route(f) + ["--topics", f["topics"] + ".nope"],
        "file not found",
    ),
    "malformed run line": (
        lambda f: route(f, run="run_malformed"),
        "run_malformed.txt:3: expected 'qid Q0 docid rank score tag', got 5",
    ),
    "topics and run share no query": (
        lambda f: route(f, topics="topics_foreign"),
        "has hits in the run",
    ),
    "docid not in corpus": (
        lambda f: route(f, corpus="corpus_missing"),
        "run.txt:2: docid '6641238' is not in the corpus",
    ),
    "duplicate docid": (
        lambda f: route(f, corpus="corpus_duplicate"),
        "appears twice (first on line 1)",
    ),
    "empty query": (
        lambda f: route(f, topics="topics_empty"),
        "topics_empty.tsv:2: query '104861' is empty",
    ),
    "non-UTF-8 corpus": (
        lambda f: route(f, corpus="corpus_binary"),
        "corpus_binary.jsonl:1: bytes that are not UTF-8 at column 26",
    ),
    "bad qrels": (
        lambda f: route(f) + ["--qrels", f["qrels_bad"]],
        "qrels_bad.txt:1: relevance grade 'high'",
    ),
    "no first stage": (
        lambda f: ["--topics", f["topics"], "--corpus", f["corpus"]],
        "no first stage",
    ),
    "profile missing": (
        lambda f: route(f) + ["--profile", f["run"] + ".nope"],
        "profile file",
    ),
    "unknown index name": (
        lambda f: ["--topics", f["topics"], "--index", "no-such-index"],
        "neither a local folder nor a Pyserini prebuilt",
    ),
    "not an index": (
        lambda f: ["--topics", f["topics"], "--index", str(Path(f["run"]).parent)],
        "is not a readable Lucene index",
    ),
    "prebuilt offline": (
        lambda f: ["--topics", f["topics"], "--index", "msmarco"],
        "prebuilt index 'msmarco-v1-passage'",
    ),
    "topics name offline": (
        lambda f: route(f) + ["--topics", "dl19"],
        "could not fetch Pyserini topics 'dl19-passage'",
    ),
    "qrels name offline": (
        lambda f: route(f) + ["--qrels", "dl20"],
        "could not fetch Pyserini qrels 'dl20-passage'",
    ),
    "unknown topics name": (
        lambda f: route(f) + ["--topics", "no-such-topics"],
        "unknown topics 'no-such-topics'",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_a_failure(case, tmp_path, tiny_model_dir, capsys):
    make_argv, message = BAD_INPUTS[case]
    out = tmp_path / "out.txt"
    code, stdout, stderr = rerank(
        capsys,
        *make_argv(broken_inputs(tmp_path)),
        "--model",
        tiny_model_dir,
        "--output",
        str(out),
    )
    assert code == 1
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert message in stderr
    assert stdout == "" and not out.exists()


def test_flag_values_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main([*DL19_INPUTS, "--depth", "0", "--output", "unused"])
    assert exit_code.value.code == 2
    assert "argument --depth: must be a positive integer, got 0" in capsys.readouterr().err


def test_offline_errors_suggest_what_to_do(tmp_path, capsys):
    f = broken_inputs(tmp_path)
    assert (
        rerank(
            capsys,
            "--topics",
            f["topics"],
            "--index",
            "msmarco",
            "--output",
            str(tmp_path / "o"),
        )[2]
        .rstrip()
        .endswith("--run FILE --corpus FILE.jsonl")
    )
    assert (
        "offline pass a file instead (--qrels FILE)"
        in rerank(capsys, *route(f), "--qrels", "dl19", "--output", str(tmp_path / "o"))[2]
    )


def test_an_output_written_by_someone_else_or_other_settings_is_kept(dl19_args, tmp_path, capsys):
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("not ours\n")
    code, _, stderr = rerank(capsys, *dl19_args, "--output", str(foreign))
    assert code == 1 and "has no journal" in stderr and foreign.read_text() == "not ours\n"

    out = tmp_path / "ours.txt"
    assert rerank(capsys, *dl19_args, "--max-queries", "1", "--output", str(out))[0] == 0
    before = out.read_bytes()
    code, _, stderr = rerank(capsys, *dl19_args, "--max-queries", "1", "--depth", "3", "--output", str(out))
    assert code == 1 and "other settings (depth: 100 → 3)" in stderr and out.read_bytes() == before
    code, _, _ = rerank(
        capsys,
        *dl19_args,
        "--max-queries",
        "1",
        "--depth",
        "3",
        "--no-resume",
        "--output",
        str(out),
    )
    assert code == 0 and out.read_bytes() != before


def test_the_printed_gain_is_over_the_first_stage_as_ranked_not_as_its_ties_sort(tmp_path):
    """Rounded run scores tie; the first stage's column must rank them as given, as the reranked
    run's tail does, or an unchanged ranking would show a gain."""
    request = Request(Query("q", "1"), [Candidate("a", 7.25), Candidate("b", 7.25)])  # "a" ranked first
    unchanged = tmp_path / "run.txt"
    unchanged.write_text("1 Q0 a 1 2.0 headrank\n1 Q0 b 2 1.0 headrank\n")
    table = gain_table([request], str(unchanged), None, {"1": {"a": 1}})
    ndcg = next(line.split() for line in table.splitlines() if line.startswith("nDCG@10"))
    assert ndcg[1:] == ["1.0000", "1.0000", "0.0000"]
