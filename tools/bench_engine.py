"""Engine cost against its floor and the naive route, for one query with 20 and 100 passages.

(a) floor: one plain SDPA forward of the prompt through the same truncated layers, each whole;
(b) engine: ``HeadRanker.score`` (prompt layout, prefix + query pass, N/A calibration on the
    reused cache, partial attention rows of every head of those layers). Its deepest layer
    computes only the queries and keys the rows need (``KeyOnlyLayer``), so where that layer is
    a visible share of the depth the engine can come in under the floor;
(c) naive: eager attention with ``output_attentions`` through the full model, real and N/A
    prompts each computed whole, rows read from the returned T×T maps.

Each route runs in its own child process, so its peak memory is its own: on CPU the peak RSS
(VmHWM, reset after the model is loaded), on CUDA ``max_memory_allocated``. Floor and engine
are timed in one more process, in alternation; each time is the best of ``--repeats`` after one
warm-up (the least disturbed by other work), wall-clock and process CPU time (``*_cpu_s``; with
one thread, the compute without the waits for a core that a shared machine adds). Results: one
JSON object per passage count, with the load average as it was taken.

    python tools/bench_engine.py --passages 20 100 --repeats 3
    OMP_NUM_THREADS=1 python tools/bench_engine.py --passages 20 --repeats 3   # shared machine
    python tools/bench_engine.py --config qwen3-0.6b --device cuda --dtype bfloat16   # random weights
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from headrank_ir.atomic import write_atomic

ROUTES = ("floor", "engine", "naive")  # each alone in a process, for its peak memory
DL19 = Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco-passage" / "dl19"

# Shapes of the Qwen3 releases; speed does not depend on the weights, so random ones do.
QWEN3_SHAPES = {
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16),
    "qwen3-4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="model name, folder or HF id (default smollm2-135m)")
    parser.add_argument("--config", choices=sorted(QWEN3_SHAPES), help="random Qwen3 of this shape instead of --model")
    parser.add_argument("--tokenizer", help="tokenizer folder for --config (default: smollm2-135m's)")
    parser.add_argument("--passages", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, help="truncation depth (default: 4/5 of the model's layers)")
    parser.add_argument("--data", default=str(DL19), help="folder with topics.tsv, run.bm25.txt, corpus.jsonl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--output", default="runs/bench_engine.json")
    parser.add_argument("--child", choices=(*ROUTES, "pair"), help=argparse.SUPPRESS)
    return parser


# -- child: one route, one passage count -----------------------------------------------------------


def load(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    from headrank_ir.engine.models import load_model, resolve_model_folder

    dtype = getattr(torch, args.dtype)
    attn = "eager" if args.child == "naive" else "sdpa"
    if args.config:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or resolve_model_folder("smollm2-135m"))
        config = Qwen3Config(
            **QWEN3_SHAPES[args.config],
            num_key_value_heads=8,
            head_dim=128,
            vocab_size=151936,
            max_position_embeddings=40960,
            tie_word_embeddings=True,
        )
        config._attn_implementation = attn
        with torch.device(args.device):  # initialise in place: billions of random weights
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        model, tokenizer = load_model(args.model, dtype=dtype, device=args.device)
        model.set_attn_implementation(attn)
    return model.to(args.device).eval(), tokenizer


def first_query(data: Path, count: int):
    from headrank_ir.pipeline.firststage import requests_from_run
    from headrank_ir.pipeline.readers import read_topics_file, read_trec_run

    run = read_trec_run(data / "run.bm25.txt")
    qid = next(q for q in sorted(run.hits) if len(run.hits[q]) >= count)
    requests = requests_from_run(read_topics_file(data / "topics.tsv"), run, data / "corpus.jsonl", count)
    request = next(r for r in requests if r.query.qid == qid)
    return request.query.text, [c.text for c in request.candidates]


def naive_scores(model, tokenizer, profile, query, passages):
    """The route the engine replaces: full-depth eager maps, real and N/A prompts each whole."""
    import torch

    from headrank_ir.engine.prompt import build_layout
    from headrank_ir.engine.reader import passage_mass

    masses = []
    for text in (query, profile.prompt.calibration_query):
        layout = build_layout(tokenizer, text, passages, profile.prompt)
        ids = torch.tensor([layout.input_ids], device=model.device)
        maps = model(ids, output_attentions=True).attentions
        start, end = layout.query_span
        rows = torch.cat(
            [maps[layer][0, heads, start:end].float().mean(dim=1) for layer, heads, _ in profile.heads_by_layer()]
        )
        masses.append(passage_mass(rows, layout.passage_spans))
    return masses[0] - masses[1]


def naive_fits(model, tokens: int, device: str) -> bool:
    """Whether every layer's T×T maps (kept by output_attentions) fit in memory."""
    import torch

    config = model.config
    need = config.num_hidden_layers * config.num_attention_heads * tokens**2 * model.dtype.itemsize * 1.3
    if device.startswith("cuda"):
        return need < torch.cuda.mem_get_info()[0]
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return need < 0.8 * available


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024


