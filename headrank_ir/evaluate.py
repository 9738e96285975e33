"""Evaluate runs with ir_measures: ``python -m headrank_ir.evaluate RUN QRELS [measures…]``.

RUN is a TREC run or a rank_llm-style JSONL file (``.jsonl``); QRELS is a TREC qrels file or a
Pyserini qrels name (``dl19`` …). Measures use ir_measures' names (``nDCG@10``, ``AP@100`` —
MAP@100 once averaged —, ``R@100``, ``RR@10`` …); trec_eval's names (``ndcg_cut_10``) work too.
Means are over every judged query; a judged query missing from a run scores zero.

    python -m headrank_ir.evaluate run.headrank.txt qrels.txt -q                 # per query too
    python -m headrank_ir.evaluate run.headrank.txt qrels.txt --compare run.bm25.txt

``--compare BASELINE`` tests RUN (and each ``--also`` run) against the baseline, query by
query, on the judged queries that any of the runs holds: mean difference, two-sided paired
randomisation and t-test p-values, wins/losses/ties.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from headrank_ir.errors import USER_ERRORS, error_line
from headrank_ir.evaluation.measures import DEFAULT_MEASURES, per_query, read_run_scores
from headrank_ir.evaluation.tables import comparison_table, format_per_query, format_table
from headrank_ir.pipeline.names import read_qrels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m headrank_ir.evaluate",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n\n")[2:]),
    )
    parser.add_argument("run", help="TREC run file, or rank_llm-style results (.jsonl)")
    parser.add_argument("qrels", help="TREC qrels file or Pyserini qrels name (dl19, dl20, scifact, …)")
    parser.add_argument(
        "measures",
        nargs="*",
        default=list(DEFAULT_MEASURES),
        help=f"default: {' '.join(DEFAULT_MEASURES)}",
    )
    parser.add_argument(
        "-q", "--per-query", action="store_true", help="also print RUN's value for each query (trec_eval -q style)"
    )
    parser.add_argument("--compare", metavar="BASELINE", help="test RUN against this baseline run, query by query")
    parser.add_argument(
        "--also", action="append", default=[], metavar="RUN", help="another run to test against --compare (repeatable)"
    )
    parser.add_argument(
        "--resamples", type=int, default=10000, help="randomisation test resamples (default 10000, seed 0)"
    )
    return parser


def _labels(paths: Sequence[str]) -> dict[str, str]:
    """File names as row labels, whole paths where two runs share a name."""
    names = [Path(p).name for p in paths]
    return {p: (n if names.count(n) == 1 else p) for p, n in zip(paths, names)}


def run(args: argparse.Namespace) -> None:
    if args.also and not args.compare:
        raise ValueError("--also names runs to test against --compare BASELINE; give --compare too")
    qrels = read_qrels(args.qrels)
    scores = read_run_scores(args.run)
    values = per_query(scores, qrels, args.measures)
    print(f"queries: {len(qrels)} judged, {len(set(scores) & set(qrels))} of them in {args.run}")
    if args.per_query:
        print(format_per_query(values))
    print(format_table({"value": {m: sum(v.values()) / len(v) for m, v in values.items()}}))
    if args.compare:
        _print_comparison(args, qrels, {args.run: scores})


def _print_comparison(args: argparse.Namespace, qrels, scores: dict) -> None:
    """The comparison table over the judged queries that at least one run holds: a query no run
    was asked (a --max-queries trial) would only add ties at zero."""
    scores |= {path: read_run_scores(path) for path in [*args.also, args.compare]}
    asked = set(qrels) & set().union(*scores.values())
    judged = {qid: qrels[qid] for qid in asked}
    values = {path: per_query(run, judged, args.measures) for path, run in scores.items()}
    labels = _labels([args.run, *args.also])
    runs = {labels[path]: values[path] for path in [args.run, *args.also]}
    print(f"\nagainst {args.compare} on the {len(judged)} judged queries the runs hold (two-sided tests):")
    print(comparison_table(runs, values[args.compare], args.resamples))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # -q may come between the run and the measures
    try:
        run(args)
    except USER_ERRORS as error:
        print(error_line(error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
