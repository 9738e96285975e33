"""Single process against ``--ray`` with 1 and 2 workers on the same DL19 queries: Ray's own
overhead and the speed-up of more workers, as ratios measured side by side.

Each configuration is one whole ``python -m headrank_ir.rerank`` in a child process (start-up,
model loads, Ray start, ranking, writing), every process (the single one, each Ray worker) with
``--threads`` torch threads, so that Ray's overhead is measured at equal compute. The
configurations alternate within each round, in an order rotated from round to round, so a change
in the machine's other load falls on all of them; the load average is recorded with every run.
Every run file must be byte-identical to the single-process one. Then, in this process, the same
``--ab-queries`` are ranked alternately here and by one Ray worker, ``--ab-rounds`` times: Ray's
own cost per batch, free of start-up and of the load changing between whole runs. Results: one
JSON record per run, and a Markdown table of the ratios.

    python tools/bench_ray.py --queries 8 --rounds 3 --workers 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from headrank_ir.atomic import write_atomic

REPO = Path(__file__).resolve().parents[1]
DL19 = REPO.parent / "shared" / "data" / "msmarco-passage" / "dl19"
SINGLE = "single"
# From the command's last line: "reranked N queries, P passages in S s (...)".
RANKED = re.compile(r"reranked (\d+) queries, (\d+) passages in ([\d.]+) s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=str(DL19), help="folder with topics.tsv, run.bm25.txt, corpus.jsonl")
    parser.add_argument("--queries", type=int, default=16, help="the first N queries of the topics")
    parser.add_argument("--depth", type=int, default=20, help="passages reranked per query (also the hits read)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes to compare")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process (OMP_NUM_THREADS)")
    parser.add_argument("--ab-queries", type=int, default=3, help="queries of the in-process A/B")
    parser.add_argument("--ab-rounds", type=int, default=2)
    parser.add_argument(
        "--driver-writes", type=int, default=500, help="queries of 100 passages the driver's RunWriter writes, timed"
    )
    parser.add_argument("--output", default="runs/ray_cpu", help="writes OUTPUT.json and OUTPUT.md")
    return parser


def command(args: argparse.Namespace, config: str, output: Path) -> list[str]:
    data = Path(args.data)
    argv = [sys.executable, "-m", "headrank_ir.rerank", "--model", args.model]
    argv += ["--run", str(data / "run.bm25.txt"), "--corpus", str(data / "corpus.jsonl")]
    argv += ["--topics", str(data / "topics.tsv"), "--max-queries", str(args.queries)]
    argv += ["--hits", str(args.depth), "--depth", str(args.depth), "--no-resume", "--output", str(output)]
    return argv if config == SINGLE else [*argv, "--ray", "--workers", config.removeprefix("ray-")]


def run_once(args: argparse.Namespace, config: str, folder: Path, round_: int) -> dict:
    """One whole run of ``config``: wall time, the command's own ranking time, load averages."""
    output = folder / f"{config}.txt"
    load_before = os.getloadavg()
    began = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command(args, config, output), cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
    queries, passages, ranking = RANKED.search(done.stdout).groups()
    return {
        "config": config,
        "round": round_,
        "queries": int(queries),
        "passages": int(passages),
        "wall_s": round(wall, 2),
        "ranking_s": float(ranking),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def in_process_ab(args: argparse.Namespace) -> list[dict]:
    """The same batches (one query each), ranked alternately in this process and by one Ray worker,
    both with ``--threads`` torch threads."""
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the Ray worker keeps to the driver's value
    import torch

    from headrank_ir.command_helpers import requests_from_args
    from headrank_ir.engine.ranker import HeadRanker
    from headrank_ir.pipeline.distributed import RayPool, rank_batch
    from headrank_ir.rerank import build_parser

    torch.set_num_threads(args.threads)
    flags = command(args, SINGLE, Path("unused"))[3:]  # the first-stage flags of the runs above
    batches = [[r] for r in requests_from_args(build_parser().parse_args(flags))[: args.ab_queries]]
    load = partial(HeadRanker.from_pretrained, args.model)
    ranker, rounds = load(), []
    with RayPool(load, args.depth, None, 1) as pool:
        for round_ in range(1, args.ab_rounds + 1):
            began = time.perf_counter()
            for batch in batches:
                rank_batch(ranker, batch, args.depth)
            here = time.perf_counter() - began
            began = time.perf_counter()
            list(pool.ranked(batches))
            on_ray = time.perf_counter() - began
            load_now = round(os.getloadavg()[0], 2)
            rounds.append(
                {"round": round_, "in_process_s": round(here, 2), "ray_s": round(on_ray, 2), "loadavg": load_now}
            )
    return rounds


DRIVER_BATCH = 32  # queries per batch a worker returns at --batch-size 32


def driver_write_rate(queries: int, folder: Path) -> float:
    """Queries per second that one driver writes (TREC, 100 candidates, synced once per batch of
    ``DRIVER_BATCH`` queries, as ``rerank_into`` does): the ceiling of a cluster's throughput,
    however many workers it has."""
    from headrank_ir.pipeline.runfile import RunWriter
    from headrank_ir.records import Candidate, Query, Result

    results = [
        Result(Query("query", f"q{q}"), [Candidate(f"d{q}-{c}", 1.0 / (c + 1), {}) for c in range(100)])
        for q in range(queries)
    ]
    with RunWriter(folder / "writes.txt", {"bench": "driver writes"}, resume=False) as writer:
        began = time.perf_counter()
        for start in range(0, len(results), DRIVER_BATCH):
            for result in results[start : start + DRIVER_BATCH]:
                writer.write(result)
            writer.sync()
        seconds = time.perf_counter() - began
        writer.finish()
    return queries / seconds


def ratios(records: list[dict], configs: list[str]) -> dict[str, dict[str, float]]:
    """Per round, each configuration's wall and ranking time over the single process's; median of rounds."""
    by_round: dict[int, dict[str, dict]] = {}
    for r in records:
        by_round.setdefault(r["round"], {})[r["config"]] = r
    summary = {}
    for config in configs:
        for key in ("wall_s", "ranking_s"):
            values = [runs[config][key] / runs[SINGLE][key] for runs in by_round.values()]
            summary.setdefault(config, {})[f"{key}_over_single"] = round(statistics.median(values), 3)
    return summary


def markdown(
    args: argparse.Namespace, records: list[dict], summary: dict, configs: list[str], writes: float, ab: list[dict]
) -> str:
    loads = [x for r in records for x in (r["loadavg_before"][0], r["loadavg_after"][0])]
    lines = [
        f"# Ray on CPU: {args.model}, DL19 first {args.queries} queries, BM25 top-{args.depth} reranked",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, no GPU; shared with other jobs "
        f"(1-minute load average {min(loads):.2f}–{max(loads):.2f} during the runs). "
        f"{args.rounds} rounds, the configurations alternating within each round (order rotated). `single`: the "
        f"plain command; `ray-N`: `--ray --workers N`, a local Ray instance started by the command. "
        f"Every process (the single one, each Ray worker) with OMP_NUM_THREADS={args.threads} torch threads.",
        "",
        "Command: `python tools/bench_ray.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "Ratios are per round against that round's single-process run, median over rounds. *Wall*: "
        "the whole command (Python start, model loads, Ray start-up, ranking, writing). *Ranking*: "
        "the command's own ranking time (after the models are loaded).",
        "",
        "| config | wall / single | ranking / single | median wall s | median ranking s | identical bytes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for config in configs:
        runs = [r for r in records if r["config"] == config]
        ratio = summary[config]
        lines.append(
            f"| {config} | {ratio['wall_s_over_single']:.3f} | {ratio['ranking_s_over_single']:.3f} "
            f"| {statistics.median(r['wall_s'] for r in runs):.1f} "
            f"| {statistics.median(r['ranking_s'] for r in runs):.1f} "
            f"| {all(r['identical_to_single'] for r in runs)} |"
        )
    lines += [
        "",
        f"In one process, the first {args.ab_queries} queries ranked alternately here and by one Ray worker "
        f"(same model, {args.threads} torch thread(s) each): Ray / in-process = "
        f"**{summary['ab_ray_over_in_process']:.3f}** (median of {args.ab_rounds} rounds; "
        + "; ".join(f"{r['in_process_s']:.1f} s vs {r['ray_s']:.1f} s at load {r['loadavg']:.2f}" for r in ab)
        + ").",
        "",
        f"The driver's `RunWriter` wrote {writes:.0f} queries/s ({args.driver_writes} queries of 100 "
        "passages, TREC, run file and journal fsynced after each query, on this machine's disk).",
    ]
    lines += ["", "Every run (seconds; load average = 1-minute, before → after):", ""]
    lines += ["| round | config | wall s | ranking s | load average |", "| --- | --- | --- | --- | --- |"]
    for r in records:
        load = f"{r['loadavg_before'][0]:.2f} → {r['loadavg_after'][0]:.2f}"
        lines.append(f"| {r['round']} | {r['config']} | {r['wall_s']:.1f} | {r['ranking_s']:.1f} | {load} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configs = [SINGLE, *(f"ray-{n}" for n in args.workers)]
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for round_ in range(1, args.rounds + 1):
            shift = round_ % len(configs)  # each configuration runs first in some round
            for config in configs[shift:] + configs[:shift]:
                records.append(run_once(args, config, folder, round_))
                print(json.dumps(records[-1]), flush=True)
            single = (folder / f"{SINGLE}.txt").read_bytes()
            for record in records[-len(configs) :]:
                record["identical_to_single"] = (folder / f"{record['config']}.txt").read_bytes() == single
        writes = round(driver_write_rate(args.driver_writes, folder), 1)
    ab = in_process_ab(args)
    summary = ratios(records, configs)
    output = Path(args.output)
    summary["ab_ray_over_in_process"] = round(statistics.median(r["ray_s"] / r["in_process_s"] for r in ab), 3)
    record = {"summary": summary, "driver_writes_per_s": writes, "in_process_ab": ab, "runs": records}
    write_atomic(output.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    table = markdown(args, records, summary, configs, writes, ab)
    write_atomic(output.with_suffix(".md"), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
