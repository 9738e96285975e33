"""The bench's parts on constructed inputs: RankGPT answers, windows, significance, options."""

from __future__ import annotations

import math

import pytest

from headrank_ir.bench.baselines.rankgpt import parse_permutation, windows
from headrank_ir.bench.cli import parse_max_queries
from headrank_ir.bench.methods import qrhead_profile
from headrank_ir.bench.report import COLUMNS, SIGNIFICANCE_REFERENCES, significance_marks, to_csv, to_markdown
from headrank_ir.evaluation.significance import compare


def test_a_clean_answer_is_a_full_permutation():
    p = parse_permutation("[3] > [1] > [2]", 3)
    assert p.order == [2, 0, 1]
    assert p.full and p.appended == 0 and p.ignored == 0


def test_missing_ids_are_appended_in_original_order():
    p = parse_permutation("[4] > [2]", 5)
    assert p.order == [3, 1, 0, 2, 4]
    assert not p.full and p.appended == 3


def test_duplicates_and_out_of_range_ids_are_ignored_not_trusted():
    p = parse_permutation("The ranking is [2] > [2] > [9] > [1] > [0]", 3)
    assert p.order == [1, 0, 2]
    assert not p.full and p.appended == 1 and p.ignored == 3


def test_an_answer_without_ids_keeps_the_window_as_it_was():
    p = parse_permutation("I cannot rank these passages.", 4)
    assert p.order == [0, 1, 2, 3] and p.appended == 4 and not p.full


def test_windows_slide_from_the_back_and_always_reach_the_top():
    assert windows(30, 20, 10) == [(10, 30), (0, 20)]
    assert windows(20, 20, 10) == [(0, 20)]
    assert windows(5, 20, 10) == [(0, 5)]
    # 25 - 20 is not a multiple of the step: the last window is clamped to start at 0
    assert windows(25, 20, 10) == [(5, 25), (0, 15)]


def test_a_consistent_gain_is_significant_and_no_gain_is_not():
    base = {str(q): 0.3 + 0.01 * (q % 7) for q in range(30)}
    better = {q: v + 0.1 + 0.002 * (int(q) % 3) for q, v in base.items()}
    gain = compare(better, base)
    assert gain.queries == 30 and gain.mean_difference == pytest.approx(0.102, abs=1e-3)
    assert gain.p_randomisation < 0.001 and gain.p_ttest < 0.001
    noise = {q: v + (0.05 if int(q) % 2 else -0.05) for q, v in base.items()}
    assert compare(noise, base).p_randomisation > 0.5
    same = compare(base, base)
    assert same.p_randomisation == 1.0 and same.mean_difference == 0.0


def test_significance_pairs_only_common_queries():
    one = compare({"a": 1.0, "b": 0.0}, {"b": 0.5, "c": 0.0})
    assert one.queries == 1 and one.mean_difference == -0.5
    assert math.isnan(one.p_randomisation)  # a single pair cannot be tested
    with pytest.raises(ValueError, match="share no query"):
        compare({"a": 1.0}, {"b": 1.0})


def test_max_queries_applies_to_all_or_to_named_datasets():
    names = ["dl19", "cranfield"]
    assert parse_max_queries(["5"], names) == {"dl19": 5, "cranfield": 5}
    assert parse_max_queries(["cranfield=50"], names) == {"dl19": None, "cranfield": 50}
    with pytest.raises(ValueError, match="unknown dataset"):
        parse_max_queries(["msmarco=3"], names)
    with pytest.raises(ValueError, match="positive integer"):
        parse_max_queries(["cranfield=0"], names)


def test_qrhead_keeps_the_k_best_heads_with_equal_weights():
    quality = {"0.0": 0.1, "1.2": 0.5, "3.1": 0.4, "2.0": 0.3}
    profile = qrhead_profile("m", quality, k=2)
    assert [(layer, head) for layer, head, _ in profile.heads] == [(1, 2), (3, 1)]
    assert {w for _, _, w in profile.heads} == {0.5}
    assert profile.depth == 4