def run_child(args) -> dict:
    import torch

    from headrank_ir.engine.profile import HeadProfile, PromptSettings
    from headrank_ir.engine.prompt import build_layout
    from headrank_ir.engine.ranker import HeadRanker

    torch.set_grad_enabled(False)
    model, tokenizer = load(args)
    count = args.passages[0]
    query, passages = first_query(Path(args.data), count)
    heads = model.config.num_attention_heads
    profile = HeadProfile(
        args.model,
        tuple((l, h, 1.0) for l in range(args.layers) for h in range(heads)),
        PromptSettings(max_context_tokens=10**6),  # one window: the point is one forward
    )
    tokens = len(build_layout(tokenizer, query, passages, profile.prompt).input_ids)
    if args.child == "naive":
        if not naive_fits(model, tokens, args.device):
            return {"tokens": tokens, "seconds": {"naive": None}, "peak_mb": None}
        steps = {"naive": lambda: naive_scores(model, tokenizer, profile, query, passages)}
    else:
        ranker = HeadRanker(model, tokenizer, profile)
        ids = torch.tensor([build_layout(tokenizer, query, passages, profile.prompt).input_ids], device=args.device)
        both = {
            "floor": lambda: ranker.reader.truncated.base(input_ids=ids, use_cache=False),
            "engine": lambda: ranker.score(query, passages),
        }
        steps = both if args.child == "pair" else {args.child: both[args.child]}
    try:
        for step in steps.values():
            step()  # warm-up
    except torch.OutOfMemoryError:  # the estimate let it try; it still does not fit
        return {"tokens": tokens, "seconds": dict.fromkeys(steps), "cpu_seconds": dict.fromkeys(steps), "peak_mb": None}
    reset_peak(args.device)
    seconds, cpu_seconds = interleaved_best(steps, args.repeats, args.device)
    return {"tokens": tokens, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": peak_mb(args.device)}


def interleaved_best(steps: dict, repeats: int, device: str) -> tuple:
    """Best wall-clock and best process CPU time of each step over ``repeats`` rounds that run
    every step once, in turn.

    Interleaving exposes the steps to the same background load, so their ratio holds up on a
    shared machine better than back-to-back series would. On the CPU with one thread
    (``OMP_NUM_THREADS=1``) the CPU time is the compute itself, which other processes' load
    moves far less than the wall-clock (waiting for a core is not counted).
    """
    import torch

    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: min(times) for name, times in wall.items()}, {name: min(times) for name, times in cpu.items()}


# -- parent: every route in its own process ----------------------------------------------------------


def measure(args, route: str, count: int, memory_only: bool = False) -> dict:
    """One child process; ``memory_only``: one run after the warm-up (its times are not used)."""
    argv = [sys.argv[0], *sys.argv[1:], "--child", route, "--passages", str(count), "--layers", str(args.layers)]
    argv += ["--repeats", "1"] if memory_only else []  # the last --repeats wins
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{route} at {count} passages failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def default_layers(args) -> int:
    if args.config:
        total = QWEN3_SHAPES[args.config]["num_hidden_layers"]
    else:
        from transformers import AutoConfig

        from headrank_ir.engine.models import resolve_model_folder

        total = AutoConfig.from_pretrained(resolve_model_folder(args.model)).num_hidden_layers
    return max(1, round(total * 4 / 5))


def rounded(value, digits=3):
    return None if value is None else round(value, digits)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    args.layers = args.layers or default_layers(args)
    rows = []
    for count in args.passages:
        # floor and engine are timed together in the "pair" child; naive is timed alone
        routes = {route: measure(args, route, count, memory_only=route != "naive") for route in ROUTES}
        pair = measure(args, "pair", count)
        seconds = {**pair["seconds"], "naive": routes["naive"]["seconds"]["naive"]}
        row = {"passages": count, "tokens": routes["engine"]["tokens"], "layers": args.layers}
        row.update({f"{r}_s": rounded(seconds[r]) for r in ROUTES})
        row.update({f"{r}_cpu_s": rounded(pair["cpu_seconds"][r]) for r in ("floor", "engine")})
        row.update({f"{r}_rss_mb": rounded(routes[r]["peak_mb"], 1) for r in ROUTES})
        row.update(model=args.config or args.model, device=args.device, dtype=args.dtype, repeats=args.repeats)
        row["load_average"] = round(os.getloadavg()[0], 2)  # 1-minute, as the row is taken: times swing with it
        row["memory"] = "cuda max_memory_allocated" if args.device.startswith("cuda") else "peak RSS after model load"
        rows.append(row)
        print_row(row)
        write_atomic(args.output, json.dumps(rows, indent=1) + "\n")  # each row kept as it comes
    return 0


def print_row(row: dict) -> None:
    def ratio(a, b):
        return "n/a" if row[a] is None or row[b] is None else f"{row[a] / row[b]:.2f}x"

    print(
        f"{row['model']} {row['device']} {row['passages']} passages, {row['tokens']} tokens, {row['layers']} layers: "
        f"floor {row['floor_s']} s / {row['floor_rss_mb']} MB, engine {row['engine_s']} s / {row['engine_rss_mb']} MB, "
        f"naive {row['naive_s']} s / {row['naive_rss_mb']} MB; engine/floor {ratio('engine_s', 'floor_s')}, "
        f"naive/engine {ratio('naive_s', 'engine_s')}; CPU time engine/floor {ratio('engine_cpu_s', 'floor_cpu_s')}; "
        f"load average {row['load_average']}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
