"""float32 against bfloat16 on the CPU: nDCG@10 and speed of HeadRank at depth 20 on the four sets.

For each of DL19, DL20, Vaswani and Cranfield (smallest first, so that an interrupted run keeps
the most sets) the BM25 top 20 is reranked with ``--model`` and its shipped profile, as
``python -m headrank_ir.rerank ... --depth 20`` does (``HeadRanker.rerank_batches``, one query
a batch), by two rankers loaded side by side, one in each dtype. The queries alternate between
them (and which goes first alternates too), so that a shared machine's changing load hits both
alike (no warm-up: each ranker's first query carries its one-time costs). Per set: nDCG@10 of BM25
and of both dtypes, the paired difference bf16 - fp32 with the paired tests (``evaluation.significance.compare``:
``scipy.stats.ttest_rel`` and a randomisation test), how many queries changed, and the seconds
of reranking in each dtype. Model loading is timed apart. The record (JSON, and a Markdown
table made from it) is rewritten after each query, the set in progress marked incomplete.

    nice -n 5 python tools/bench_dtype.py --data ../shared/data               # runs/bench_dtype_cpu.json
    python tools/bench_dtype.py --data ../shared/data --sets dl19 --max-queries 3 --output /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from headrank_ir.atomic import write_atomic
from headrank_ir.bench.datasets import DATASETS, load, prepare
from headrank_ir.engine.models import DEFAULT_MODEL, cache_dir
from headrank_ir.evaluation.measures import per_query, scores_of
from headrank_ir.evaluation.significance import compare
from headrank_ir.records import in_given_order

DTYPES = ("float32", "bfloat16")
MEASURE = "nDCG@10"
SETS = ("dl19", "dl20", "vaswani", "cranfield")  # by query count: 43, 54, 93, 225
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
ALPHA = 0.05  # "within noise": the paired t-test does not reject equality at this level ...
MAX_DELTA = 0.01  # ... and the mean difference is smaller than this (a tenth of a typical reranker gain)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model with a shipped profile (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--data", type=Path, help="shared data folder (default $HEADRANK_DATA)")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--depth", type=int, default=20, help="BM25 hits reranked (default 20)")
    parser.add_argument("--max-queries", type=int, help="first N judged queries of each set (a smoke check)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench"), help="where the BM25 runs are kept")
    parser.add_argument("--cache", type=Path, help="Lucene indexes, if a BM25 run must be made (default model cache)")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's: one per core)")
    parser.add_argument("--output", type=Path, default=Path("runs/bench_dtype_cpu.json"))
    return parser


def cpu_flags(cpuinfo: str) -> dict[str, bool]:
    """The flags that decide native bf16 (AVX512-BF16, AMX) among the first CPU's flags."""
    line = next((row for row in cpuinfo.splitlines() if row.startswith("flags")), "")
    present = set(line.partition(":")[2].split())
    return {flag: flag in present for flag in CPU_FLAGS}


def machine() -> dict:
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((row.partition(":")[2].strip() for row in cpuinfo.splitlines() if row.startswith("model name")), "")
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "flags": cpu_flags(cpuinfo),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def set_record(
    name: str,
    bm25: Mapping[str, float],
    values: Mapping[str, Mapping[str, float]],
    seconds: Mapping[str, float],
) -> dict:
    """One set's row from per-query nDCG@10 (``bm25`` and ``values[dtype]``, ``{qid: value}``)
    and the reranking seconds of each dtype."""
    fp32, bf16 = values["float32"], values["bfloat16"]
    if set(fp32) != set(bf16) or set(fp32) != set(bm25):
        raise ValueError(f"{name}: BM25, float32 and bfloat16 were measured on different queries")
    paired = compare(bf16, fp32)
    mean = {"bm25": _mean(bm25), "float32": _mean(fp32), "bfloat16": _mean(bf16)}
    return {
        "set": name,
        "queries": paired.queries,
        MEASURE: mean,
        "delta_bf16_minus_fp32": paired.mean_difference,
        "p_ttest": paired.p_ttest,
        "p_randomisation": paired.p_randomisation,
        "queries_changed": paired.wins + paired.losses,
        "bf16_higher": paired.wins,
        "bf16_lower": paired.losses,
        "within_noise": bool(paired.p_ttest >= ALPHA and abs(paired.mean_difference) < MAX_DELTA),
        "seconds": dict(seconds),
        "seconds_per_query": {d: s / paired.queries for d, s in seconds.items()},
        "bf16_over_fp32_seconds": seconds["bfloat16"] / seconds["float32"],
        "per_query": {"bm25": dict(bm25), **{d: dict(v) for d, v in values.items()}},
    }


def _mean(values: Mapping[str, float]) -> float:
    return sum(values.values()) / len(values)


