"""Throughput of HeadRank over every query of a run, end to end through the rerank command's code.

For each passage count, head profile, passage length and batch size (a cell) the queries go
through ``rerank_into`` (what ``python -m headrank_ir.rerank`` runs: batches, ``rerank_batches``,
a run file written) once per planning route of ``--overlaps`` (``HeadRanker.overlap``: the next
batch planned not at all ahead or in a planner process), and through the floor: one
plain SDPA forward of the same prompts, in the same padded groups, through the same truncated
layers (no recording, no calibration). Each route runs the cell's whole list in one call, the
routes in turn, one later each repeat. A cell holds at least ``--batches`` batches: the run's
queries (``--max-queries``) are cycled to fill them. Reported per row, for the first route: seconds
per query and queries per second of it and the floor, engine/floor, peak memory (CUDA
``max_memory_allocated``; on the CPU the process's peak RSS, reset before each route), the
generative baseline (RankGPT, sliding window 20/10, greedy ``generate``) on the same device, and:

- ``syncs_per_group``: host reads of a tensor (``tolist``, ``item``, ``if tensor:`` ...) made
  inside ``HeadReader.read_plans``, outside its one ``download``, per ``upload`` (one per group),
  counted as tests/test_host_crossings.py does, in the warm-up (else the first repeat); each one
  would drain a GPU's queue. On CUDA also ``cuda_sync_warnings_per_group`` (sync debug mode
  "warn"). 0 is the engine's promise.
- ``routes``: per route, ``wall_s`` against ``sum_s`` and ``max_s`` of ``plan_s`` (the seconds
  the "off" route spent in ``HeadReader.plan`` in the same repeat: the same batches, planned in
  turn) and ``forward_s`` (the route's own seconds in ``read_plans``). Planning overlaps where
  ``wall_over_max`` comes near 1 rather than ``wall_over_sum``; ``hidden_share`` is
  (plan + forward - wall) / plan, clipped to [0, 1]; ``start_s_in_warmup`` what the planner
  process's start added to the warm-up. ``cpu_share`` is plan / wall.

One JSON list of rows; each time is the best of ``--repeats`` after a warm-up.

    python tools/bench_throughput.py --passages 20 100 --profiles all:24 --batch-sizes 1 2 4 \\
        --max-queries 4 --overlaps off --output runs/bench_throughput_cpu.json   # smollm2-135m, CPU
    python tools/bench_throughput.py --config qwen3-0.6b --device cuda --dtype bfloat16 \\
        --profiles 16:16 all:22 --batch-sizes 1 8 32                             # random weights
    python tools/bench_throughput.py --config qwen3-4b --device cuda --dtype bfloat16 --profiles 16:21
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench_engine import DL19, QWEN3_SHAPES, load, peak_mb, reset_peak
from bench_hooks import HOST_READS, HostCrossings, MethodClock, cuda_sync_mode, syncs_per_group  # noqa: F401

from headrank_ir.atomic import write_atomic
from headrank_ir.engine.profile import HeadProfile, PromptSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="model name, folder or HF id (default smollm2-135m)")
    parser.add_argument("--config", choices=sorted(QWEN3_SHAPES), help="random Qwen3 of this shape instead of --model")
    parser.add_argument("--tokenizer", help="tokenizer folder for --config (default: smollm2-135m's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--data", default=str(DL19), help="folder with topics.tsv, run.bm25.txt, corpus.jsonl")
    parser.add_argument("--passages", type=int, nargs="+", default=[20, 100])
    parser.add_argument(
        "--profiles",
        nargs="+",
        default=["all:24"],
        help="HEADS:LAYERS, HEADS a number or 'all': that many heads spread over the first LAYERS layers",
    )
    parser.add_argument(
        "--passage-tokens",
        type=int,
        nargs="+",
        default=[PromptSettings().max_passage_tokens],
        help="passages cut to each of these token counts in turn (default: the engine's, %(default)s)",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch-tokens", type=int, help="padded tokens per forward (default: the ranker's)")
    parser.add_argument("--max-queries", type=int, help="first N queries of the run (default all)")
    parser.add_argument(
        "--batches", type=int, default=4, help="at least this many batches per cell, queries cycled (default 4)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the first batch once before timing (default; --no-warmup for long CPU forwards)",
    )
    parser.add_argument("--baseline-queries", type=int, default=1, help="RankGPT on this many queries (0: none)")
    parser.add_argument(
        "--overlaps",
        nargs="+",
        choices=sorted(OVERLAPS),
        default=["off", "process"],
        help="engine routes, by how the next batch is planned (HeadRanker.overlap); the first heads the row",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--output", default="runs/bench_throughput.json")
    return parser


def head_profile(spec: str, model: str, num_layers: int, num_heads: int, passage_tokens: int):
    """``all:L`` every head of the first L layers; ``H:L`` H heads spread evenly over them,
    the last in layer L - 1 (so the truncation depth is L either way); passages cut to
    ``passage_tokens``."""

    heads, _, layers = spec.partition(":")
    layers = int(layers or num_layers)
    every = [(layer, head) for layer in range(layers) for head in range(num_heads)]
    count = len(every) if heads == "all" else int(heads)
    chosen = [every[len(every) - 1 - round(i * (len(every) - 1) / max(count - 1, 1))] for i in range(count)][::-1]
    weighted = tuple((layer, head, 1.0) for layer, head in chosen)
    return HeadProfile(model, weighted, PromptSettings(max_passage_tokens=passage_tokens), meta={"bench": spec})


def timed(device: str, step) -> float:
    import torch

    start = time.perf_counter()
    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def hidden_share(plan_s: float, forward_s: float, wall_s: float) -> float:
    """Share of the planning seconds hidden behind the forwards: (plan + forward - wall) / plan,
    clipped to [0, 1] (0 without any planning)."""
    if plan_s <= 0:
        return 0.0
    return min(1.0, max(0.0, (plan_s + forward_s - wall_s) / plan_s))


def cycled(requests, count: int):
    """The first ``count`` of ``requests`` repeated in turn, later rounds' query ids suffixed."""
    out = []
    for i in range(count):
        request = requests[i % len(requests)]
        if i >= len(requests):
            query = dataclasses.replace(request.query, qid=f"{request.query.qid}#{i // len(requests)}")
            request = dataclasses.replace(request, query=query)
        out.append(request)
    return out


