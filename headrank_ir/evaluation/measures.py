"""Measures of runs against qrels, by ir_measures: the names users already know (``nDCG@10``,
``AP@100``, ``R@100``, ``RR@10``; trec_eval's ``ndcg_cut_10`` too), as means or per query."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ir_measures

from headrank_ir.errors import InputError
from headrank_ir.pipeline.journal import check_finished_run
from headrank_ir.pipeline.readers import read_trec_run
from headrank_ir.pipeline.runfile import read_results_jsonl

DEFAULT_MEASURES = ("nDCG@10", "AP@100", "R@100", "RR@10")

RunScores = dict[str, dict[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def parse_measures(names: Iterable[str]) -> list[ir_measures.Measure]:
    measures: list[ir_measures.Measure] = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError):
            try:
                measures.extend(ir_measures.parse_trec_measure(name))
            except (ValueError, NameError, KeyError):
                raise InputError(
                    f"unknown measure {name!r}; use ir_measures names such as {', '.join(DEFAULT_MEASURES)}"
                ) from None
    return measures


def scores_of(results: Iterable) -> RunScores:
    """``{qid: {docid: score}}`` from ``Result``/``Request``-shaped objects."""
    return {str(r.query.qid): {str(c.docid): float(c.score) for c in r.candidates} for r in results}


def read_run_scores(path: str, output_format: str | None = None) -> RunScores:
    """A run as ir_measures reads it: ``trec`` or ``jsonl`` (rank_llm-style results); by default
    ``.jsonl`` files are JSONL and anything else TREC."""
    check_finished_run(path)
    if (output_format or ("jsonl" if Path(path).suffix == ".jsonl" else "trec")) == "jsonl":
        return scores_of(read_results_jsonl(path))
    run = read_trec_run(path)
    return {qid: {hit.docid: hit.score for hit in hits} for qid, hits in run.hits.items()}


def _checked_measures(run: Mapping[str, Any], qrels: Qrels, measures: Sequence[str]) -> list[ir_measures.Measure]:
    """The parsed ``measures``, once the run is known to share queries with the qrels."""
    if not set(run) & set(qrels):
        raise InputError("no query of the run has judgements in the qrels: are they for the same topics?")
    return parse_measures(measures)


def mean_measures(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, float]:
    """Mean of each measure, in the order asked, over every judged query (a judged query missing
    from the run counts as zero, as ir_measures does)."""
    parsed = _checked_measures(run, qrels, measures)
    values = ir_measures.calc_aggregate(parsed, qrels, run)
    return {str(measure): float(values[measure]) for measure in parsed}


def per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, dict[str, float]]:
    """``{measure: {qid: value}}`` for every judged query, by ir_measures (a judged query missing
    from the run scores zero, so the values average to :func:`mean_measures`)."""
    parsed = _checked_measures(run, qrels, measures)
    values: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    for metric in ir_measures.iter_calc(parsed, qrels, run):
        values[str(metric.measure)][metric.query_id] = float(metric.value)
    return values
