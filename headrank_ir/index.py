"""Build the Lucene index reranking needs from a JSONL corpus (a file or a folder of files).

    python -m headrank_ir.index corpus.jsonl --index indexes/mine

Then ``python -m headrank_ir.rerank --index indexes/mine --topics … --output …`` searches it
with BM25 and reranks; see ``docs/own-collection.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from headrank_ir.command_helpers import positive_int, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m headrank_ir.index", description=__doc__.splitlines()[0])
    parser.add_argument(
        "corpus",
        help='JSONL file, or a folder of JSONL files, with {"id", "contents"} per line (BEIR\'s title + text too); '
        "every line is checked before indexing",
    )
    parser.add_argument("--index", required=True, help="index folder to create (its parent folders are created)")
    parser.add_argument("--threads", type=positive_int, default=1, help="indexing threads (default 1)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an index this command built earlier (once the new one is built); never another folder",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from headrank_ir.pipeline.index import build_index

    started = time.perf_counter()
    summary = build_index(args.corpus, args.index, threads=args.threads, overwrite=args.overwrite)
    print(f"indexed {summary.documents} documents into {summary.path} in {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(run, args, resume_hint="(an unfinished index is never left in place)")


if __name__ == "__main__":
    sys.exit(main())
