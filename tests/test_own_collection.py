"""A collection of one's own, end to end: index, first stage, rerank, evaluate with significance,
bench; the Pyserini traps the launcher turns into one line; progress lines in logs.

Runs on a scratch copy of Cranfield (the whole corpus, the first five topics and their qrels).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import ir_measures
import pytest
from pipeline_support import CRANFIELD, DL19, REPO, doc_lines, run_doc_line
from scipy import stats

from headrank_ir import evaluate, progress, rerank
from headrank_ir.bench import cli as bench_cli
from headrank_ir.bench import datasets
from headrank_ir.errors import InputError
from headrank_ir.evaluation.significance import compare
from headrank_ir.pipeline import jvm
from headrank_ir.pipeline.readers import read_corpus, read_qrels_file, read_topics_file, read_trec_run

DOC = REPO / "docs" / "own-collection.md"
TOPICS = 5
QUICK = ["--hits", "30", "--depth", "10"]


def scratch_collection(folder: Path) -> Path:
    """Cranfield's corpus, its first topics and their judgements, as a user's three files."""
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_bytes((CRANFIELD / "corpus.jsonl").read_bytes())
    topics = (CRANFIELD / "topics.tsv").read_text().splitlines()[:TOPICS]
    (folder / "topics.tsv").write_text("\n".join(topics) + "\n")
    qids = {line.split("\t")[0] for line in topics}
    qrels = [line for line in (CRANFIELD / "qrels.txt").read_text().splitlines() if line.split()[0] in qids]
    (folder / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return folder


@pytest.fixture(scope="module")
def documented(tmp_path_factory, tiny_model_dir, monkeypatch_module):
    """The three documented commands, run in order in a scratch folder holding ``collection/``."""
    work = tmp_path_factory.mktemp("own")
    scratch_collection(work / "collection")
    monkeypatch_module.chdir(work)
    return work, [(line, *run_doc_line(line, tiny_model_dir, QUICK)) for line in doc_lines(DOC)]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_doc_is_three_commands_index_rerank_evaluate():
    programs = [shlex.split(line)[2] for line in doc_lines(DOC)]
    assert programs == ["headrank_ir.index", "headrank_ir.rerank", "headrank_ir.evaluate"]


def test_documented_commands_give_a_reranked_run_and_a_significance_table(documented):
    work, ran = documented
    for line, code, output in ran:
        assert code == 0, (line, output)
    reranked, first = read_trec_run(work / "runs/mine.headrank.txt"), read_trec_run(work / "runs/mine.bm25.txt")
    assert len(reranked.hits) == len(first.hits) == TOPICS
    for qid, hits in first.hits.items():  # the reranked run reorders exactly the written first stage
        assert len(hits) == 30 and {h.docid for h in hits} == {h.docid for h in reranked.hits[qid]}
    evaluated = ran[-1][2]
    assert f"queries: {TOPICS} judged, {TOPICS} of them in runs/mine.headrank.txt" in evaluated
    row = next(line.split() for line in evaluated.splitlines() if line.startswith("mine.headrank.txt  nDCG@10"))
    qrels = read_qrels_file(work / "collection/qrels.txt")
    ndcg = ir_measures.parse_measure("nDCG@10")
    mean = {
        name: ir_measures.calc_aggregate([ndcg], qrels, list(ir_measures.read_trec_run(str(work / "runs" / name))))[
            ndcg
        ]
        for name in ("mine.headrank.txt", "mine.bm25.txt")
    }
    assert float(row[2]) == pytest.approx(mean["mine.headrank.txt"], abs=5e-5)
    assert float(row[3]) == pytest.approx(mean["mine.bm25.txt"], abs=5e-5)
    wins, losses, ties = map(int, row[9].split("/"))
    assert wins + losses + ties == TOPICS
    # R@100 over the same 30 documents reordered in the top 10: named, not tested; the plot is drawn
    assert "not tested for mine.headrank.txt: R@100 (" in evaluated and "mine.headrank.txt  R@100" not in evaluated
    assert (work / "runs/mine.differences.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_first_stage_is_what_pyserini_s_own_search_returns_even_under_a_cacm_path(documented, tmp_path):
    """Pyserini's CLI through the launcher, topics under a path with 'cacm' (its trap): the same
    BM25 top hits as the first stage ``rerank`` wrote."""
    work, _ = documented
    trapped = tmp_path / "cacm-beir" / "topics.tsv"
    trapped.parent.mkdir()
    trapped.write_text((work / "collection/topics.tsv").read_text())
    out = tmp_path / "pyserini.txt"
    argv = ["pyserini.search.lucene", "--index", str(work / "indexes/mine"), "--topics", str(trapped)]
    done = subprocess.run(
        [sys.executable, "-m", "headrank_ir.java", *argv, "--output", str(out), "--bm25", "--hits", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "note: Pyserini would read" in done.stderr
    theirs, ours = read_trec_run(out), read_trec_run(work / "runs/mine.bm25.txt")
    assert set(theirs.hits) == set(ours.hits)
    for qid, hits in ours.hits.items():
        assert [round(h.score, 4) for h in hits] == [round(h.score, 4) for h in theirs.hits[qid]]
        assert {h.docid for h in hits[:10]} <= {h.docid for h in theirs.hits[qid][:15]}  # ties may swap


def test_the_index_holds_every_document_and_its_raw_text(documented, tmp_path):
    work, _ = documented
    exported = tmp_path / "exported.jsonl"
    from headrank_ir.pipeline.index import export_corpus

    # Anserini leaves out documents with empty contents (two in Cranfield): nothing to retrieve
    expected = {docid: text for docid, text in read_corpus(CRANFIELD / "corpus.jsonl").items() if text.strip()}
    assert export_corpus(work / "indexes/mine", exported) == len(expected) == 1398
    assert read_corpus(exported) == expected


def run_index(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "headrank_ir.index", *argv], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_index_command_takes_a_folder_and_refuses_to_overwrite(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = (CRANFIELD / "corpus.jsonl").read_text().splitlines()
    (corpus / "a.jsonl").write_text("\n".join(lines[:30]) + "\n")
    (corpus / "b.jsonl").write_text("\n".join(lines[30:50]) + "\n")
    (corpus / "README").write_text("not a corpus file")
    built = run_index(str(corpus), "--index", str(tmp_path / "idx"))
    assert built.returncode == 0, built.stderr[-2000:]
    # one line of ours: none of Anserini's ~35 INFO lines, nor SLF4J's provider note on stderr
    assert re.fullmatch(r"indexed 50 documents into \S+ in [\d.]+ s\n", built.stdout), built.stdout
    assert "SLF4J" not in built.stderr and "INFO" not in built.stderr, built.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "idx"]  # no staging folder left
    again = run_index(str(corpus), "--index", str(tmp_path / "idx"))
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        f"error: --index {tmp_path / 'idx'} already exists; pass --overwrite to rebuild it"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a"}\n', "corpus.jsonl:1: no text field (looked for contents, text)"),
        ("not json\n", "corpus.jsonl:1: not valid JSON"),
        ("\n", "no documents in this corpus file"),
    ],
)
def test_a_bad_corpus_is_one_line_before_java_starts(tmp_path, content, message):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(content)
    with pytest.raises(InputError, match=re.escape(message)):
        from headrank_ir.pipeline.index import build_index

        build_index(corpus, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_a_missing_corpus_is_one_line(tmp_path):
    done = run_index(str(tmp_path / "nope.jsonl"), "--index", str(tmp_path / "idx"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: corpus {tmp_path / 'nope.jsonl'} does not exist (give a JSONL file or a folder of them)"
    ]


def test_the_launcher_points_a_corpus_file_at_our_indexer(capsys):
    code = jvm.main(["pyserini.index.lucene", "--input", str(CRANFIELD / "corpus.jsonl"), "--index", "idx"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0] and "python -m headrank_ir.index" in err[0]


def test_the_launcher_hands_a_trapped_topics_path_over_under_a_neutral_name(tmp_path, capsys):
    topics = tmp_path / "beir" / "queries.tsv"
    topics.parent.mkdir()
    topics.write_text("1\tq\n")
    args = jvm.sidestep_traps("pyserini.search.lucene", ["--index", "x", "--topics", str(topics)])
    assert args[:3] == ["--index", "x", "--topics"] and "beir" not in args[3] and "cacm" not in args[3]
    assert Path(args[3]).read_text() == "1\tq\n" and args[3].endswith(".tsv")
    untouched = ["--topics", str(tmp_path / "elsewhere.tsv")]
    assert jvm.sidestep_traps("pyserini.search.lucene", untouched) == untouched


def test_the_launcher_says_when_java_is_missing(monkeypatch, capsys):
    def no_java():
        raise jvm.JavaNotFoundError("Pyserini needs Java 21 or newer; found: /usr/lib/jvm/x (Java 17)")

    monkeypatch.setattr(jvm, "find_runtime", no_java)
    monkeypatch.setattr(jvm, "_configured", None)
    assert jvm.main(["pyserini.search.lucene", "--topics", "t.tsv"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: Pyserini needs Java 21 or newer; found: /usr/lib/jvm/x (Java 17)"
    ]


def write_run(path: Path, scores: dict[str, dict[str, float]]) -> Path:
    lines = [
        f"{qid} Q0 {docid} {rank} {score} t"
        for qid, docs in scores.items()
        for rank, (docid, score) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), 1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def toy(tmp_path):
    """Four judged queries; ``better`` puts the relevant document first on three, ``base`` on one."""
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("".join(f"{q} 0 r{q} 1\n" for q in "1234"))
    better = {q: {f"r{q}": 2.0, f"n{q}": 1.0} for q in "123"} | {"4": {"n4": 2.0, "r4": 1.0}}
    base = {q: {f"n{q}": 2.0, f"r{q}": 1.0} for q in "123"} | {"4": {"n4": 2.0, "r4": 1.0}}
    return qrels, write_run(tmp_path / "better.txt", better), write_run(tmp_path / "base.txt", base)


def run_evaluate(capsys, *argv) -> tuple[int, str, str]:
    code = evaluate.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_prints_the_query_count_and_per_query_values_trec_eval_style(toy, capsys):
    qrels, better, _ = toy
    code, out, _ = run_evaluate(capsys, qrels, better, "-q", "RR@10")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"queries: 4 judged, 4 of them in {better}"
    assert lines[1:6] == [
        "RR@10\t1\t1.0000",
        "RR@10\t2\t1.0000",
        "RR@10\t3\t1.0000",
        "RR@10\t4\t0.5000",
        "RR@10\tall\t0.8750",
    ]


def test_compare_gives_mean_difference_both_p_values_and_wins(toy, capsys):
    qrels, better, base = toy
    code, out, _ = run_evaluate(capsys, qrels, better, "RR@10", "--compare", base, "--also", base)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[out.splitlines().index("") + 2 :]}
    per_query = {"better": [1.0, 1.0, 1.0, 0.5], "base": [0.5, 0.5, 0.5, 0.5]}
    t = stats.ttest_rel(per_query["better"], per_query["base"]).pvalue
    assert rows["better.txt"][1:5] == ["RR@10", "0.8750", "0.5000", "+0.3750"]
    assert float(rows["better.txt"][6]) == pytest.approx(t, abs=5e-5) and rows["better.txt"][9] == "3/0/1"
    # three of four queries differ: 2**3 equally likely sign patterns, two as extreme as seen
    assert float(rows["better.txt"][5]) == pytest.approx(0.25, abs=0.02)
    assert rows["base.txt"][4:] == ["+0.0000", "1.0000", "1.0000", "1.0000", "1.0000", "0/0/4"]
    # Holm over the two tests: the smaller p doubled, the larger kept (1.0)
    assert float(rows["better.txt"][7]) == pytest.approx(2 * float(rows["better.txt"][5]), abs=5e-4)

    # a baseline that varies by query (RR 1/3, 1/2, 1/4, 1): only the right pairing gives these p
    varied = {"1": {"x": 3.0, "y": 2.0, "r1": 1.0}, "2": {"n2": 2.0, "r2": 1.0}}
    varied |= {"3": {"x": 4.0, "y": 3.0, "z": 2.0, "r3": 1.0}, "4": {"r4": 2.0, "n4": 1.0}}
    varied_run = write_run(Path(qrels).parent / "varied.txt", varied)
    code, out, _ = run_evaluate(capsys, qrels, better, "RR@10", "--compare", varied_run)
    assert code == 0
    row = out.splitlines()[-1].split()
    base_values = [1 / 3, 1 / 2, 1 / 4, 1.0]
    differences = [a - b for a, b in zip(per_query["better"], base_values)]
    t = stats.ttest_rel(per_query["better"], base_values).pvalue
    flips = [abs(sum(s * d for s, d in zip(signs, differences))) for signs in itertools.product([1, -1], repeat=4)]
    exact = sum(f >= abs(sum(differences)) - 1e-12 for f in flips) / 16
    assert row[1:5] == ["RR@10", "0.8750", f"{sum(base_values) / 4:.4f}", f"+{sum(differences) / 4:.4f}"]
    assert float(row[5]) == pytest.approx(exact, abs=5e-5) and float(row[6]) == pytest.approx(t, abs=5e-5)
    assert row[7:9] == row[5:7] and row[9] == "3/1/0"  # one test alone: adjusted p = raw p


def test_compare_leaves_out_queries_no_run_holds(toy, capsys, tmp_path):
    qrels, better, base = toy
    trial = [tmp_path / "trial.better.txt", tmp_path / "trial.base.txt"]
    for source, target in zip((better, base), trial):
        target.write_text("".join(line + "\n" for line in source.read_text().splitlines() if line[0] in "12"))
    code, out, _ = run_evaluate(capsys, qrels, trial[0], "RR@10", "--compare", trial[1])
    assert code == 0 and out.splitlines()[0] == f"queries: 4 judged, 2 of them in {trial[0]}"
    assert "on the 2 judged queries the runs hold" in out
    assert out.splitlines()[-1].split()[1:5] == ["RR@10", "1.0000", "0.5000", "+0.5000"]


def test_evaluate_errors_are_one_line(toy, capsys, tmp_path):
    qrels, better, _ = toy
    assert run_evaluate(capsys, qrels, better, "--also", better)[2].strip() == (
        "error: --also names runs to test against --compare BASELINE; give --compare too"
    )
    code, _, err = run_evaluate(capsys, qrels, better, "--compare", tmp_path / "missing.txt")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "missing.txt" in err


def test_wins_losses_and_ties_count_each_query_once():
    c = compare({"a": 1.0, "b": 0.5, "c": 0.2, "d": 0.3}, {"a": 0.5, "b": 0.5, "c": 0.4, "d": 0.3 + 1e-12})
    assert (c.wins, c.losses, c.ties) == (1, 1, 2)


def test_rerank_writes_a_given_first_stage_run_too(tmp_path, tiny_model_dir, capsys):
    first = tmp_path / "first.txt"
    argv = ["--run", str(DL19 / "run.bm25.txt"), "--corpus", str(DL19 / "corpus.jsonl")]
    argv += ["--topics", str(DL19 / "topics.tsv"), "--max-queries", "2", "--hits", "6", "--depth", "3"]
    argv += ["--model", tiny_model_dir, "--output", str(tmp_path / "run.txt"), "--first-stage-output", str(first)]
    assert rerank.main(argv) == 0
    given, written = read_trec_run(DL19 / "run.bm25.txt"), read_trec_run(first)
    qids = list(read_topics_file(DL19 / "topics.tsv").queries)[:2]
    assert list(written.hits) == qids
    for qid in qids:
        assert [h.docid for h in written.hits[qid]] == [h.docid for h in given.hits[qid][:6]]
    assert {line.split()[-1] for line in first.read_text().splitlines()} == {"firststage"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.txt", "run.txt", "run.txt.journal"]
    assert rerank.main([*argv[:-1], str(tmp_path / "run.txt")]) == 1
    assert "error: --first-stage-output must name another file than --output" in capsys.readouterr().err


def test_collection_flags_are_read_with_clear_errors(tmp_path):
    files = scratch_collection(tmp_path / "c")
    dataset = datasets.parse_collection(
        ["mine", f"topics={files / 'topics.tsv'}", f"qrels={files}/qrels.txt"]
        + [f"corpus={files}/corpus.jsonl", "grade=2"]
    )
    assert (dataset.name, dataset.relevant_grade, dataset.bm25_run, dataset.index) == ("mine", 2, None, None)
    assert Path(dataset.path(None, dataset.corpus)) == files / "corpus.jsonl"
    bad = [
        (["dl19", "topics=x"], "not a built-in name"),
        (
            ["mine", f"topics={files}/topics.tsv", f"qrels={files}/qrels.txt"],
            "needs topics=, qrels= and corpus= or index=",
        ),
        (["mine", "colour=blue"], "cannot read 'colour=blue'"),
        (
            ["mine", f"topics={files}/nope.tsv", f"qrels={files}/qrels.txt", f"index={files}"],
            "topics=" + f"{files}/nope.tsv: no such file",
        ),
        (
            ["mine", f"topics={files}/topics.tsv", f"qrels={files}/qrels.txt", f"index={files}/corpus.jsonl"],
            "no such folder",
        ),
    ]
    for values, message in bad:
        with pytest.raises(InputError, match=re.escape(message)):
            datasets.parse_collection(values)


def test_built_in_datasets_need_data_or_the_environment(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("HEADRANK_DATA")
    with pytest.raises(InputError, match=re.escape("pass --data DIR or set HEADRANK_DATA=DIR")):
        datasets.default_data_root()
    assert bench_cli.main(["--datasets", "dl19", "--methods", "bm25", "--out", str(tmp_path)]) == 2
    assert "pass --data DIR or set HEADRANK_DATA=DIR" in capsys.readouterr().err


def test_a_collection_given_by_its_index_gets_its_texts_and_bm25_run(documented, tmp_path):
    work, _ = documented
    files = work / "collection"
    dataset = datasets.parse_collection(
        ["byindex", f"topics={files}/topics.tsv", f"qrels={files}/qrels.txt", f"index={work}/indexes/mine"]
    )
    collection = datasets.prepare(dataset, None, tmp_path / "runs", tmp_path / "cache")
    assert read_corpus(collection.corpus).items() <= read_corpus(files / "corpus.jsonl").items()
    ours, documented_run = read_trec_run(collection.run), read_trec_run(work / "runs/mine.bm25.txt")
    for qid, hits in documented_run.hits.items():
        assert [h.docid for h in ours.hits[qid][:30]] == [h.docid for h in hits]


@pytest.fixture(scope="module")
def benched(documented, tiny_model_dir, tmp_path_factory):
    work, _ = documented
    out = tmp_path_factory.mktemp("bench-own")
    files = work / "collection"
    argv = ["--model", tiny_model_dir, "--methods", "bm25", "icr", "--depth", "5", "--max-queries", "2"]
    argv += ["--collection", "mine", f"topics={files}/topics.tsv", f"qrels={files}/qrels.txt"]
    argv += [f"corpus={files}/corpus.jsonl", "--out", str(out), "--cache", str(out / "cache"), "--no-isolate"]
    assert bench_cli.main(argv) == 0
    return work, out


def test_bench_reports_a_collection_given_as_files_like_the_built_in_ones(benched):
    work, out = benched
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["dataset"], r["queries"]) for r in rows] == [("bm25", "mine", "2"), ("icr", "mine", "2")]
    assert "mine" in (out / "results.md").read_text()
    qrels = read_qrels_file(work / "collection/qrels.txt")
    ndcg = ir_measures.parse_measure("nDCG@10")
    for row in rows:
        (run,) = (out / "bench").rglob(f"mine.q2.d5/{row['method']}.trec")
        judged = {q: qrels[q] for q in read_trec_run(run).hits}
        assert float(row["ndcg_cut_10"]) == pytest.approx(
            ir_measures.calc_aggregate([ndcg], judged, list(ir_measures.read_trec_run(str(run))))[ndcg], abs=5e-5
        )
    bm25 = next((out / "bench").rglob("mine.q2.d5/bm25.trec"))
    documented_run = read_trec_run(work / "runs/mine.bm25.txt")
    for qid, hits in read_trec_run(bm25).hits.items():  # the bench's BM25 is the documented first stage
        assert [h.docid for h in hits[:30]] == [h.docid for h in documented_run.hits[qid]]


def test_progress_is_plain_lines_off_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    bar = progress.progress(total=3, desc="reranking", unit="query", every=0.0, dynamic_ncols=True)
    assert isinstance(bar, progress.PlainProgress)
    with bar:
        for _ in range(3):
            bar.set_postfix_str("2.0 passages/s")
            bar.update(1)
    assert "\r" not in stream.getvalue()
    lines = stream.getvalue().splitlines()
    assert [line.split(", elapsed")[0] for line in lines] == [
        f"reranking: {n}/3 query [2.0 passages/s]" for n in (1, 2, 3)
    ]
    assert all(re.search(r", elapsed \d+:\d\d(, ETA \d+:\d\d)?$", line) for line in lines)
    assert list(progress.progress(["a", "b"], desc="x")) == ["a", "b"]


def test_progress_is_tqdm_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    from tqdm import tqdm

    with progress.progress(total=2, desc="x") as bar:
        assert isinstance(bar, tqdm)


def test_the_bench_first_stage_reproduces_the_committed_cranfield_run(tmp_path_factory, tmp_path):
    """One indexer and one BM25 run writer: the bench's Cranfield run, byte for byte."""
    from pipeline_support import cranfield_index

    from headrank_ir.pipeline.firststage import write_bm25_run

    index = cranfield_index(tmp_path_factory.getbasetemp())
    write_bm25_run(index, CRANFIELD / "topics.tsv", tmp_path / "cranfield.bm25.trec")
    committed = REPO / "runs" / "bench" / "firststage" / "cranfield.bm25.trec"
    assert (tmp_path / "cranfield.bm25.trec").read_bytes() == committed.read_bytes()


def test_an_isolated_cell_knows_a_collection_given_as_files(benched, tiny_model_dir, tmp_path):
    """A cell's own (spawned) process starts with only the built-in datasets registered."""
    from headrank_ir.bench.cells import Cell, run_isolated
    from headrank_ir.bench.store import CellKey

    work, out = benched
    collection = datasets.prepare(datasets.DATASETS["mine"], None, out / "bench", out / "cache")
    cell = Cell(CellKey(tiny_model_dir, "mine", "icr", 3, 1), collection, tmp_path, tmp_path, tmp_path)
    run_isolated(cell)
    record = json.loads(cell.key.result(tmp_path).read_text())
    assert record["cost"]["isolated"] and record["queries"] == 1 and record["dataset"] == "mine"
