"""``evaluate`` as a newcomer meets it: trec_eval's argument order (a swap said in one line),
bad measures and flags refused before anything is printed, measures that a rerank of depth d
cannot change left out of the tests, p-values adjusted for the table's tests, and the plot."""

from __future__ import annotations

from pathlib import Path

import pytest
from statsmodels.stats.multitest import multipletests

from headrank_ir import evaluate
from headrank_ir.evaluation.measures import same_documents_from, unchangeable

QUERIES = "123456"


def write_run(path: Path, ranked: dict[str, list[str]]) -> str:
    lines = [f"{q} Q0 {d} {r} {10 - r} t" for q, docs in ranked.items() for r, d in enumerate(docs, 1)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture()
def toy(tmp_path):
    """Six judged queries, five documents each; the relevant ``r`` third in the baseline, moved
    first by ``reranked`` (top 3 reordered) on five queries."""
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("".join(f"{q} 0 r{q} 1\n" for q in QUERIES))
    base = {q: [f"a{q}", f"b{q}", f"r{q}", f"c{q}", f"d{q}"] for q in QUERIES}
    moved = {q: [f"r{q}", f"a{q}", f"b{q}", f"c{q}", f"d{q}"] for q in QUERIES[:5]} | {"6": base["6"]}
    return str(qrels), write_run(tmp_path / "reranked.txt", moved), write_run(tmp_path / "base.txt", base)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = evaluate.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_qrels_then_run_as_trec_eval_and_ir_measures(toy, capsys):
    qrels, reranked, _ = toy
    code, out, err = run(capsys, qrels, reranked, "RR@10")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == f"queries: 6 judged, 6 of them in {reranked}"
    assert out.splitlines()[-1].split() == ["RR@10", f"{(5 + 1 / 3) / 6:.4f}"]


def test_the_old_order_is_refused_in_one_line_that_gives_the_order(toy, capsys):
    qrels, reranked, _ = toy
    code, out, err = run(capsys, reranked, qrels, "RR@10")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"error: {reranked} is a run and {qrels} the qrels: the order is QRELS RUN, as in trec_eval and "
        f"ir_measures: `python -m headrank_ir.evaluate {qrels} {reranked} …`"
    ]
    code, _, err = run(capsys, reranked, "dl19")  # qrels by Pyserini name, given second
    assert code == 1 and "the order is QRELS RUN" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, qrels, qrels)
    assert code == 1 and err.splitlines() == [
        f"error: {qrels} is qrels ('qid 0 docid grade'), not a run: the order is QRELS RUN, as in trec_eval and "
        "ir_measures"
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nDCG@0"], "error: measure 'nDCG@0' has cutoff 0; a cutoff counts ranks, from 1 (nDCG@10 …)"),
        (["--compare", "{base}", "--resamples", "0"], "error: --resamples must be at least 1, got 0"),
        (["--compare", "{base}", "--resamples=-1"], "error: --resamples must be at least 1, got -1"),
        (
            ["--plot", "x.png"],
            "error: --plot draws the per-query differences against --compare BASELINE; give --compare too",
        ),
    ],
)
def test_bad_measures_and_flags_are_refused_before_any_table(toy, capsys, argv, message):
    qrels, reranked, base = toy
    code, out, err = run(capsys, qrels, reranked, *(a.format(base=base) for a in argv))
    assert (code, out, err.splitlines()) == (1, "", [message])


def table_rows(out: str) -> dict[tuple[str, str], list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run "))
    return {(row.split()[0], row.split()[1]): row.split() for row in lines[header + 1 :] if row.strip()}


def test_compare_leaves_out_what_a_rerank_of_depth_d_cannot_change_and_adjusts_the_rest(toy, capsys):
    qrels, reranked, base = toy
    code, out, _ = run(capsys, qrels, reranked, "R@1", "R@3", "R@5", "RR@10", "--compare", base)
    assert code == 0
    assert (
        "not tested for reranked.txt: R@3, R@5 (it holds the baseline's documents in every top 3 or deeper, "
        "a rerank of depth 3, which cannot change them)"
    ) in out
    assert "adj: p-values adjusted by holm over the 2 tests" in out
    rows = table_rows(out)
    assert set(rows) == {("reranked.txt", "R@1"), ("reranked.txt", "RR@10")}
    raw = [float(rows[key][5]) for key in sorted(rows)]
    holm = multipletests(raw, method="holm")[1]
    assert [float(rows[key][7]) for key in sorted(rows)] == pytest.approx(holm, abs=1e-4)
    assert rows["reranked.txt", "R@1"][9] == "5/0/1"
    code, out, _ = run(capsys, qrels, reranked, "R@1", "RR@10", "--compare", base, "--correction", "none")
    assert all(row[5] == row[7] and row[6] == row[8] for row in table_rows(out).values())


def test_also_runs_join_the_family_of_tests(toy, capsys, tmp_path):
    qrels, reranked, base = toy
    other = write_run(tmp_path / "other.txt", {q: [f"b{q}", f"r{q}", f"a{q}", f"c{q}", f"d{q}"] for q in QUERIES})
    code, out, _ = run(capsys, qrels, reranked, "RR@10", "--compare", base, "--also", other)
    rows = table_rows(out)
    assert code == 0 and set(rows) == {("reranked.txt", "RR@10"), ("other.txt", "RR@10")}
    raw = [float(rows[key][5]) for key in sorted(rows)]
    holm = list(multipletests(raw, method="holm")[1])
    assert [float(rows[key][7]) for key in sorted(rows)] == pytest.approx(holm, abs=5e-4)


def test_the_plot_of_per_query_differences_is_a_png(toy, capsys, tmp_path):
    qrels, reranked, base = toy
    plot = tmp_path / "plots" / "diff.png"
    code, out, _ = run(capsys, qrels, reranked, "RR@10", "nDCG@10", "--compare", base, "--plot", plot)
    assert code == 0 and f"wrote the per-query differences to {plot}" in out
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_the_depth_the_runs_show():
    base = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}}
    assert same_documents_from({"q": {"b": 3.0, "a": 2.0, "c": 1.0, "d": 0.5}}, base, ["q"]) == 2
    assert same_documents_from({"q": {"c": 3.0, "a": 2.0, "b": 1.0, "d": 0.5}}, base, ["q"]) == 3
    assert same_documents_from(base, base, ["q"]) == 1
    assert same_documents_from({"q": {"a": 3.0, "b": 2.0, "c": 1.0, "e": 0.5}}, base, ["q"]) is None
    assert same_documents_from({"q": {"a": 3.0, "b": 2.0}}, base, ["q"]) is None  # cut short: not a reordering
    assert unchangeable("R@100", 20) and unchangeable("P@20", 20) and unchangeable("Success@30", 20)
    assert not unchangeable("R@10", 20) and not unchangeable("nDCG@100", 20) and not unchangeable("R@100", None)
    assert unchangeable("SetP", 5) and not unchangeable("AP", 5)