def engine_route(ranker, requests, passages: int, batch_size: int, folder: Path, overlap):
    """The rerank command's loop, writing a TREC run into ``folder``, with the batch after the one
    being read planned as ``overlap`` says (``HeadRanker.overlap``: False or "process")."""
    from headrank_ir.pipeline.execution import ranked_here, rerank_into
    from headrank_ir.pipeline.runfile import RunWriter

    batches = [requests[start : start + batch_size] for start in range(0, len(requests), batch_size)]

    def run():
        ranker.overlap = overlap
        with RunWriter(folder / "run.txt", {"bench": True}, "trec", "bench", resume=False) as writer:
            rerank_into(writer, ranked_here(ranker, batches, passages), passages, len(requests), 0)
            writer.finish()

    return run


def floor_route(ranker, requests, passages: int, batch_size: int):
    """Plain SDPA forwards of the engine's prompts in the engine's groups; prompts made up front.
    Through ``TruncatedModel.forward`` without a recorder: the engine's layers and cache handling,
    no host sync of transformers' own (``use_cache=False`` would look for packed sequences)."""
    import torch

    from headrank_ir.engine.windows import batch_groups, right_padded

    forwards = []
    for start in range(0, len(requests), batch_size):
        batch = requests[start : start + batch_size]
        prompts = [job.real.input_ids for r in batch for job in ranker.reader.plan(r.query.text, texts(r, passages))[1]]
        for group in batch_groups([len(p) for p in prompts], ranker.reader.batch_tokens):
            forwards.append(right_padded([prompts[i] for i in group]).to(ranker.reader.device))

    def run():
        with torch.inference_mode():
            for ids in forwards:
                ranker.reader.truncated.forward(ids)

    return run


