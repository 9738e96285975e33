"""Evaluate runs with ir_measures: ``python -m headrank_ir.evaluate RUN QRELS [measures…]``.

RUN is a TREC run or a rank_llm-style JSONL file (``.jsonl``); QRELS is a TREC qrels file or a
Pyserini qrels name (``dl19`` …). Measures use ir_measures' names (``nDCG@10``, ``AP@100`` —
MAP@100 once averaged —, ``R@100``, ``RR@10`` …); trec_eval's names (``ndcg_cut_10``) work too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import ir_measures

from .inputs import USER_ERRORS, InputError, error_line, read_qrels, read_trec_run
from .runfile import read_results_jsonl

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
    return {
        str(r.query.qid): {str(c.docid): float(c.score) for c in r.candidates}
        for r in results
    }


def read_run_scores(path: str, output_format: str | None = None) -> RunScores:
    """A run as ir_measures reads it: ``trec`` or ``jsonl`` (rank_llm-style results); by default
    ``.jsonl`` files are JSONL and anything else TREC."""
    if (
        output_format or ("jsonl" if Path(path).suffix == ".jsonl" else "trec")
    ) == "jsonl":
        return scores_of(read_results_jsonl(path))
    run = read_trec_run(path)
    return {
        qid: {hit.docid: hit.score for hit in hits} for qid, hits in run.hits.items()
    }


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels,
    measures: Sequence[str] = DEFAULT_MEASURES,
) -> dict[str, float]:
    """Mean of each measure, in the order asked, over every judged query (a judged query missing
    from the run counts as zero, as ir_measures does)."""
    if not set(run) & set(qrels):
        raise InputError(
            "no query of the run has judgements in the qrels: are they for the same topics?"
        )
    parsed = parse_measures(measures)
    values = ir_measures.calc_aggregate(parsed, qrels, run)
    return {str(measure): float(values[measure]) for measure in parsed}


def format_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """Measures down, runs across, four decimals."""
    names = list(next(iter(columns.values())))
    width = max(len("measure"), *(len(n) for n in names))
    lines = ["measure".ljust(width) + "".join(f"  {title:>10}" for title in columns)]
    for name in names:
        lines.append(
            name.ljust(width)
            + "".join(f"  {column[name]:>10.4f}" for column in columns.values())
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m headrank_ir.evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run", help="TREC run file, or rank_llm-style results (.jsonl)")
    parser.add_argument(
        "qrels", help="TREC qrels file or Pyserini qrels name (dl19, dl20, scifact, …)"
    )
    parser.add_argument(
        "measures",
        nargs="*",
        default=list(DEFAULT_MEASURES),
        help=f"default: {' '.join(DEFAULT_MEASURES)}",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        values = evaluate(
            read_run_scores(args.run), read_qrels(args.qrels), args.measures
        )
    except USER_ERRORS as error:
        print(error_line(error), file=sys.stderr)
        return 1
    print(format_table({"value": values}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
