"""The preflight's prompt check with and without its byte-count shortcut, in one run.

``engine.checks.check_prompts_fit`` passes a query whose longest passage fits at one token per
byte without tokenising its passages; this times it against planning every query (what it did
before, and still does for a tokenizer that is not byte-level BPE), on DL19's BM25 run, best of
``--repeats``, alternating. Prints one JSON object per depth.

    python tools/bench_preflight.py --depths 20 100
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/msmarco-passage/dl19")
    args = parser.parse_args(argv)

    from transformers import AutoConfig, AutoTokenizer

    from headrank_ir.engine import checks
    from headrank_ir.engine.models import resolve_model_folder
    from headrank_ir.engine.profile import resolve_profile
    from headrank_ir.pipeline.firststage import requests_from_run
    from headrank_ir.pipeline.readers import read_topics_file, read_trec_run

    folder = resolve_model_folder(args.model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    profile = resolve_profile(args.model, None)
    context = profile.prompt.max_context_tokens or AutoConfig.from_pretrained(folder).max_position_embeddings
    byte_level = checks._byte_level_normalizer
    routes = {"shortcut": byte_level, "plan every query": lambda tokenizer: None}
    for depth in args.depths:
        run = read_trec_run(args.data / "run.bm25.txt")
        requests = requests_from_run(read_topics_file(args.data / "topics.tsv"), run, args.data / "corpus.jsonl", depth)
        best = dict.fromkeys(routes, float("inf"))
        for _ in range(args.repeats):
            for route, normalizer in routes.items():
                checks._byte_level_normalizer = normalizer
                began = time.perf_counter()
                checks.check_prompts_fit(tokenizer, profile, context, requests, depth)
                best[route] = min(best[route], time.perf_counter() - began)
        checks._byte_level_normalizer = byte_level
        row = {"model": args.model, "depth": depth, "queries": len(requests)}
        row.update({f"{route} s": round(seconds, 4) for route, seconds in best.items()})
        row["ratio"] = round(best["plan every query"] / best["shortcut"], 1)
        row["load_average"] = round(os.getloadavg()[0], 2)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
