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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headrank_ir import __version__
from headrank_ir.cli import add_first_stage_args, add_placement_args, positive_int, requests_from_args, run_command
from headrank_ir.engine.models import DEFAULT_MODEL
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.pipeline.metrics import DEFAULT_MEASURES, Qrels, evaluate, format_table, read_run_scores, scores_of
from headrank_ir.pipeline.names import read_qrels
from headrank_ir.pipeline.runfile import FORMATS, RunWriter
from headrank_ir.records import Request

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
    model.add_argument("--profile", help="head profile JSON (default: every head, equal weights)")
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
    ranker: HeadRanker,
    todo: list[Request],
    depth: int,
    batch_size: int,
    total: int,
) -> Progress:
    """Rerank ``todo`` batch by batch, writing each query as it finishes, under a progress bar."""
    from tqdm import tqdm

    progress = Progress()
    with tqdm(
        total=total,
        initial=total - len(todo),
        unit="query",
        desc="reranking",
        dynamic_ncols=True,
    ) as bar:
        batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
        reranked = ranker.rerank_batches(batches, rank_end=depth)
        for batch in batches:
            began = time.perf_counter()
            try:
                results = next(reranked)
            except ValueError as error:
                raise ValueError(f"query {', '.join(r.query.qid for r in batch)}: {error}") from error
            progress.seconds += time.perf_counter() - began
            for result in results:
                writer.write(result)
            progress.queries += len(batch)
            progress.passages += sum(min(depth, len(r.candidates)) for r in batch)
            bar.update(len(batch))
            bar.set_postfix_str(f"{progress.rate:.1f} passages/s")
    return progress


def _load_ranker(args: argparse.Namespace, profile: HeadProfile | None) -> HeadRanker:
    from headrank_ir.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(
        args.model, profile=profile, device=args.device, dtype=args.dtype, batch_tokens=args.batch_tokens
    )


def _evaluation(args: argparse.Namespace, qrels: Qrels, requests: Sequence[Request]) -> str:
    """Both runs on the judged queries that were reranked, so a --max-queries trial is fair."""
    judged = {r.query.qid: qrels[r.query.qid] for r in requests if r.query.qid in qrels}
    columns = {
        "first stage": evaluate(scores_of(requests), judged),
        "reranked": evaluate(read_run_scores(args.output, args.output_format), judged),
    }
    return f"{len(judged)} judged queries of {len(requests)}\n" + format_table(columns)


def run(args: argparse.Namespace) -> int:
    from headrank_ir.engine.models import resolve_placement

    started = time.perf_counter()
    dtype = str(resolve_placement(args.device, args.dtype)[1]).removeprefix("torch.")  # no GPU: fail at once
    profile = HeadProfile.load(args.profile) if args.profile else None
    qrels = read_qrels(args.qrels) if args.qrels else None  # read first: bad qrels fail before the long part
    requests = requests_from_args(args)
    header = run_header(args, profile, requests, dtype)
    with RunWriter(args.output, header, args.output_format, args.run_tag, args.resume) as writer:
        todo = [r for r in requests if not writer.is_done(r.query.qid)]
        if todo:
            ranker = _load_ranker(args, profile)
            progress = rerank_into(writer, ranker, todo, args.depth, args.batch_size, len(requests))
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