def texts(request, passages: int):
    return [c.text for c in request.candidates[:passages]]


OVERLAPS = {"off": False, "process": "process"}


def routes(ranker, requests, passages, batch_size, args) -> dict:
    """The floor, then the engine planning ahead each way of ``args.overlaps`` (the first is the
    row's headline engine, whose host crossings are counted)."""
    engines = {
        name: engine_route(ranker, requests, passages, batch_size, Path(args.scratch), OVERLAPS[name])
        for name in args.overlaps
    }
    return {"floor": floor_route(ranker, requests, passages, batch_size), **engines}


def measure_pair(ranker, requests, passages, batch_size, args) -> dict:
    """The floor and each engine route over a cell of at least ``args.batches`` batches of
    ``requests`` (cycled), each the whole list in one call as the command runs it (so the next
    batch's planning can hide), in turn, starting one route later each repeat, after a warm-up
    on the first batch in which the host crossings of the first engine route are counted.

    Per engine route, from its best repeat: wall, forward (``read_plans``, in the loop's thread)
    and, as the planning it had to hide, the seconds the "off" route spent in ``HeadReader.plan``
    in that repeat (the same batches planned in turn; a planner process is not clocked from here).
    Planning overlaps where wall comes near max(plan, forward) rather than plan + forward.
    """
    requests = cycled(requests, max(len(requests), batch_size * args.batches))
    primary = args.overlaps[0]
    crossings = HostCrossings(ranker.reader)
    warmup = {}
    if args.warmup:
        for name, run in routes(ranker, requests[:batch_size], passages, batch_size, args).items():
            with crossings if name == primary else contextlib.nullcontext():
                warmup[name] = timed(args.device, run)
    cell = routes(ranker, requests, passages, batch_size, args)
    best = {name: {"wall_s": float("inf")} for name in cell}
    peak = dict.fromkeys(cell, 0.0)
    with MethodClock(ranker.reader, "plan") as plan, MethodClock(ranker.reader, "read_plans") as forward:
        for repeat in range(args.repeats):
            order = list(cell)[repeat % len(cell) :] + list(cell)[: repeat % len(cell)]
            seen = {}
            for name in order:
                plan.seconds = forward.seconds = 0.0
                counting = repeat == 0 and not args.warmup and name == primary
                with crossings if counting else contextlib.nullcontext():
                    reset_peak(args.device)
                    wall = timed(args.device, cell[name])
                peak[name] = max(peak[name], peak_mb(args.device))
                seen[name] = {"wall_s": wall, "forward_s": forward.seconds, "own_plan_s": plan.seconds}
            for name, times in seen.items():
                if times["wall_s"] < best[name]["wall_s"]:
                    best[name] = {**times, "plan_s": seen.get("off", times)["own_plan_s"]}
    count = len(requests)
    engines = {name: route_summary(best[name], best["floor"]["wall_s"], count) for name in args.overlaps}
    for name in engines:
        engines[name]["peak_mb"] = round(peak[name], 1)
    if "process" in warmup and "off" in warmup:
        engines["process"]["start_s_in_warmup"] = round(warmup["process"] - warmup["off"], 3)
    headline = engines[primary]
    return {
        "batch_size": batch_size,
        "queries": count,
        "batches": -(-count // batch_size),
        "interleaved": "whole list, routes in turn",
        "engine_route": primary,
        "engine_s_per_query": headline["s_per_query"],
        "floor_s_per_query": round(best["floor"]["wall_s"] / count, 4),
        "queries_per_s": round(count / best[primary]["wall_s"], 2),
        "floor_queries_per_s": round(count / best["floor"]["wall_s"], 2),
        "engine_over_floor": headline["over_floor"],
        **crossings.summary(),
        **{key: headline[key] for key in ("plan_s", "forward_s", "wall_s", "hidden_share")},
        "cpu_share": round(best[primary]["plan_s"] / best[primary]["wall_s"], 3),
        "engine_peak_mb": headline["peak_mb"],
        "floor_peak_mb": round(peak["floor"], 1),
        "routes": engines,
    }


def route_summary(times: dict, floor_s: float, count: int) -> dict:
    """One engine route's best repeat: its wall against the sum and the max of planning and forward."""
    plan_s, forward_s, wall_s = times["plan_s"], times["forward_s"], times["wall_s"]
    return {
        "s_per_query": round(wall_s / count, 4),
        "over_floor": round(wall_s / floor_s, 3),
        "wall_s": round(wall_s, 3),
        "plan_s": round(plan_s, 3),
        "forward_s": round(forward_s, 3),
        "sum_s": round(plan_s + forward_s, 3),
        "max_s": round(max(plan_s, forward_s), 3),
        "wall_over_sum": round(wall_s / (plan_s + forward_s), 3),
        "wall_over_max": round(wall_s / max(plan_s, forward_s), 3),
        "hidden_share": round(hidden_share(plan_s, forward_s, wall_s), 3),
        "plan_s_in_this_process": round(times["own_plan_s"], 3),
    }


def baseline_seconds(model, tokenizer, requests, passages: int, device: str):
    """RankGPT's seconds per query over ``requests`` (None without any)."""
    from headrank_ir.bench.baselines.rankgpt import RankGPT

    if not requests:
        return None
    ranker = RankGPT(model, tokenizer)
    seconds = timed(device, lambda: [ranker.permute(r.query.text, texts(r, passages)) for r in requests])
    return round(seconds / len(requests), 3)


def machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def main(argv=None) -> int:
    import torch

    from headrank_ir.engine.models import resolve_placement
    from headrank_ir.engine.ranker import HeadRanker
    from headrank_ir.pipeline.firststage import requests_from_run
    from headrank_ir.pipeline.readers import read_topics_file, read_trec_run

    args = build_parser().parse_args(argv)
    device, dtype = resolve_placement(args.device, args.dtype)
    args.device, args.dtype = str(device), str(dtype).removeprefix("torch.")
    args.child = None  # bench_engine's loader: SDPA attention
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load(args)
    config = model.config.get_text_config()
    data = Path(args.data)
    topics, run = read_topics_file(data / "topics.tsv"), read_trec_run(data / "run.bm25.txt")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = scratch
        for passages in args.passages:
            requests = requests_from_run(topics, run, data / "corpus.jsonl", passages, args.max_queries)
            baseline = baseline_seconds(model, tokenizer, requests[: args.baseline_queries], passages, args.device)
            for spec, passage_tokens in itertools.product(args.profiles, args.passage_tokens):
                profile = head_profile(
                    spec,
                    args.config or args.model,
                    config.num_hidden_layers,
                    config.num_attention_heads,
                    passage_tokens,
                )
                with HeadRanker(model, tokenizer, profile, batch_tokens=args.batch_tokens) as ranker:
                    for batch_size in args.batch_sizes:
                        rows.append(cell_row(ranker, requests, passages, spec, batch_size, args))
                        rows[-1].update(baseline_s_per_query=baseline)
                        rows[-1].update(baseline_queries=min(args.baseline_queries, len(requests)))
                        print(json.dumps(rows[-1]), flush=True)
                        write_atomic(args.output, json.dumps(rows, indent=1) + "\n")  # each row kept as it comes
    return 0


def cell_row(ranker, requests, passages: int, spec: str, batch_size: int, args) -> dict:
    profile = ranker.profile
    row = {"model": args.config or args.model, "device": args.device, "dtype": args.dtype}
    row.update(machine=machine(args.device), passages=passages, profile=spec)
    row.update(passage_tokens=profile.prompt.max_passage_tokens)
    row.update(heads=len(profile.heads), layers=profile.depth, batch_tokens=ranker.reader.batch_tokens)
    row.update(overlaps=args.overlaps, repeats=args.repeats, warmup=args.warmup)
    row.update(measure_pair(ranker, requests, passages, batch_size, args))
    return row


if __name__ == "__main__":
    sys.exit(main())