def test_csv_has_exactly_the_agreed_columns_and_blanks_for_missing_values():
    row = dict.fromkeys(COLUMNS)
    row.update(method="bm25", dataset="dl19", queries=43, ndcg_cut_10=0.50576)
    header, line = to_csv([row]).splitlines()
    assert header == (
        "method,dataset,queries,ndcg_cut_10,map_100,recall_100,rr_10,sel_rel,sel_irr,sel_gap,"
        "s_per_query,passages_per_s,forward_passes,peak_rss_mb,format_success"
    )
    assert line == "bm25,dl19,43,0.5058" + "," * 11


def _record(method: str, dataset: str, offset: float, load: float | None = None) -> dict:
    """A finished cell whose per-query nDCG@10 is a fixed base shifted by ``offset`` on average
    (by half, once, one and a half times and once ``offset``: the differences are not constant)."""
    bases = {"1": (0.2, 0.5), "2": (0.5, 1.0), "3": (0.7, 1.5), "4": (0.1, 1.0)}
    per_query = {q: base + weight * offset for q, (base, weight) in bases.items()}
    record = {
        "method": method,
        "dataset": dataset,
        "queries": len(per_query),
        "measures": {"ndcg_cut_10": sum(per_query.values()) / 4, "map_100": 0.1, "recall_100": 0.5, "rr_10": 0.3},
        "per_query_ndcg_cut_10": per_query,
        "cost": {"s_per_query": 1.0, "passages_per_s": 20.0, "forward_passes": 2.0, "peak_rss_mb": 900.0},
    }
    if load is not None:
        record["cost"] |= {"load_average_max": load, "cpus": 2}
    return record


# every method shifted by its own amount: a Δ names the reference it was taken against
OFFSETS = {"bm25": 0.0, "icr": 0.01, "headrank-select": 0.03, "headrank": 0.07, "headrank-default": 0.15}


