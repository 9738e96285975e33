"""Calibration folded into the main forward against its own second pass, on the same plans.

Two ``HeadReader`` over one model differ only in ``fold_calibration``: "two_pass" reads each
group's prompts in a causal forward, keeping the cache, then the calibration tails over it
under a 4-D mask; "folded" reads ``[prompt, padding, tail]`` rows in one forward under the
same ``tails × T`` mask, the prompts kept causal (attention.py's ``_folded_attention``). For
each passage count and batch size (that many queries of the run, planned once, outside the
clock) ``read_plans`` runs in turns, after one warm-up each; reported per row: the best and
median seconds of each route over ``--repeats`` turns, folded/two_pass, the largest difference
between their calibrated head scores, the peak memory of one more call of each (CPU: peak RSS
reset before it; CUDA: ``max_memory_allocated``) and the tails' mask bytes per row (both routes
make it). One JSON list of rows.

    python tools/bench_calibration.py --passages 20 100 --batch-sizes 1 4 --threads 1 \\
        --output runs/bench_calibration_cpu.json
    python tools/bench_calibration.py --config qwen3-0.6b --device cuda --dtype bfloat16 \\
        --batch-sizes 1 8 32 --output runs/bench_calibration_gpu.json        # random weights
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from bench_engine import DL19, QWEN3_SHAPES, load, peak_mb, reset_peak
from bench_throughput import head_profile, timed

from headrank_ir.atomic import write_atomic

ROUTES = {"two_pass": False, "folded": True}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--config", choices=sorted(QWEN3_SHAPES), help="random Qwen3 of this shape instead of --model")
    parser.add_argument("--tokenizer", help="tokenizer folder for --config (default: smollm2-135m's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # bench_engine.load reads it: SDPA, not eager
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--data", default=str(DL19), help="folder with topics.tsv, run.bm25.txt, corpus.jsonl")
    parser.add_argument("--passages", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--profile", default="all:24", help="HEADS:LAYERS, as tools/bench_throughput.py reads it")
    parser.add_argument("--batch-tokens", type=int, help="padded tokens per forward (default: the reader's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--output", default="runs/bench_calibration_cpu.json")
    return parser


def requests(data, count: int, queries: int):
    """The run's first ``queries`` queries with at least ``count`` hits, each with its top ``count``."""
    from pathlib import Path

    from headrank_ir.pipeline.firststage import requests_from_run
    from headrank_ir.pipeline.readers import read_topics_file, read_trec_run

    data = Path(data)
    run = read_trec_run(data / "run.bm25.txt")
    deep = {qid for qid, hits in run.hits.items() if len(hits) >= count}
    every = requests_from_run(read_topics_file(data / "topics.tsv"), run, data / "corpus.jsonl", count)
    chosen = [r for r in every if r.query.qid in deep][:queries]
    return [(r.query.text, [c.text for c in r.candidates]) for r in chosen]


def cell(args, readers, count: int, batch: int) -> dict:
    import torch

    pairs = requests(args.data, count, batch)
    plans = [readers["two_pass"].plan(query, passages) for query, passages in pairs]
    steps = {name: (lambda reader=reader: reader.read_plans(plans)) for name, reader in readers.items()}
    readings = {name: step() for name, step in steps.items()}  # warm-up, and the scores compared
    difference = max(
        float((a - b).abs().max())
        for x, y in zip(readings["two_pass"], readings["folded"])
        for a, b in zip(x.head_scores, y.head_scores)
    )
    seconds = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            seconds[name].append(timed(args.device, step))
    peaks = {}
    for name, step in steps.items():
        reset_peak(args.device)
        step()
        peaks[name] = round(peak_mb(args.device), 1)
    jobs = [job for _, batch_jobs in plans for job in batch_jobs]
    tails = max(len(job.blank.input_ids) - job.prefix for job in jobs)
    widest = max(len(job.real.input_ids) for job in jobs) + tails
    row = {"passages": count, "queries": len(pairs), "windows": len(jobs), "longest_folded_row": widest}
    for name, times in seconds.items():
        row[f"{name}_best_s"] = round(min(times), 3)
        row[f"{name}_median_s"] = round(statistics.median(times), 3)
        row[f"{name}_peak_mb"] = peaks[name]
    row["folded/two_pass_best"] = round(min(seconds["folded"]) / min(seconds["two_pass"]), 3)
    row["folded/two_pass_median"] = round(
        statistics.median(seconds["folded"]) / statistics.median(seconds["two_pass"]), 3
    )
    row["max_abs_score_difference"] = difference
    row["tail_mask_kb_per_row_at_longest"] = round(tails * widest / 2**10, 1)  # bool: tails × T
    row.update(threads=torch.get_num_threads(), load_average=open("/proc/loadavg").read().split()[:3])
    return row


def main(argv=None) -> int:
    import torch

    from headrank_ir.engine.profile import PromptSettings
    from headrank_ir.engine.reader import HeadReader

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model, tokenizer = load(args)
    config = model.config.get_text_config()
    passage_tokens = PromptSettings().max_passage_tokens
    profile = head_profile(
        args.profile, args.model, config.num_hidden_layers, config.num_attention_heads, passage_tokens
    )
    readers = {
        name: HeadReader(model, tokenizer, profile, args.batch_tokens, fold_calibration=fold)
        for name, fold in ROUTES.items()
    }
    rows = []
    for count in args.passages:
        for batch in args.batch_sizes:
            row = {**cell(args, readers, count, batch), "profile": args.profile, "model": args.config or args.model}
            row.update(device=args.device, dtype=args.dtype, repeats=args.repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_atomic(args.output, json.dumps(rows, indent=1) + "\n")  # each row kept as it comes
    return 0


if __name__ == "__main__":
    sys.exit(main())
