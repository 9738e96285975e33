"""What the command modules share (this is no command itself): the first-stage and placement
flags, and logging, one-line errors and Ctrl-C around long work. Commands stay thin:
``build_parser()`` and ``main(argv) -> int``, calling the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from headrank_ir.engine.models import DEVICE_ENV, DTYPE_ENV, DTYPES
from headrank_ir.errors import USER_ERRORS, error_line
from headrank_ir.records import Request

OUT_OF_MEMORY = (
    "lower --batch-size or --batch-tokens, use a smaller model, or raise the memory limit (ulimit -v); "
    "run the same command again to resume"
)


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace, resume_hint: str) -> int:
    """Call ``run(args)``; bad input becomes one ``error:`` line and exit 1, Ctrl-C exit 130."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("headrank_ir").setLevel(logging.INFO)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume {resume_hint}", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(error_line(error), file=sys.stderr)
        return 1
    except MemoryError:  # e.g. under `ulimit -v`: one line, not a traceback from deep inside torch
        print(f"error: out of memory (MemoryError): {OUT_OF_MEMORY}", file=sys.stderr)
        return 1
    except ImportError as error:
        if "failed to map segment" not in str(error):  # a library that cannot be mapped: memory, not install
            raise
        print(f"error: out of memory loading a library ({error}): {OUT_OF_MEMORY}", file=sys.stderr)
        return 1


def positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def add_placement_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, as ``engine.models.resolve_placement`` reads them.

    Their defaults are ``$HEADRANK_DEVICE``/``$HEADRANK_DTYPE`` where set, as for ``load_model``.
    """
    group = parser.add_argument_group("device")
    group.add_argument(
        "--device",
        default=os.environ.get(DEVICE_ENV) or "auto",
        help="auto (the GPU where torch sees CUDA, else the CPU), cpu, cuda or cuda:N "
        "(default: $HEADRANK_DEVICE, else auto)",
    )
    group.add_argument(
        "--dtype",
        default=os.environ.get(DTYPE_ENV) or "auto",
        choices=DTYPES,
        help="model weights' precision; auto: bfloat16 on a GPU, and on a CPU with native bfloat16 "
        "(AVX512-BF16 or AMX), else float32 (default: $HEADRANK_DTYPE, else auto)",
    )


def add_first_stage_args(parser: argparse.ArgumentParser) -> None:
    """The first-stage flags, with ``pyserini.search.lucene``'s names and meanings where they overlap."""
    group = parser.add_argument_group("first stage (either --index, or --run with --corpus)")
    group.add_argument(
        "--topics",
        required=True,
        help="topics file (.tsv qid<TAB>text, .jsonl, .json, .trec) or name (dl19, dl20, msmarco, scifact, …); "
        "with --run it may name a subset of the run's queries",
    )
    group.add_argument(
        "--index", help="Lucene index: a local folder or a Pyserini prebuilt name/alias (msmarco, dl19, scifact, …)"
    )
    group.add_argument("--run", help="first-stage TREC run to rerank instead of searching (needs --corpus)")
    group.add_argument("--corpus", help="JSONL with the passage texts of --run ({'id', 'contents'} per line)")
    group.add_argument(
        "--bm25", action="store_true", help="BM25 first stage (the only one; the default, as in Pyserini)"
    )
    group.add_argument(
        "--k1",
        type=float,
        help="BM25 k1; give with --b. Default as Pyserini: 0.82 (b 0.68) for MS MARCO v1 passage, else 0.9 (b 0.4)",
    )
    group.add_argument("--b", type=float, help="BM25 b; give with --k1")
    group.add_argument(
        "--hits",
        type=positive_int,
        default=100,
        help="first-stage hits per query (default 100, where Pyserini's search defaults to 1000: a reranker reads "
        "the top 100 at most)",
    )
    group.add_argument("--threads", type=positive_int, default=1, help="BM25 search threads, as Pyserini (default 1)")
    group.add_argument("--max-queries", type=positive_int, help="only the first N queries of --topics")


def requests_from_args(args: argparse.Namespace) -> list[Request]:
    """The first-stage candidates the flags of :func:`add_first_stage_args` ask for, one request per query."""
    from headrank_ir.pipeline.firststage import first_stage_requests

    return first_stage_requests(
        args.topics,
        index=args.index,
        run=args.run,
        corpus=args.corpus,
        k1=args.k1,
        b=args.b,
        hits=args.hits,
        threads=args.threads,
        max_queries=args.max_queries,
    )
