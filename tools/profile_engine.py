"""Where one query's time goes: torch's operator profile of ``HeadRanker.rank`` per dtype.

Loads the model once per dtype (the shipped profile, so the engine's truncated depth), ranks the
first DL19 query with ``--passages`` passages once to warm up, then once under
``torch.profiler``, and writes each dtype's table of operators by self CPU time (the answer to
"which kernel did bfloat16 not speed up"), then times one layer's causal attention at the
query's length by kernel (flash, math, and a hand-written one with bfloat16 products and a
float32 softmax): what there is to switch to. Writes a markdown record (default
``runs/profile_engine_cpu.md``).

    OMP_NUM_THREADS=1 python tools/profile_engine.py --dtypes float32 bfloat16
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import first_query  # noqa: E402  (the query bench_engine times)

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="model name, folder or HF id (default smollm2-135m)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--passages", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=12, help="operators per table (default 12)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/msmarco-passage/dl19")
    parser.add_argument("--output", type=Path, default=REPO / "runs/profile_engine_cpu.md")
    return parser


def profile_one(ranker, dtype: str, query: str, passages: list[str], rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    ranker.rank(query, passages)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ranker.reader.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        ranker.rank(query, passages)
        seconds = time.perf_counter() - began
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return f"## {dtype}: `rank` {seconds:.2f} s under the profiler\n\n```\n{table}\n```\n"


def attention_kernels(args, model_config, tokens: int) -> str:
    """Best of 3 seconds of one layer's causal attention (the model's head shape) per kernel and dtype."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    heads, width = model_config.num_attention_heads, model_config.head_dim
    mask = torch.ones(tokens, tokens, dtype=torch.bool, device=args.device).tril()

    def by_hand(q, k, v):
        scores = (q @ k.transpose(-1, -2)) * width**-0.5
        probabilities = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1, dtype=torch.float32)
        return probabilities.to(q.dtype) @ v

    def kernel(backend):
        def attend(q, k, v):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        return attend

    kernels = {"flash": kernel(SDPBackend.FLASH_ATTENTION), "math": kernel(SDPBackend.MATH), "by hand": by_hand}
    lines = ["| dtype | " + " | ".join(kernels) + " |", "| --- |" + " ---: |" * len(kernels)]
    for dtype in args.dtypes:
        q, k, v = (torch.randn(1, heads, tokens, width, dtype=getattr(torch, dtype), device=args.device) for _ in "qkv")
        cells = []
        for attend in kernels.values():
            attend(q, k, v)
            times = []
            for _ in range(3):
                began = time.perf_counter()
                attend(q, k, v)
                times.append(time.perf_counter() - began)
            cells.append(f"{min(times):.3f}")
        lines.append(f"| {dtype} | " + " | ".join(cells) + " |")
    title = f"## One layer's causal attention, {heads} heads × {width}, {tokens} tokens: seconds by kernel"
    return title + "\n\n" + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    query, passages = first_query(args.data, args.passages)
    from headrank_ir import HeadRanker
    from headrank_ir.engine.prompt import build_layout

    sections = []
    for dtype in args.dtypes:
        ranker = HeadRanker.from_pretrained(args.model, device=args.device, dtype=dtype)
        sections.append(profile_one(ranker, dtype, query, passages, args.rows))
    tokens = len(build_layout(ranker.reader.tokenizer, query, passages, ranker.profile.prompt).input_ids)
    sections.append(attention_kernels(args, ranker.reader.model.config, tokens))
    head = (
        f"# Operator profile of one query: {args.model}, {args.passages} passages, {args.device}\n\n"
        f"`python tools/profile_engine.py --dtypes {' '.join(args.dtypes)} --passages {args.passages}`; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f} at the end.\n\n"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".tmp")
    temporary.write_text(head + "\n".join(sections))
    temporary.replace(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
