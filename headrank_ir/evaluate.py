"""Evaluate runs with ir_measures: ``python -m headrank_ir.evaluate QRELS RUN [measures…]``.

QRELS (first, as in trec_eval and ir_measures) is a TREC qrels file or a Pyserini qrels name
(``dl19`` …); RUN is a TREC run or a rank_llm-style JSONL file (``.jsonl``). The two given the
other way round are refused with the order to use. Measures use ir_measures' names (``nDCG@10``,
``AP@100`` — MAP@100 once averaged —, ``R@100``, ``RR@10`` …); trec_eval's names
(``ndcg_cut_10``) work too. Means are over every judged query; a judged query missing from a
run scores zero.

    python -m headrank_ir.evaluate qrels.txt run.headrank.txt -q                 # per query too
    python -m headrank_ir.evaluate qrels.txt run.headrank.txt --compare run.bm25.txt --plot diff.png

``--compare BASELINE`` tests RUN (and each ``--also`` run) against the baseline, query by
query, on the judged queries that any of the runs holds: mean difference, two-sided paired
randomisation and t-test p-values, the same adjusted for the table's number of tests
(``--correction``, Holm by default), wins/losses/ties. A measure that the runs cannot differ on
(``R@100`` when they reorder only the baseline's top 100: the same documents in every top k from
there on) is left out of the tests, and said so. ``--plot FILE`` draws each tested run's
per-query differences (PNG).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from headrank_ir.errors import USER_ERRORS, InputError, error_line
from headrank_ir.evaluation.measures import (
    DEFAULT_MEASURES,
    parse_measures,
    per_query,
    read_run_scores,
    same_documents_from,
    unchangeable,
)
from headrank_ir.evaluation.significance import CORRECTIONS, compare_runs
from headrank_ir.evaluation.tables import comparison_table, format_per_query, format_table
from headrank_ir.pipeline.names import read_qrels
from headrank_ir.pipeline.readers import iter_lines, split_fields

PROG = "python -m headrank_ir.evaluate"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n\n")[2:]),
    )
    parser.add_argument("qrels", help="TREC qrels file or Pyserini qrels name (dl19, dl20, scifact, …)")
    parser.add_argument("run", help="TREC run file, or rank_llm-style results (.jsonl)")
    parser.add_argument(
        "measures",
        nargs="*",
        default=list(DEFAULT_MEASURES),
        help=f"default: {' '.join(DEFAULT_MEASURES)}",
    )
    parser.add_argument(
        "-q", "--per-query", action="store_true", help="also print RUN's value for each query (trec_eval -q style)"
    )
    compare = parser.add_argument_group("comparison")
    compare.add_argument("--compare", metavar="BASELINE", help="test RUN against this baseline run, query by query")
    compare.add_argument(
        "--also", action="append", default=[], metavar="RUN", help="another run to test against --compare (repeatable)"
    )
    compare.add_argument(
        "--resamples", type=int, default=10000, help="randomisation test resamples (default 10000, seed 0)"
    )
    compare.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default="holm",
        help="adjust the p-values for the table's number of tests (runs × measures) with statsmodels: holm "
        "(default; family-wise error), bonferroni, fdr_bh (false discovery rate), none",
    )
    compare.add_argument("--plot", metavar="FILE", help="draw each tested run's per-query differences to FILE (PNG)")
    return parser


def _labels(paths: Sequence[str]) -> dict[str, str]:
    """File names as row labels, whole paths where two runs share a name."""
    names = [Path(p).name for p in paths]
    return {p: (n if names.count(n) == 1 else p) for p, n in zip(paths, names)}


def file_kind(spec: str) -> str | None:
    """``"qrels"`` or ``"run"`` as the file's first line shows it (4 or 6 fields; ``.jsonl`` is a
    run), None when it is not a readable file (a Pyserini name) or shows neither."""
    path = Path(spec)
    if not path.is_file():
        return None
    if path.suffix == ".jsonl":
        return "run"
    try:
        for _, line in iter_lines(path):
            if line.strip():
                return {4: "qrels", 6: "run"}.get(len(split_fields(line)))
    except (InputError, OSError):
        return None
    return None


def check_order(qrels: str, run: str) -> None:
    """Refuse a run given as QRELS or qrels given as RUN (trec_eval's order is QRELS RUN; this
    command's was the other way round), in one line that says the order to use."""
    order = "the order is QRELS RUN, as in trec_eval and ir_measures"
    if file_kind(qrels) == "run":
        if file_kind(run) == "qrels" or not Path(run).is_file():  # swapped (qrels may be a Pyserini name)
            raise InputError(f"{qrels} is a run and {run} the qrels: {order}: `{PROG} {run} {qrels} …`")
        raise InputError(f"{qrels} is a run ('qid Q0 docid rank score tag'), not qrels: {order}")
    if file_kind(run) == "qrels":
        raise InputError(f"{run} is qrels ('qid 0 docid grade'), not a run: {order}")


def check_flags(args: argparse.Namespace) -> None:
    """Everything the flags alone can refuse, before any file is read or anything printed."""
    if args.also and not args.compare:
        raise InputError("--also names runs to test against --compare BASELINE; give --compare too")
    if args.plot and not args.compare:
        raise InputError("--plot draws the per-query differences against --compare BASELINE; give --compare too")
    if args.resamples < 1:
        raise InputError(f"--resamples must be at least 1, got {args.resamples}")
    parse_measures(args.measures)
    check_order(args.qrels, args.run)


def run(args: argparse.Namespace) -> None:
    check_flags(args)
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
    paths = [args.run, *args.also]
    labels = _labels(paths)
    runs, left_out = {}, []
    for path in paths:
        depth = same_documents_from(scores[path], scores[args.compare], judged)
        fixed = [m for m in values[path] if unchangeable(m, depth)]
        if fixed:
            left_out.append(
                f"not tested for {labels[path]}: {', '.join(fixed)} (it holds the baseline's documents in every top "
                f"{depth} or deeper, a rerank of depth {depth}, which cannot change them)"
            )
        runs[labels[path]] = {m: v for m, v in values[path].items() if m not in fixed}
    tested = compare_runs({k: v for k, v in runs.items() if v}, values[args.compare], args.resamples, args.correction)
    adjusted = (
        "as is (--correction none)"
        if args.correction == "none"
        else f"by {args.correction} over the {len(tested)} tests"
    )
    print(
        f"\nagainst {args.compare} on the {len(judged)} judged queries the runs hold "
        f"(two-sided tests; adj: p-values adjusted {adjusted}):"
    )
    for line in left_out:
        print(line)
    if tested:
        print(comparison_table(tested))
    if args.plot:
        from headrank_ir.bench.plots import per_query_differences

        written = per_query_differences(tested, Path(args.compare).name, Path(args.plot))
        print(f"wrote the per-query differences to {written}")


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
