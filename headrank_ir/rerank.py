"""Rerank a first stage with HeadRank and write a TREC (or rank_llm JSONL) run.

    python -m headrank_ir.rerank --index msmarco --topics dl19 --output runs/run.dl19.headrank.txt
    python -m headrank_ir.rerank --run run.bm25.txt --corpus corpus.jsonl --topics topics.tsv \\
        --qrels qrels.txt --output runs/run.headrank.txt

The run is written query by query and resumes after an interruption (see ``runfile``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from headrank_ir.command_helpers import (
    add_first_stage_args,
    add_placement_args,
    positive_int,
    requests_from_args,
    run_command,
)
from headrank_ir.engine.checks import preflight
from headrank_ir.engine.models import DEFAULT_MODEL
from headrank_ir.engine.profile import HeadProfile, resolve_profile
from headrank_ir.errors import InputError
from headrank_ir.evaluation.measures import DEFAULT_MEASURES
from headrank_ir.evaluation.tables import gain_table
from headrank_ir.outputs import guard_file
from headrank_ir.pipeline.distributed import check_ray_address
from headrank_ir.pipeline.execution import RankerSettings, rerank_pending
from headrank_ir.pipeline.names import read_qrels
from headrank_ir.pipeline.runfile import FORMATS, RunWriter, run_header, write_trec_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m headrank_ir.rerank",
        description="Rerank first-stage results with the attention of selected heads of a causal LM.",
    )
    add_first_stage_args(parser)
    model = parser.add_argument_group("reranking")
    model.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"short name, folder or Hugging Face id (default {DEFAULT_MODEL})",
    )
    model.add_argument(
        "--profile",
        help="head profile JSON or folder, or 'icr' for every head with equal weights (default: the profile "
        "shipped for --model, else 'icr')",
    )
    model.add_argument(
        "--allow-profile-model-mismatch",
        action="store_true",
        help="run a --profile made for another model than --model (refused by default: its heads were chosen there)",
    )
    model.add_argument(
        "--depth",
        type=positive_int,
        default=100,
        help="rerank this many top hits; the rest keep their order below (default 100)",
    )
    model.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        help="queries read in shared forwards (default 1)",
    )
    model.add_argument(
        "--batch-tokens",
        type=positive_int,
        help="padded tokens per forward (default 8192 on the CPU, 65536 on a GPU)",
    )
    add_placement_args(parser)
    ray = parser.add_argument_group("Ray cluster (docs/ray.md)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="rank on Ray workers: a cluster's address (auto, ray://host:10001), or none for a local Ray instance",
    )
    ray.add_argument(
        "--workers",
        type=positive_int,
        help="Ray workers (default one per GPU, or 1 on a cluster without GPUs)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--output", required=True, help="run file to write (its folder is created)")
    output.add_argument(
        "--output-format",
        choices=FORMATS,
        default="trec",
        help="trec, or jsonl in rank_llm's Result shape",
    )
    output.add_argument(
        "--run-tag",
        default="headrank",
        help="last column of TREC lines (default headrank)",
    )
    output.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue an interrupted run with the same settings (default); --no-resume starts over",
    )
    output.add_argument(
        "--first-stage-output",
        metavar="FILE",
        help="also write the first-stage run (the --hits candidates reranked) to FILE in TREC format, "
        "for per-query comparison with `python -m headrank_ir.evaluate --compare`",
    )
    output.add_argument(
        "--qrels",
        help="qrels file or Pyserini name: print " + ", ".join(DEFAULT_MEASURES) + " before and after",
    )
    from headrank_ir.progress import QuietAction  # --quiet silences the run's progress by itself

    output.add_argument("--quiet", action=QuietAction, help="no progress bar or progress lines")
    return parser


def command_inputs(args: argparse.Namespace) -> list[str | None]:
    """Every path the command reads: none of them is ever written."""
    return [args.topics, args.index, args.run, args.corpus, args.qrels, args.profile, args.model]


def _ranker_settings(args: argparse.Namespace, profile: HeadProfile | None) -> RankerSettings:
    return RankerSettings(
        args.model, profile, args.depth, args.device, args.dtype, args.batch_tokens, args.ray, args.workers
    )


def run(args: argparse.Namespace) -> int:
    from headrank_ir.engine.models import precision_name

    started = time.perf_counter()
    dtype = precision_name(args.device, args.dtype)  # no GPU: fail at once
    if args.ray is not None:
        check_ray_address(args.ray)  # an address where nothing answers: one line now, not a hang later
    profile = resolve_profile(args.model, args.profile)
    qrels = read_qrels(args.qrels) if args.qrels else None  # read first: bad qrels fail before the long part
    inputs = command_inputs(args)
    guard_file(args.output, "--output", inputs)  # the one output guard, before the slow part
    if args.first_stage_output is not None:
        if Path(args.first_stage_output).resolve() == Path(args.output).resolve():
            raise InputError("--first-stage-output must name another file than --output")
        guard_file(args.first_stage_output, "--first-stage-output", inputs)
    requests = requests_from_args(args)
    if not requests:
        limit = f"the first {args.max_queries} topics" if args.max_queries else "the topics"
        raise InputError(
            f"the first stage found no hits for any of {limit} of {args.topics}: nothing to rerank; check that "
            "--topics matches --index or --run" + (", or raise --max-queries" if args.max_queries else "")
        )
    if qrels is not None and not any(r.query.qid in qrels for r in requests):
        raise InputError(f"no query of the run has judgements in the qrels {args.qrels}: are they for the same topics?")
    preflight(args.model, profile, requests, args.allow_profile_model_mismatch, args.depth)
    header = run_header(args.model, profile, args.depth, requests, dtype)  # after: the model resolved
    if args.first_stage_output:
        tag = "bm25" if args.index else "firststage"
        write_trec_run(args.first_stage_output, requests, tag, "--first-stage-output", inputs)
        print(f"wrote the first stage ({len(requests)} queries) to {args.first_stage_output}")
    with RunWriter(args.output, header, args.output_format, args.run_tag, args.resume, inputs) as writer:
        done = rerank_pending(writer, requests, _ranker_settings(args, profile), args.batch_size)
        path = writer.finish()
    if done is not None:
        print(
            f"reranked {done.queries} queries, {done.passages} passages in {done.seconds:.1f} s "
            f"({done.rate:.1f} passages/s, {time.perf_counter() - started:.1f} s in all) with {args.model}; "
            f"wrote {path}"
        )
    else:
        print(f"nothing to rerank: {path} already holds all {len(requests)} queries")
    if qrels is not None:
        print(gain_table(requests, args.output, args.output_format, qrels))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(run, args, resume_hint=args.output)


if __name__ == "__main__":
    sys.exit(main())
