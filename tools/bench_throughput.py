"""Throughput of HeadRank over every query of a run, end to end through the rerank command's code.

For each passage count, head profile, passage length and batch size (a cell) the queries go
through ``rerank_into`` (what ``python -m headrank_ir.rerank`` runs: batches, ``rerank_batches``,
a run file written), and, interleaved with it, through the floor: one plain SDPA forward of the
same prompts, in the same padded groups, through the same truncated layers (no recording, no
calibration). A cell holds at least ``--batches`` batches: the run's queries (``--max-queries``)
are cycled to fill them. Reported per row: seconds per query and queries per second of both,
engine/floor, peak memory (CUDA ``max_memory_allocated``; on the CPU the process's peak RSS,
reset before each route), the generative baseline (RankGPT, sliding window 20/10, greedy
``generate``) on the same device, and what decides speed on a GPU:

- ``syncs_per_group``: host reads of a tensor (``tolist``, ``item``, ``if tensor:`` ...) made
  inside ``HeadReader.read_plans``, outside its one ``download``, per ``upload`` (one per group),
  counted as tests/test_host_crossings.py does, in the warm-up (else the first repeat); each one
  would drain a GPU's queue. On CUDA also ``cuda_sync_warnings_per_group`` (sync debug mode
  "warn"). 0 is the engine's promise.
- ``hidden_share``: of the seconds spent planning (``HeadReader.plan``: tokenising, joining
  prompts), the share hidden behind the forwards: (plan + forward - wall) / plan, clipped to
  [0, 1], where forward is the seconds in ``read_plans`` and wall the engine's. 0 where planning
  and reading take turns (the CPU: ``overlap`` off), up to 1 where a prefetch hides it all.
  ``cpu_share`` is plan / wall.

One JSON list of rows; each time is the best of ``--repeats`` after a warm-up.

    python tools/bench_throughput.py --passages 20 100 --profiles all:24 --batch-sizes 1 2 4 \\
        --max-queries 4 --output runs/bench_throughput_cpu.json                  # smollm2-135m, CPU
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
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

from bench_engine import DL19, QWEN3_SHAPES, load, peak_mb, reset_peak

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


class Patched:
    """Sets ``owner.name`` to ``wrap(current)`` on enter and puts back exactly what was there
    (an instance attribute, a class attribute, or nothing: the inherited one) on exit."""

    _missing = object()

    def __init__(self, owner, name: str, wrap):
        self.owner, self.name, self.wrap = owner, name, wrap

    def __enter__(self):
        self.saved = vars(self.owner).get(self.name, self._missing)
        setattr(self.owner, self.name, self.wrap(getattr(self.owner, self.name)))
        return self

    def __exit__(self, *exc):
        if self.saved is self._missing:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self.saved)


class MethodClock(Patched):
    """Seconds spent in ``owner.name`` while entered."""

    def __init__(self, owner, name: str):
        self.seconds = 0.0

        def wrap(method):
            def clocked(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - start

            return clocked

        super().__init__(owner, name, wrap)


HOST_READS = ("tolist", "item", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class HostCrossings(contextlib.ExitStack):
    """Counts, while ``reader.read_plans`` runs on the thread that called it, the calls of
    ``upload`` and ``download`` (engine/reader.py's crossings by design) and every host read of a
    tensor outside ``download`` (tests/test_host_crossings.py's hook); on CUDA also the sync debug
    mode's warnings outside ``download``. A planner thread's reads are not counted."""

    def __init__(self, reader):
        super().__init__()
        self.reader, self.counts, self.inside = reader, Counter(), None

    def __enter__(self):
        import torch

        import headrank_ir.engine.reader as module

        super().__enter__()
        for name in HOST_READS:
            self.enter_context(Patched(torch.Tensor, name, lambda f, name=name: self._counted(name, f)))
        self.enter_context(Patched(module, "upload", lambda f: self._counted("upload", f)))
        self.enter_context(Patched(module, "download", self._alone))
        self.enter_context(Patched(self.reader, "read_plans", self._observed))
        return self

    def _counted(self, name, function):
        def counting(*args, **kwargs):
            if self.inside == threading.get_ident():
                self.counts[name] += 1
            return function(*args, **kwargs)

        return counting

    def _alone(self, download):
        def alone(tensors):
            self.counts["download"] += 1
            inside, self.inside = self.inside, None  # the one wait for the device, by design
            with cuda_sync_mode(self.reader.device, "default"):
                try:
                    return download(tensors)
                finally:
                    self.inside = inside

        return alone

    def _observed(self, read_plans):
        def observed(plans):
            self.inside = threading.get_ident()
            try:
                with warnings.catch_warnings(record=True) as caught, cuda_sync_mode(self.reader.device, "warn"):
                    warnings.simplefilter("always")
                    return read_plans(plans)
            finally:
                self.inside = None
                self.counts["cuda_sync_warnings"] += sum("synchroniz" in str(w.message) for w in caught)

        return observed

    def summary(self) -> dict:
        return {
            "syncs_per_group": syncs_per_group(self.counts),
            "groups_counted": self.counts["upload"],
            "downloads_counted": self.counts["download"],
            **(
                {"cuda_sync_warnings_per_group": per_group(self.counts["cuda_sync_warnings"], self.counts)}
                if self.reader.device.type == "cuda"
                else {}
            ),
        }


@contextlib.contextmanager
def cuda_sync_mode(device, mode: str):
    """``torch.cuda.set_sync_debug_mode(mode)`` for the block on a CUDA ``device``; else nothing."""
    import torch

    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def per_group(count: int, counts: Counter):
    """``count`` per group (per ``upload``); None where no group was read."""
    return round(count / counts["upload"], 3) if counts["upload"] else None


def syncs_per_group(counts: Counter):
    """Host reads of tensors (``HOST_READS``) per group, from ``HostCrossings.counts``."""
    return per_group(sum(counts[name] for name in HOST_READS), counts)


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


def engine_route(ranker, requests, passages: int, batch_size: int, folder: Path):
    """The rerank command's loop, writing a TREC run into ``folder``."""
    from headrank_ir.pipeline.execution import ranked_here, rerank_into
    from headrank_ir.pipeline.runfile import RunWriter

    batches = [requests[start : start + batch_size] for start in range(0, len(requests), batch_size)]

    def run():
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


def routes(ranker, requests, passages, batch_size, scratch) -> dict:
    return {
        "floor": floor_route(ranker, requests, passages, batch_size),
        "engine": engine_route(ranker, requests, passages, batch_size, Path(scratch)),
    }


def measure_pair(ranker, requests, passages, batch_size, args) -> dict:
    """Both routes over a cell of at least ``args.batches`` batches of ``requests`` (cycled), in
    alternation, after a warm-up on the first batch in which the host crossings are counted.

    Without ``overlap`` (the CPU) batches are independent, so floor and engine alternate batch by
    batch: a shared machine's changing load then hits both alike. With it, each route runs the
    whole list in one go, as the command does, so the next batch's tokenising can hide.
    """
    requests = cycled(requests, max(len(requests), batch_size * args.batches))
    units = (
        [requests] if ranker.overlap else [requests[s : s + batch_size] for s in range(0, len(requests), batch_size)]
    )
    pairs = [routes(ranker, unit, passages, batch_size, args.scratch) for unit in units]
    crossings = HostCrossings(ranker.reader)
    if args.warmup:
        with crossings:
            for run in routes(ranker, requests[:batch_size], passages, batch_size, args.scratch).values():
                timed(args.device, run)
    best = {"floor": float("inf"), "engine": float("inf")}
    peak = {name: 0.0 for name in best}
    with MethodClock(ranker.reader, "plan") as plan, MethodClock(ranker.reader, "read_plans") as forward:
        for repeat in range(args.repeats):
            total = dict.fromkeys(best, 0.0)
            plan.seconds = forward.seconds = 0.0
            with crossings if repeat == 0 and not args.warmup else contextlib.nullcontext():
                for pair in pairs:
                    for name, run in pair.items():
                        reset_peak(args.device)
                        total[name] += timed(args.device, run)
                        peak[name] = max(peak[name], peak_mb(args.device))
            if total["engine"] < best["engine"]:  # the floor route neither plans nor reads plans
                host = {"plan_s": plan.seconds, "forward_s": forward.seconds, "wall_s": total["engine"]}
            best = {name: min(best[name], total[name]) for name in best}
    count = len(requests)
    return {
        "batch_size": batch_size,
        "queries": count,
        "batches": -(-count // batch_size),
        "interleaved": "whole list" if ranker.overlap else "batch by batch",
        "engine_s_per_query": round(best["engine"] / count, 4),
        "floor_s_per_query": round(best["floor"] / count, 4),
        "queries_per_s": round(count / best["engine"], 2),
        "floor_queries_per_s": round(count / best["floor"], 2),
        "engine_over_floor": round(best["engine"] / best["floor"], 3),
        **crossings.summary(),
        **{name: round(seconds, 3) for name, seconds in host.items()},
        "hidden_share": round(hidden_share(**host), 3),
        "cpu_share": round(host["plan_s"] / best["engine"], 3),
        "engine_peak_mb": round(peak["engine"], 1),
        "floor_peak_mb": round(peak["floor"], 1),
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
                ranker = HeadRanker(model, tokenizer, profile, batch_tokens=args.batch_tokens)
                for batch_size in args.batch_sizes:
                    row = {"model": args.config or args.model, "device": args.device, "dtype": args.dtype}
                    row.update(machine=machine(args.device), passages=passages, profile=spec)
                    row.update(passage_tokens=profile.prompt.max_passage_tokens)
                    row.update(heads=len(profile.heads), layers=profile.depth, batch_tokens=ranker.reader.batch_tokens)
                    row.update(overlap=ranker.overlap, repeats=args.repeats, warmup=args.warmup)
                    row.update(measure_pair(ranker, requests, passages, batch_size, args))
                    row.update(
                        baseline_s_per_query=baseline, baseline_queries=min(args.baseline_queries, len(requests))
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    write_atomic(args.output, json.dumps(rows, indent=1) + "\n")  # each row kept as it comes
    return 0


if __name__ == "__main__":
    sys.exit(main())
