"""Evaluate runs with ir_measures: ``python -m headrank_ir.evaluate RUN QRELS [measures…]``.

RUN is a TREC run or a rank_llm-style JSONL file (``.jsonl``); QRELS is a TREC qrels file or a
Pyserini qrels name (``dl19`` …). Measures use ir_measures' names (``nDCG@10``, ``AP@100`` —
MAP@100 once averaged —, ``R@100``, ``RR@10`` …); trec_eval's names (``ndcg_cut_10``) work too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from headrank_ir.pipeline.errors import USER_ERRORS, error_line
from headrank_ir.pipeline.metrics import DEFAULT_MEASURES, evaluate, format_table, read_run_scores
from headrank_ir.pipeline.names import read_qrels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m headrank_ir.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="TREC run file, or rank_llm-style results (.jsonl)")
    parser.add_argument("qrels", help="TREC qrels file or Pyserini qrels name (dl19, dl20, scifact, …)")
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
        values = evaluate(read_run_scores(args.run), read_qrels(args.qrels), args.measures)
    except USER_ERRORS as error:
        print(error_line(error), file=sys.stderr)
        return 1
    print(format_table({"value": values}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
