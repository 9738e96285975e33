"""Rerank a first stage with HeadRank and write a TREC (or rank_llm JSONL) run.

    python -m headrank_ir.rerank --index msmarco --topics dl19 --output runs/run.dl19.headrank.txt
    python -m headrank_ir.rerank --run run.bm25.txt --corpus corpus.jsonl --topics topics.tsv \\
        --qrels qrels.txt --output runs/run.headrank.txt

The run is written query by query and resumes after an interruption (see ``runfile``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headrank_ir import __version__
from headrank_ir.cli import add_first_stage_args, add_placement_args, positive_int, requests_from_args, run_command
from headrank_ir.engine.models import DEFAULT_MODEL
from headrank_ir.engine.profile import ICR, HeadProfile, resolve_profile
from headrank_ir.errors import InputError
from headrank_ir.pipeline.distributed import RankedBatch, with_query_ids
from headrank_ir.pipeline.metrics import DEFAULT_MEASURES, Qrels, evaluate, format_table, read_run_scores, scores_of
from headrank_ir.pipeline.names import read_qrels
from headrank_ir.pipeline.runfile import FORMATS, RunWriter
from headrank_ir.progress import progress as progress_bar
from headrank_ir.records import Request, in_given_order

if TYPE_CHECKING:
    from headrank_ir.engine.ranker import HeadRanker

logger = logging.getLogger(__name__)


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
    return parser


def inputs_digest(requests: Sequence[Request]) -> str:
    """SHA-256 of every query and candidate, in order: a resumed run must see the same inputs."""
    digest = hashlib.sha256()
    for r in requests:
        record = [
            r.query.qid,
            r.query.text,
            [[c.docid, c.score, c.doc] for c in r.candidates],
        ]
        digest.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def run_header(
    args: argparse.Namespace, profile: HeadProfile | None, requests: Sequence[Request], dtype: str = "float32"
) -> dict[str, Any]:
    """Everything the run's bytes depend on (batch size and device do not, beyond float noise),
    for resuming safely; a dtype other than float32 changes scores, so it is named."""
    return {
        "headrank_ir": __version__,
        "model": args.model,
        "profile": profile.to_json() if profile else None,
        "depth": args.depth,
        "queries": len(requests),
        "inputs_sha256": inputs_digest(requests),
        **({"dtype": dtype} if dtype != "float32" else {}),
    }


@dataclass
class Progress:
    queries: int = 0
    passages: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.passages / self.seconds if self.seconds else 0.0


def rerank_into(
    writer: RunWriter,
    ranked: Iterable[RankedBatch],
    depth: int,
    total: int,
    initial: int,
) -> Progress:
    """Write each ranked batch (in request order) as it comes, under one progress bar over all queries."""
    progress = Progress()
    with progress_bar(
        total=total,
        initial=initial,
        unit="query",
        desc="reranking",
        dynamic_ncols=True,
    ) as bar:
        began = time.perf_counter()
        for batch, results in ranked:
            progress.seconds += time.perf_counter() - began
            for result in results:
                writer.write(result)
            progress.queries += len(batch)
            progress.passages += sum(min(depth, len(r.candidates)) for r in batch)
            bar.set_postfix_str(f"{progress.rate:.1f} passages/s")  # first: a plain line shows it with the count
            bar.update(len(batch))
            began = time.perf_counter()
    return progress


@contextmanager
def _batch_ranker(
    args: argparse.Namespace, profile: HeadProfile | None
) -> Iterator[Callable[[Iterable[list[Request]]], Iterator[RankedBatch]]]:
    """How batches are ranked: in this process, or (``--ray``) by a pool of Ray workers."""
    from headrank_ir.engine.ranker import HeadRanker
    from headrank_ir.pipeline.distributed import RayPool

    if args.workers and args.ray is None:
        raise InputError("--workers sets the number of Ray workers: give it with --ray")
    # resolved already: None is ICR's here, not "the shipped one" as from_pretrained reads it;
    # the profile was checked against the model up front (_check_before_writing)
    chosen = ICR if profile is None else profile
    load = partial(
        HeadRanker.from_pretrained,
        args.model,
        profile=chosen,
        allow_profile_model_mismatch=True,
        device=args.device,
        dtype=args.dtype,
        batch_tokens=args.batch_tokens,
    )
    if args.ray is None:
        ranker = load()
        yield lambda batches: ranked_here(ranker, list(batches), args.depth)
    else:
        with RayPool(load, args.depth, args.ray or None, args.workers) as pool:
            yield pool.ranked


def ranked_here(ranker: HeadRanker, batches: list[list[Request]], depth: int) -> Iterator[RankedBatch]:
    """``(batch, results)`` in order, in this process: ``rerank_batches`` tokenises the next batch
    while a GPU reads this one; bad input names its queries, as on a Ray worker."""
    reranked = ranker.rerank_batches(batches, rank_end=depth)
    for batch in batches:
        yield batch, with_query_ids(batch, lambda: next(reranked))


def _check_before_writing(args: argparse.Namespace, profile: HeadProfile | None, requests: Sequence[Request]) -> None:
    """What would stop the run part-way is checked before the output is touched: the profile
    against --model (its name, its layers and heads), that --model resolves, and every query and
    passage of the run."""
    from headrank_ir.engine.models import resolve_model_folder
    from headrank_ir.engine.profile import PromptSettings, check_profile_model

    if profile is not None and not args.allow_profile_model_mismatch:
        check_profile_model(profile, [args.model])
    folder = resolve_model_folder(args.model)  # before the heavy imports below: a wrong name fails at once
    from transformers import AutoConfig

    from headrank_ir.engine.checks import check_profile, check_requests

    if profile is not None:
        config = AutoConfig.from_pretrained(folder).get_text_config()
        check_profile(profile, config.num_hidden_layers, config.num_attention_heads)
    check_requests(requests, profile.prompt if profile else PromptSettings())


def _evaluation(args: argparse.Namespace, qrels: Qrels, requests: Sequence[Request]) -> str:
    """Both runs on the judged queries that were reranked, so a --max-queries trial is fair."""
    judged = {r.query.qid: qrels[r.query.qid] for r in requests if r.query.qid in qrels}
    columns = {
        "first stage": evaluate(scores_of(map(in_given_order, requests)), judged),
        "reranked": evaluate(read_run_scores(args.output, args.output_format), judged),
    }
    columns["gain"] = {m: columns["reranked"][m] - columns["first stage"][m] for m in columns["reranked"]}
    return f"{len(judged)} judged queries of {len(requests)}\n" + format_table(columns)


def run(args: argparse.Namespace) -> int:
    from headrank_ir.engine.models import resolve_placement

    started = time.perf_counter()
    dtype = str(resolve_placement(args.device, args.dtype)[1]).removeprefix("torch.")  # no GPU: fail at once
    profile = resolve_profile(args.model, args.profile)
    qrels = read_qrels(args.qrels) if args.qrels else None  # read first: bad qrels fail before the long part
    if args.first_stage_output and Path(args.first_stage_output).resolve() == Path(args.output).resolve():
        raise InputError("--first-stage-output must name another file than --output")
    requests = requests_from_args(args)
    if qrels is not None and not any(r.query.qid in qrels for r in requests):
        raise InputError(f"no query of the run has judgements in the qrels {args.qrels}: are they for the same topics?")
    header = run_header(args, profile, requests, dtype)
    _check_before_writing(args, profile, requests)
    if args.first_stage_output:
        from headrank_ir.pipeline.firststage import write_trec_run

        write_trec_run(args.first_stage_output, requests, "bm25" if args.index else "firststage")
        print(f"wrote the first stage ({len(requests)} queries) to {args.first_stage_output}")
    with RunWriter(args.output, header, args.output_format, args.run_tag, args.resume) as writer:
        todo = [r for r in requests if not writer.is_done(r.query.qid)]
        if todo:
            batches = [todo[start : start + args.batch_size] for start in range(0, len(todo), args.batch_size)]
            with _batch_ranker(args, profile) as rank_batches:
                progress = rerank_into(
                    writer, rank_batches(batches), args.depth, len(requests), len(requests) - len(todo)
                )
        path = writer.finish()
    if todo:
        print(
            f"reranked {progress.queries} queries, {progress.passages} passages in {progress.seconds:.1f} s "
            f"({progress.rate:.1f} passages/s, {time.perf_counter() - started:.1f} s in all) with {args.model}; "
            f"wrote {path}"
        )
    else:
        print(f"nothing to rerank: {path} already holds all {len(requests)} queries")
    if qrels is not None:
        print(_evaluation(args, qrels, requests))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(run, args, resume_hint=args.output)


if __name__ == "__main__":
    sys.exit(main())