def markdown(record: dict) -> str:
    """The table of the record's sets, then the machine and the criterion."""
    m = record["machine"]
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in m["flags"].items())
    lines = [
        f"# float32 vs bfloat16 on the CPU: {record['model']}, shipped profile, depth {record['depth']}",
        "",
        "| set | queries | BM25 | fp32 | bf16 | Δ bf16−fp32 | p (t) | p (rand.) | changed (+/−) "
        "| s fp32 | s bf16 | bf16/fp32 time | within noise |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in record["sets"]:
        v, s = row[MEASURE], row["seconds"]
        queries = row["queries"] if row.get("complete", True) else f"{row['queries']} of {row['queries_of_set']}"
        lines.append(
            f"| {row['set']} | {queries} | {v['bm25']:.4f} | {v['float32']:.4f} | {v['bfloat16']:.4f} "
            f"| {row['delta_bf16_minus_fp32']:+.4f} | {row['p_ttest']:.3f} | {row['p_randomisation']:.3f} "
            f"| {row['queries_changed']} ({row['bf16_higher']}/{row['bf16_lower']}) | {s['float32']:.1f} "
            f"| {s['bfloat16']:.1f} | {row['bf16_over_fp32_seconds']:.2f} | {'yes' if row['within_noise'] else 'no'} |"
        )
    lines += [
        "",
        f"Missing or incomplete sets: {', '.join(record['missing']) or 'none'}. Model load (s): "
        + ", ".join(f"{d} {s:.1f}" for d, s in record["load_seconds"].items())
        + ".",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, torch {m['torch']} ({m['torch_cpu_capability']}), "
        f"{m['threads']} threads; {flags}; load average at start {m['load_average_at_start'][0]:.1f}.",
        f"Within noise: paired t-test p ≥ {ALPHA} and |Δ| < {MAX_DELTA}. Seconds: reranking only, queries "
        "alternating between the two dtypes on a shared machine.",
    ]
    return "\n".join(lines) + "\n"


def write(record: dict, output: Path) -> None:
    write_atomic(output, json.dumps(record, indent=1) + "\n")
    write_atomic(output.with_suffix(".md"), markdown(record))


def load_rankers(model: str) -> tuple[dict, dict[str, float]]:
    from headrank_ir.engine.ranker import HeadRanker

    rankers, seconds = {}, {}
    for dtype in DTYPES:
        began = time.perf_counter()
        rankers[dtype] = HeadRanker.from_pretrained(model, device="cpu", dtype=dtype)
        seconds[dtype] = time.perf_counter() - began
    return rankers, seconds


def rerank_alternating(rankers: dict, requests: Sequence, depth: int) -> Iterator[tuple[dict, dict[str, float]]]:
    """After each query: each dtype's results so far (in query order) and its total seconds.
    Query i starts with dtype i % 2; the first query of each ranker carries its one-time costs."""
    results = {d: [] for d in rankers}
    seconds = dict.fromkeys(rankers, 0.0)
    for i, request in enumerate(requests):
        order = list(rankers) if i % 2 == 0 else list(rankers)[::-1]
        for dtype in order:
            began = time.perf_counter()
            [result] = next(rankers[dtype].rerank_batches([[request]], rank_end=depth))
            seconds[dtype] += time.perf_counter() - began
            results[dtype].append(result)
        logging.info("%s %d/%d: %s", request.query.qid, i + 1, len(requests), _clock(seconds))
        yield results, seconds


def _clock(seconds: Mapping[str, float]) -> str:
    return ", ".join(f"{d} {s:.1f} s" for d, s in seconds.items())


def measure_set(name: str, rankers: dict, args: argparse.Namespace) -> Iterator[dict]:
    """The set's row on the queries done so far, after each query; the last one is the whole set."""
    collection = prepare(DATASETS[name], args.data, args.runs_dir, args.cache or cache_dir())
    loaded = load(collection, args.max_queries)
    for results, seconds in rerank_alternating(rankers, loaded.requests, args.depth):
        done = loaded.requests[: len(results["float32"])]
        qrels = {r.query.qid: loaded.qrels[r.query.qid] for r in done}

        def ndcg(run_results, qrels=qrels) -> dict[str, float]:
            return per_query(scores_of(run_results), qrels, [MEASURE])[MEASURE]

        bm25 = ndcg(map(in_given_order, done))
        row = set_record(name, bm25, {d: ndcg(r) for d, r in results.items()}, seconds)
        yield {**row, "complete": len(done) == len(loaded.requests), "queries_of_set": len(loaded.requests)}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rankers, load_seconds = load_rankers(args.model)
    record = {
        "tool": "tools/bench_dtype.py",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "model": args.model,
        "profile": rankers["float32"].profile.label(),
        "depth": args.depth,
        "max_queries": args.max_queries,
        "machine": machine(),
        "load_seconds": load_seconds,
        "sets": [],
        "missing": list(args.sets),
    }
    for name in args.sets:
        done = record["sets"]
        for row in measure_set(name, rankers, args):  # rewritten after each query: a cut-off run keeps its part
            write({**record, "sets": [*done, row]}, args.output)
        record["sets"].append(row)
        record["missing"].remove(name)
        write(record, args.output)  # the last set's rows were written while it was still missing
        logging.info("%s done: %s; wrote %s", name, _clock(row["seconds"]), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