def _table(markdown: str, dataset: str) -> dict[str, dict[str, str]]:
    """``method -> {header: cell}`` for one dataset's table of ``to_markdown``."""
    lines = markdown.split(f"## {dataset}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    return {r["method"]: r for r in rows}


def test_each_significance_column_compares_against_its_own_reference():
    records = [_record(m, "dl19", offset) for m, offset in OFFSETS.items()]
    records += [_record(m, "dl20", OFFSETS[m]) for m in ("bm25", "headrank-default")]  # no ICR nor old profiles
    assert [r for r, _ in SIGNIFICANCE_REFERENCES] == ["bm25", "icr", "headrank-select", "headrank"]
    table = _table(to_markdown(records, ["dl19", "dl20"], [], [], ""), "dl19")
    for method, offset in OFFSETS.items():
        for reference, header in SIGNIFICANCE_REFERENCES:
            cell = table[method][header]
            if reference == method:
                assert cell == "", (method, header)  # no row against itself
            else:
                # every query moves the same way: p is the smallest two-sided one, 2/16
                assert cell == f"{offset - OFFSETS[reference]:+.4f} (p=0.125)", (method, header)
    dl20 = _table(to_markdown(records, ["dl19", "dl20"], [], [], ""), "dl20")
    assert [dl20["headrank-default"][h] for _, h in SIGNIFICANCE_REFERENCES] == ["+0.1500 (p=0.125)", "", "", ""]
    marks = significance_marks(records)
    assert marks["headrank-default", "dl19"] == [
        "+0.1500 (p=0.125)",
        "+0.1400 (p=0.125)",
        "+0.1200 (p=0.125)",
        "+0.0800 (p=0.125)",
    ]


def test_the_load_a_cell_was_timed_under_is_noted_and_a_shared_cpu_is_flagged():
    records = [_record("bm25", "dl19", 0.0), _record("headrank-default", "dl19", 0.1, load=1.9)]
    records.append(_record("headrank-default", "dl20", 0.1, load=4.5))
    markdown = to_markdown(records, ["dl19", "dl20"], ["a standing note"], [], "")
    notes = markdown.split("## Notes\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert notes == [
        "- a standing note",
        "- `headrank-default` on dl19: load average up to 1.9 on 2 CPUs",
        "- `headrank-default` on dl20: load average up to 4.5 on 2 CPUs"
        " (shared with other jobs: its times overstate an idle run)",
    ]


def test_a_heads_own_ranking_merges_windows_as_the_ranker_does():
    from headrank_ir.bench.cells import head_results
    from headrank_ir.bench.datasets import Loaded
    from headrank_ir.bench.methods import Ranking
    from headrank_ir.records import Candidate, Invocation, Query, Request, Result

    request = Request(Query("q", "1"), [Candidate(f"d{i}", 10.0 - i, {"contents": "x"}) for i in range(6)])
    history = [  # two windows of the top 4; two heads each
        Invocation(["d0", "d1", "d2"], [2, 1, 0], [[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]], 2),
        Invocation(["d3"], [0], [[5.0], [0.0]], 2),
    ]
    loaded = Loaded([request], {"1": {}})
    rankings = [Ranking(Result(request.query, [], history))]

    def order(head):
        (result,) = head_results(loaded, rankings, head)
        return [c.docid for c in sorted(result.candidates, key=lambda c: -c.score)]

    # a later window never outranks an earlier one, however high its score; the rest stays below
    assert order(0) == ["d1", "d2", "d0", "d3", "d4", "d5"]
    assert order(1) == ["d0", "d1", "d2", "d3", "d4", "d5"]


def test_head_labels_round_trip_and_bad_ones_are_named():
    from headrank_ir.engine.profile import head_label, parse_head_label

    assert parse_head_label(head_label(12, 3)) == (12, 3) and head_label(0, 7) == "0.7"
    for bad in ("12", "12.x", "1.2.3", ""):
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            parse_head_label(bad)


def test_the_first_stage_keeps_its_given_order_where_rounded_scores_tie():
    from headrank_ir.bench.methods import FirstStage
    from headrank_ir.evaluation.measures import mean_measures, scores_of
    from headrank_ir.records import Candidate, Query, Request

    # "a" ranked first by the first stage; with equal scores trec_eval would put "b" first
    request = Request(Query("q", "1"), [Candidate("a", 7.25), Candidate("b", 7.25)])
    qrels = {"1": {"a": 1}}
    ranked = FirstStage().ranking(request).result
    assert [c.docid for c in ranked.candidates] == ["a", "b"]
    assert mean_measures(scores_of([ranked]), qrels, ["nDCG@10"])["nDCG@10"] == pytest.approx(1.0)
    assert mean_measures(scores_of([request]), qrels, ["nDCG@10"])["nDCG@10"] < 1.0  # the tie, read by score


def test_the_dl20_bm25_run_in_its_given_order_scores_the_published_figure():
    from headrank_ir.bench.datasets import DATASETS, default_data_root
    from headrank_ir.evaluation.measures import mean_measures, scores_of
    from headrank_ir.pipeline.readers import read_qrels_file, read_trec_run
    from headrank_ir.records import Candidate, Query, Request, in_given_order

    dl20 = DATASETS["dl20"]
    run = read_trec_run(dl20.path(default_data_root(), dl20.bm25_run)).hits
    requests = [Request(Query("", qid), [Candidate(h.docid, h.score) for h in hits]) for qid, hits in run.items()]
    qrels = read_qrels_file(dl20.path(default_data_root(), dl20.qrels))
    given = mean_measures(scores_of(map(in_given_order, requests)), qrels, ["nDCG@10"])["nDCG@10"]
    by_score = mean_measures(scores_of(requests), qrels, ["nDCG@10"])["nDCG@10"]
    assert round(given, 4) == 0.4796  # Pyserini's published BM25 figure for DL20
    assert round(by_score, 4) == 0.4803  # the 4-decimal scores' ties broken by docid


def test_the_cost_axis_spans_whole_decades_so_its_labels_are_where_they_say():
    from headrank_ir.bench.plots import decade_limits

    assert decade_limits(3.82, 6.29) == pytest.approx((1.0, 10.0))  # qwen's DL panels: two points in one decade
    assert decade_limits(0.38, 8.1) == pytest.approx((0.1, 10.0))
    assert decade_limits(0.009, 0.02) == pytest.approx((0.001, 0.1))
