"""Load time and peak memory of a model loaded whole against loaded to a profile's depth.

``HeadRanker.from_pretrained`` loads only what the profile reads (``load_model(depth=...)``: the
first ``depth`` layers, no LM head). This measures what that saves, on a random Qwen3 of a
release's shape saved once as safetensors (speed and memory do not depend on the weights),
each load alone in a fresh process (its peak RSS is the load's), best of ``--repeats``:

    python tools/bench_load.py --shape qwen3-0.6b --depth 16 --dtype bfloat16

Writes ``runs/bench_load_<device>.json`` (one record per shape, depth and route).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from headrank_ir.atomic import write_atomic

QWEN3_SHAPES = {  # the releases' config.json values that set the size
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16),
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16),
    "qwen3-4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(QWEN3_SHAPES), nargs="+", default=["qwen3-0.6b"])
    parser.add_argument("--depth", type=int, default=16, help="the profile's depth (default 16)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", help="default: runs/bench_load_<device>.json")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "DEPTH"), help=argparse.SUPPRESS)
    return parser


def save_random(shape: str, dtype: str, folder: Path) -> None:
    """A random Qwen3 of ``shape`` (untied LM head for 4B, as released) and a tokenizer, as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    from headrank_ir.engine.models import resolve_model_folder

    config = Qwen3Config(
        **QWEN3_SHAPES[shape],
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        tie_word_embeddings=shape != "qwen3-4b",
    )
    AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_folder("smollm2-135m")).save_pretrained(folder)


def child(folder: str, depth: str, dtype: str, device: str) -> None:
    from headrank_ir.engine.models import load_model

    start = time.perf_counter()
    model, _ = load_model(folder, dtype=dtype, device=device, depth=int(depth) or None)
    seconds = time.perf_counter() - start
    parameters = sum(p.numel() for p in model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB → GB: this process, imports included
    print(json.dumps({"seconds": seconds, "parameters": parameters, "peak_rss_gb": round(peak, 2)}))


def measure(folder: Path, depth: int, args) -> dict:
    """Best of ``repeats`` fresh-process loads: seconds, peak RSS (GB), parameters loaded."""
    runs = []
    for _ in range(args.repeats):
        command = [sys.executable, __file__, "--child", str(folder), str(depth), "--dtype", args.dtype]
        output = subprocess.run([*command, "--device", args.device], check=True, capture_output=True, text=True)
        runs.append(json.loads(output.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "seconds": round(best["seconds"], 2)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        child(*args.child, args.dtype, args.device)
        return 0
    records = []
    for shape in args.shape:
        with tempfile.TemporaryDirectory() as folder:
            save_random(shape, args.dtype, Path(folder))
            for depth in (0, args.depth):  # 0: the whole causal LM
                record = {"shape": shape, "dtype": args.dtype, "device": args.device, "depth": depth or None}
                record.update(measure(Path(folder), depth, args))
                records.append(record)
                print(json.dumps(record), flush=True)
    output = Path(args.output or f"runs/bench_load_{args.device}.json")
    write_atomic(output, json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
