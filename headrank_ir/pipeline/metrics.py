"""Measures of runs against qrels, by ir_measures: the names users already know (``nDCG@10``,
``AP@100``, ``R@100``, ``RR@10``; trec_eval's ``ndcg_cut_10`` too)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ir_measures

from headrank_ir.errors import InputError
from headrank_ir.pipeline.readers import read_trec_run
from headrank_ir.pipeline.runfile import check_finished_run, read_results_jsonl

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


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, float]:
    """Mean of each measure, in the order asked, over every judged query (a judged query missing
    from the run counts as zero, as ir_measures does)."""
    parsed = _checked_measures(run, qrels, measures)
    values = ir_measures.calc_aggregate(parsed, qrels, run)
    return {str(measure): float(values[measure]) for measure in parsed}


def format_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """Measures down, runs across, four decimals."""
    names = list(next(iter(columns.values())))
    width = max(len("measure"), *(len(n) for n in names))
    lines = ["measure".ljust(width) + "".join(f"  {title:>10}" for title in columns)]
    for name in names:
        lines.append(name.ljust(width) + "".join(f"  {column[name]:>10.4f}" for column in columns.values()))
    return "\n".join(lines)


def per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, dict[str, float]]:
    """``{measure: {qid: value}}`` for every judged query, by ir_measures (a judged query missing
    from the run scores zero, so the values average to :func:`evaluate`'s means)."""
    parsed = _checked_measures(run, qrels, measures)
    values: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    for metric in ir_measures.iter_calc(parsed, qrels, run):
        values[str(metric.measure)][metric.query_id] = float(metric.value)
    return values


def format_per_query(values: Mapping[str, Mapping[str, float]]) -> str:
    """trec_eval ``-q`` style: ``measure<TAB>qid<TAB>value`` per query, then the ``all`` line."""
    lines = []
    for name, by_qid in values.items():
        ordered = sorted(by_qid, key=lambda q: (not q.isdigit(), int(q) if q.isdigit() else 0, q))
        lines += [f"{name}\t{qid}\t{by_qid[qid]:.4f}" for qid in ordered]
        lines.append(f"{name}\tall\t{sum(by_qid.values()) / len(by_qid):.4f}")
    return "\n".join(lines)
