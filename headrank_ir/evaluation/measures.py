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
# Measures of which documents lie above the cutoff, blind to their order there: reordering only
# the top d of a run leaves them unchanged at every cutoff of d or more.
ORDER_BLIND = frozenset({"P", "R", "Success", "Judged", "NumRet", "SetP", "SetR", "SetF", "SetAP"})

RunScores = dict[str, dict[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def parse_measures(names: Iterable[str]) -> list[ir_measures.Measure]:
    """ir_measures' measures for ``names`` (theirs or trec_eval's); an unknown name or a cutoff
    below 1 (``nDCG@0`` aborts trec_eval's C code, and the whole process with it) is refused."""
    measures: list[ir_measures.Measure] = []
    for name in names:
        try:
            parsed = [ir_measures.parse_measure(name)]
        except (ValueError, NameError):
            try:
                parsed = list(ir_measures.parse_trec_measure(name))
            except (ValueError, NameError, KeyError):
                raise InputError(
                    f"unknown measure {name!r}; use ir_measures names such as {', '.join(DEFAULT_MEASURES)}"
                ) from None
        for measure in parsed:
            if (cut := cutoff(measure)) is not None and cut < 1:
                raise InputError(f"measure {name!r} has cutoff {cut}; a cutoff counts ranks, from 1 (nDCG@10 …)")
        measures.extend(parsed)
    return measures


def cutoff(measure: ir_measures.Measure | str) -> int | None:
    """The rank cutoff of a measure (``10`` for ``nDCG@10``), None for the whole ranking."""
    if isinstance(measure, str):
        measure = ir_measures.parse_measure(measure)
    value = measure.params.get("cutoff")
    return int(value) if isinstance(value, int) else None


def unchangeable(measure: str, depth: int | None) -> bool:
    """Whether ``measure`` cannot tell apart two runs whose every top k, for k >= ``depth``, holds
    the same documents (a rerank of the top ``depth``): an order-blind measure at a cutoff of
    ``depth`` or more (``R@100`` after reranking the top 100). None: the runs differ as wholes."""
    if depth is None:
        return False
    parsed = ir_measures.parse_measure(measure)
    cut = cutoff(parsed)
    return parsed.NAME in ORDER_BLIND and (cut is None or cut >= depth)


def _trec_eval_order(scores: Mapping[str, float]) -> list[str]:
    """Docids as trec_eval ranks them: score descending, ties by docid descending."""
    return [docid for docid, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def same_documents_from(run: RunScores, baseline: RunScores, qids: Iterable[str]) -> int | None:
    """The smallest ``k0`` such that, on every query of ``qids``, each top k of ``run`` with
    k >= k0 holds the same documents as the baseline's: the depth of a rerank, as the two runs
    show it. None when some query's whole list differs (not a reordering of the baseline)."""
    deepest = 1
    for qid in qids:
        a, b = _trec_eval_order(run.get(qid, {})), _trec_eval_order(baseline.get(qid, {}))
        apart: set[str] = set()  # documents in one top k and not the other
        last_apart = 0
        for k in range(1, max(len(a), len(b)) + 1):
            for docid in a[k - 1 : k] + b[k - 1 : k]:
                apart ^= {docid}
            if apart:
                last_apart = k
        if apart:
            return None
        deepest = max(deepest, last_apart + 1)
    return deepest


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
