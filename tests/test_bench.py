"""The bench end to end on a tiny random model and a few real DL queries."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import ir_measures
import pytest

from headrank_ir import rerank
from headrank_ir.bench.cells import Cell, run_isolated
from headrank_ir.bench.cli import main
from headrank_ir.bench.datasets import DATASETS, default_data_root, load, prepare
from headrank_ir.bench.report import MEASURE_COLUMNS
from headrank_ir.bench.store import CellKey
from headrank_ir.evaluation.measures import DEFAULT_MEASURES
from headrank_ir.evaluation.selectivity import selectivity
from headrank_ir.pipeline.readers import read_qrels_file, read_trec_run

METHODS = ["bm25", "icr", "qrhead", "rankgpt", "minilm"]
DEPTH = 5
QUERIES = 2


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--model",
        tiny_model_dir,
        "--datasets",
        "dl19",
        "dl20",
        "--methods",
        *METHODS,
        "headrank",
        "--depth",
        str(DEPTH),
        "--max-queries",
        str(QUERIES),
        "--out",
        str(out),
        "--profiles",
        str(out / "no-profiles"),
        "--cache",
        str(out / "cache"),
        "--no-isolate",
    ]
    assert main(argv) == 0
    return out, argv


def _rows(out):
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_table_has_one_row_per_method_and_dataset(bench):
    out, _ = bench
    rows = _rows(out)
    assert [(r["method"], r["dataset"]) for r in rows] == [(m, d) for d in ("dl19", "dl20") for m in METHODS]
    assert all(r["queries"] == str(QUERIES) for r in rows)
    by_method = {r["method"]: r for r in rows if r["dataset"] == "dl19"}
    assert by_method["bm25"]["s_per_query"] == ""  # the given run costs nothing at query time
    # one window: the whole prompt, then the calibration query on the rewound cache
    assert float(by_method["icr"]["forward_passes"]) == 2.0
    assert 0.0 <= float(by_method["rankgpt"]["format_success"]) <= 1.0
    assert by_method["icr"]["format_success"] == ""


def test_numbers_are_what_ir_measures_computes_from_the_written_runs(bench, tiny_model_dir):
    out, _ = bench
    qrels = {d: read_qrels_file(default_data_root() / DATASETS[d].folder / "qrels.txt") for d in ("dl19", "dl20")}
    for row in _rows(out):
        run_path = CellKey(tiny_model_dir, row["dataset"], row["method"], DEPTH, QUERIES).run(out / "bench")
        run = list(ir_measures.read_trec_run(str(run_path)))
        qids = {r.query_id for r in run}
        assert len(qids) == QUERIES and len(run) == 100 * QUERIES
        judged = {q: qrels[row["dataset"]][q] for q in qids}
        values = ir_measures.calc_aggregate([ir_measures.parse_measure(m) for m in DEFAULT_MEASURES], judged, run)
        for measure in DEFAULT_MEASURES:
            column = MEASURE_COLUMNS[measure]
            assert float(row[column]) == pytest.approx(values[ir_measures.parse_measure(measure)], abs=5e-5), column


def test_rerankers_only_reorder_the_top_depth(bench, tiny_model_dir):
    out, _ = bench
    given = read_trec_run(default_data_root() / DATASETS["dl19"].folder / DATASETS["dl19"].bm25_run).hits
    for method in METHODS[1:]:
        run = read_trec_run(CellKey(tiny_model_dir, "dl19", method, DEPTH, QUERIES).run(out / "bench")).hits
        assert len(run) == QUERIES
        for qid, hits in run.items():
            first_stage = [h.docid for h in given[qid]]
            ranked = [h.docid for h in hits]
            assert sorted(ranked[:DEPTH]) == sorted(first_stage[:DEPTH]), method
            assert ranked[DEPTH:] == first_stage[DEPTH:], method  # the rest in first-stage order


def test_the_icr_cell_is_the_clis_run_byte_for_byte(bench, tiny_model_dir, tmp_path):
    out, _ = bench
    collection = prepare(DATASETS["dl19"], default_data_root(), tmp_path, tmp_path)
    requests = load(collection, QUERIES).requests  # the bench's queries, in its order
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{r.query.qid}\t{r.query.text}\n" for r in requests))
    cli_run = tmp_path / "cli.trec"
    argv = ["--run", str(collection.run), "--corpus", str(collection.corpus), "--topics", str(topics)]
    argv += ["--model", tiny_model_dir, "--depth", str(DEPTH), "--run-tag", "icr", "--output", str(cli_run)]
    assert rerank.main(argv) == 0
    bench_run = CellKey(tiny_model_dir, "dl19", "icr", DEPTH, QUERIES).run(out / "bench")
    assert bench_run.read_bytes() == cli_run.read_bytes()


def test_the_icr_record_holds_what_the_ranker_read(bench, tiny_model_dir):
    out, _ = bench
    key = CellKey(tiny_model_dir, "dl19", "icr", DEPTH, QUERIES)
    record = json.loads(key.result(out / "bench").read_text())
    run = read_trec_run(key.run(out / "bench")).hits
    assert len(record["heads"]) == len(record["head_ndcg"]) == 3 * 4  # tiny model: 3 layers x 4 heads
    assert all(0.0 <= v <= 1.0 for v in record["head_ndcg"].values())
    given = read_trec_run(default_data_root() / DATASETS["dl19"].folder / DATASETS["dl19"].bm25_run).hits
    assert len(record["scores"]) == QUERIES
    for qid, scores in record["scores"].items():
        written = {h.docid: h.score for h in run[qid]}
        assert scores["docids"] == [h.docid for h in given[qid][:DEPTH]]  # first-stage order
        assert scores["scores"] == pytest.approx([written[d] for d in scores["docids"]], abs=1e-6)
        assert scores["positions"] == list(range(DEPTH - 1, -1, -1))  # reversed prompt: best BM25 last


def test_plots_and_markdown_are_written_and_linked(bench):
    out, _ = bench
    markdown = (out / "results.md").read_text()
    for png in (
        "quality_cost.png",
        "homogenisation.png",
        "headmap.dl20.png",
        "headmap.dl19.png",
    ):
        assert (out / png).stat().st_size > 10_000, png
        assert f"]({png})" in markdown
    assert "skipped `headrank` on dl19: no profile trained on dl20" in markdown
    assert "(p=" in markdown  # significance against BM25 and ICR


def test_a_second_run_resumes_without_recomputing(bench):
    out, argv = bench
    results = sorted(p for p in (out / "bench").rglob("*.json") if not p.name.endswith(".skipped.json"))
    assert len(results) == 2 * len(METHODS)
    stamps = [p.stat().st_mtime_ns for p in results]
    assert main(argv) == 0
    assert [p.stat().st_mtime_ns for p in results] == stamps


def test_an_isolated_cell_measures_its_own_process(tmp_path, tiny_model_dir):
    collection = prepare(DATASETS["dl19"], default_data_root(), tmp_path, tmp_path)
    cell = Cell(
        CellKey(tiny_model_dir, "dl19", "icr", 3, 1),
        collection,
        tmp_path,
        tmp_path,
        tmp_path,
    )
    run_isolated(cell)
    record = json.loads(cell.key.result(tmp_path).read_text())
    assert record["cost"]["isolated"] and record["queries"] == 1
    assert 50 < record["cost"]["peak_rss_mb"] < 4000
    assert record["cost"]["s_per_query"] > 0 and record["cost"]["passages_per_s"] > 0


def test_selectivity_columns_are_computed_from_the_written_runs(bench, tiny_model_dir):
    out, _ = bench
    for row in _rows(out):
        dataset = DATASETS[row["dataset"]]
        qrels = read_qrels_file(default_data_root() / dataset.folder / "qrels.txt")
        first_stage = read_trec_run(default_data_root() / dataset.folder / dataset.bm25_run).hits
        run = read_trec_run(CellKey(tiny_model_dir, row["dataset"], row["method"], DEPTH, QUERIES).run(out / "bench"))
        reranked = {q: [h.docid for h in hits[:DEPTH]] for q, hits in run.hits.items()}
        shown = {q: [h.docid for h in first_stage[q][:DEPTH]] for q in reranked}  # DL: every passage in the corpus
        expected = selectivity(shown, reranked, qrels, relevant_grade=dataset.relevant_grade)
        assert float(row["sel_rel"]) == pytest.approx(expected.relevant, abs=5e-5), row["method"]
        assert float(row["sel_irr"]) == pytest.approx(expected.irrelevant, abs=5e-5), row["method"]
        assert float(row["sel_gap"]) == pytest.approx(expected.gap, abs=5e-5), row["method"]


def test_the_committed_cells_still_make_the_committed_table(tmp_path):
    """Cells written before the bench took the CLI's path stay readable: ``--report-only`` over
    ``runs/bench`` gives ``runs/results.csv`` as committed."""
    runs = Path(__file__).resolve().parents[1] / "runs"
    (tmp_path / "bench").symlink_to(runs / "bench")  # the report only reads there
    assert main(["--depth", "20", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.csv").read_text() == (runs / "results.csv").read_text()


def test_the_first_stage_alone_makes_a_table_and_plot(tmp_path):
    # only BM25: nothing is drawn as a point, so the shared legend has no entry (it once crashed)
    argv = ["--methods", "bm25", "--datasets", "dl19", "--max-queries", "2", "--no-isolate", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "quality_cost.png").exists() and "bm25" in (tmp_path / "results.md").read_text()
