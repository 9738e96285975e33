"""GPU acceptance of issue 24: random-weight Qwen3-0.6B/4B shapes, no hub, under 8 minutes on
one H100/H200. Sections, in order (``--budget`` skips what no longer fits):

1. ``exact``: each window's calibrated head scores against eager attention's full maps of the same
   prompts (fp32 eager as the reference), in fp32, bf16 and fp16 (CUDA only), on a small model
   with Qwen3's head layout (16 query / 8 kv heads of 128); several windows per query, several
   queries per group. PASS: fp32 within 1e-4 of the largest score; half precision finite and
   within max(2 x eager's own error in that dtype, 0.02).
2. ``syncs``: a batch of 0.6B-shape bf16 prompts, ``read_plans`` counted as
   ``tools/bench_throughput.py`` counts (host reads of tensors inside it, outside its one
   download), and on CUDA ``read_jobs`` under ``torch.cuda.set_sync_debug_mode`` "warn"
   (warnings counted) and "error" (raises on the first sync). PASS: 0 per group.
3. ``invariance``: scores of 32 queries x 20 passages read in batches of 1, 8 and 32 (fp32,
   bf16): every score within tests/test_batch_invariance.py's bound of batch 1's, the same order
   but between scores closer than twice the bound.
4. ``throughput``: per cell (shape, dtype, passages, batch size) at least 4 batches, best of 3
   repeats after a warm-up: the engine (``rerank_batches``: plan, read, merge, place; no run
   writer) against the floor (a plain forward of the same padded prompts in the same groups
   through the same truncated layers); q/s, engine/floor, peak memory, syncs per group, the
   share of planning hidden (planning ahead runs in a planner process: it is clocked apart, in
   turn). Cells: 0.6B bf16 at 20/100 passages x batch 1/8/32, 4B bf16 at 100
   and 20 passages x 32, 0.6B fp32 at 100 passages (memory: it must not run out).
5. PASS/MISS against the targets: 0.6B shape, bf16, 16 heads within 16 layers, batch 32:
   >= 100 q/s at 20 passages, >= 25 q/s at 100, engine <= 1.25 x floor; 0 syncs in a group;
   4B shape: >= 10 q/s at 100 passages.

Models have only the profile's 16 layers (as ``load_model(depth=)`` loads them); texts are words
of this checkout's README and docs; the tokenizer is a folder (default smollm2-135m's). One JSON
(``--output``), rewritten after each section, and a summary on stdout. Exit status 0, or 2 when a
section raised (its error is in the JSON).

On a lent GPU machine, whose image has a CUDA torch but an older transformers and where
``../shared`` and the model cache do not travel: here, once, from the checkout root,

    bash tools/gpu_acceptance_prepare.sh     # .carry/: transformers and regex wheels, tokenizer

then the device tool's ``run`` with ``carry=[".carry"]``, ``timeout_s=560`` and this command (one
line; about 20 MB travel besides the checkout):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site
    .carry/wheels/*.whl && HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3
    tools/gpu_acceptance.py --tokenizer .carry/tokenizer --output $OUT/gpu_acceptance.json 2>&1 |
    tee $OUT/gpu_acceptance.log

``PYTHONPATH=.`` rather than ``pip install -e .``: an editable install needs setuptools from an
index, and the machine reaches none; /tmp/site first, so the carried transformers wins over the
image's. The JSON comes back under the call's ``files_at``: copy it to ``runs/`` and commit it.

A CPU smoke test of every section with tiny shapes (1-3 minutes):

    python tools/gpu_acceptance.py --device cpu --tiny --output /tmp/gpu_acceptance.tiny.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback

from bench_engine import peak_mb, reset_peak
from bench_throughput import HostCrossings, MethodClock, cuda_sync_mode, head_profile, hidden_share
from gpu_plan import (
    BOUND,
    GPU,
    SHAPES,
    TINY,
    build,
    clocked,
    dtypes,
    judge,
    make_requests,
    order_change,
    print_summary,
    ranker_for,
    synchronize,
    targets,
    throughput_cells,
    verdicts,
    word_pool,
)

from headrank_ir.atomic import write_atomic
from headrank_ir.engine.planning import plan_requests


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="tokenizer folder (default: smollm2-135m's)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and sizes: a smoke test for the CPU")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later sections and cells are skipped")
    parser.add_argument("--output", default="runs/gpu_acceptance.json")
    return parser


# -- sections --------------------------------------------------------------------------------------


def s_env(ctx) -> dict:
    import tokenizers
    import torch
    import transformers

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}
    env.update(tokenizers=tokenizers.__version__, host=f"{platform.machine()}, {torch.get_num_threads()} threads")
    if ctx.device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(ctx.device), cuda=torch.version.cuda)
    return env


def s_exact(ctx) -> list[dict]:
    import torch

    from headrank_ir.engine.profile import HeadProfile, PromptSettings
    from headrank_ir.engine.reader import passage_mass

    plan, tok, device = ctx.plan, ctx.tokenizer, ctx.device
    requests = make_requests(3, 9, (15, 45), 5, ctx.pool)
    queries = [r.query.text for r in requests]
    lists = [[c.text for c in r.candidates][:n] for r, n in zip(requests, (6, 3, 9))]
    profile = HeadProfile("acceptance", plan.exact_heads, PromptSettings(max_context_tokens=520))  # 2+ windows
    layers = profile.depth
    reference = build(plan, plan.exact_shape, layers, device, torch.float32, "eager", vocab=len(tok))
    state = reference.state_dict()
    by_layer = profile.heads_by_layer()

    def eager_scores(eager, job):
        masses = []
        for layout in (job.real, job.blank):
            with torch.inference_mode():
                ids = torch.tensor([layout.input_ids], device=device)
                maps = eager(ids, output_attentions=True).attentions
            start, end = layout.query_span
            rows = torch.cat([maps[layer][0, heads, start:end].float().mean(dim=1) for layer, heads, _ in by_layer])
            masses.append(passage_mass(rows, layout.passage_spans))
        return (masses[0] - masses[1]).cpu()

    reference_scores, rows = None, []
    for dtype in dtypes(device):
        model = build(plan, plan.exact_shape, layers, device, getattr(torch, dtype), state=state, vocab=len(tok))
        eager = build(plan, plan.exact_shape, layers, device, getattr(torch, dtype), "eager", state, len(tok))
        reader = ranker_for(model, tok, profile, batch_tokens=10**7).reader
        plans = [reader.plan(q, p) for q, p in zip(queries, lists)]
        jobs = [job for _, js in plans for job in js]
        got = [s.float() for reading in reader.read_plans(plans) for s in reading.head_scores]
        if reference_scores is None:
            reference_scores = [eager_scores(reference, job) for job in jobs]
        same = [eager_scores(eager, job) for job in jobs]
        scale = max(r.abs().max().item() for r in reference_scores)
        error = max((g - r).abs().max().item() for g, r in zip(got, reference_scores)) / scale
        eager_error = max((e - r).abs().max().item() for e, r in zip(same, reference_scores)) / scale
        finite = all(bool(torch.isfinite(g).all()) for g in got)
        bound = 1e-4 if dtype == "float32" else max(2 * eager_error, 0.02)
        rows.append(
            {
                "dtype": dtype,
                "windows": len(jobs),
                "queries": len(plans),
                "engine_error": error,
                "eager_error": eager_error,
                "bound": bound,
                "finite": finite,
                "verdict": "PASS" if finite and error <= bound else "MISS",
            }
        )
        del model, eager, reader
    return rows


def s_syncs(ctx) -> dict:
    import torch

    plan, device = ctx.plan, ctx.device
    few = plan.passages[0]
    model = ctx.model(plan.small, "bfloat16")
    ranker = ranker_for(model, ctx.tokenizer, ctx.profile(plan.small))
    reader = ranker.reader
    requests = make_requests(min(8, plan.batch_sizes[-1]), few, plan.words, 7, ctx.pool)
    plans = [reader.plan(r.query.text, [c.text for c in r.candidates]) for r in requests]
    reader.read_plans(plans)  # warm-up: kernels chosen, caches made
    with HostCrossings(reader) as crossings:
        reader.read_plans(plans)
    out = {"queries": len(plans), "passages": few, "groups": crossings.counts["upload"]}
    out["host_reads_per_group"] = crossings.summary()["syncs_per_group"]
    out["syncs_per_group"] = out["host_reads_per_group"]
    if device.type == "cuda":
        import warnings

        jobs = [job for _, js in plans for job in js]
        synchronize(device)
        with warnings.catch_warnings(record=True) as caught, cuda_sync_mode(device, "warn"), torch.inference_mode():
            warnings.simplefilter("always")
            reader.read_jobs(jobs)
        out["cuda_sync_warnings"] = sum("synchroniz" in str(w.message) for w in caught)
        out["syncs_per_group"] = out["cuda_sync_warnings"] / max(out["groups"], 1)
        synchronize(device)
        try:
            with cuda_sync_mode(device, "error"), torch.inference_mode():
                reader.read_jobs(jobs)
            out["error_mode"] = "no sync raised"
        except RuntimeError as error:
            out["error_mode"] = f"raised: {str(error)[:300]}"
            out["syncs_per_group"] = max(out["syncs_per_group"], 1 / max(out["groups"], 1))
    out["verdict"] = judge(out["syncs_per_group"], "==", 0)
    return out


def s_invariance(ctx) -> list[dict]:
    plan = ctx.plan
    few, sizes = plan.passages[0], plan.batch_sizes
    requests = make_requests(sizes[-1], few, plan.words, 13, ctx.pool)
    queries, lists = [r.query.text for r in requests], [[c.text for c in r.candidates] for r in requests]
    rows = []
    for dtype in ("float32", "bfloat16"):
        ranker = ranker_for(ctx.model(plan.small, dtype), ctx.tokenizer, ctx.profile(plan.small))
        scores = {}
        for size in sizes:
            scores[size] = [
                s
                for at in range(0, len(queries), size)
                for s in ranker.score_batch(queries[at : at + size], lists[at : at + size])
            ]
        for size in sizes[1:]:
            worst, reordered = order_change(scores[sizes[0]], scores[size], 2 * BOUND[dtype])
            ok = worst <= BOUND[dtype] and not reordered
            rows.append(
                {
                    "dtype": dtype,
                    "batch_size": size,
                    "against": sizes[0],
                    "queries": len(queries),
                    "passages": few,
                    "max_abs_diff": worst,
                    "bound": BOUND[dtype],
                    "queries_reordered": reordered,
                    "verdict": "PASS" if ok else "MISS",
                }
            )
        del ranker
    return rows


def s_throughput(ctx) -> list[dict]:
    import torch

    rows = []
    for shape, dtype, passages, batch_size, batches, repeats in throughput_cells(ctx.plan):
        row = {"shape": shape, "dtype": dtype, "passages": passages, "batch_size": batch_size}
        if ctx.elapsed() > ctx.budget:
            rows.append({**row, "skipped": "over the budget"})
            continue
        try:
            row.update(measure_cell(ctx, shape, dtype, passages, batch_size, batches, repeats))
        except torch.OutOfMemoryError as error:
            row.update(oom=1, error=str(error)[:300])
        rows.append(row)
        print(json.dumps(row), flush=True)
        ctx.cells = rows
        ctx.save("throughput", rows)  # each cell kept as it comes
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def measure_cell(ctx, shape, dtype, passages, batch_size, batches, repeats) -> dict:
    import torch

    from headrank_ir.engine.windows import batch_groups, right_padded

    device = ctx.device
    ranker = ranker_for(ctx.model(shape, dtype), ctx.tokenizer, ctx.profile(shape))
    reader = ranker.reader
    requests = make_requests(batch_size * batches, passages, ctx.plan.words, passages + batch_size, ctx.pool)
    groups = [requests[at : at + batch_size] for at in range(0, len(requests), batch_size)]
    floor_ids = []  # per batch, its padded groups
    for batch in groups:
        prompts = [
            job.real.input_ids for r in batch for job in reader.plan(r.query.text, [c.text for c in r.candidates])[1]
        ]
        floor_ids.append(
            [
                right_padded([prompts[i] for i in g]).to(device)
                for g in batch_groups([len(p) for p in prompts], reader.batch_tokens)
            ]
        )

    def floor():
        with torch.inference_mode():
            for ids in (ids for batch in floor_ids[: len(groups)] for ids in batch):
                reader.truncated.forward(ids)

    def engine(part=None):
        for _ in ranker.rerank_batches(part or groups, rank_end=passages):
            pass

    with HostCrossings(reader) as crossings:  # the warm-up, counted
        warm = clocked(device, lambda: engine(groups[:1])) + clocked(device, floor) / len(groups)
    left = ctx.budget - ctx.elapsed()  # what no longer fits: repeats first, then batches (at least 1)
    while repeats > 1 and warm * len(groups) * repeats > left:
        repeats -= 1
    groups = groups[: max(1, min(len(groups), int(left / warm)))]
    requests = [r for batch in groups for r in batch]
    floor_ids = floor_ids[: len(groups)]
    reset_peak(str(device))
    best = {"floor": float("inf"), "engine": float("inf")}
    # Planning ahead (the GPU default) runs in a planner process, which no clock here sees: its
    # work is timed apart, planning these batches in turn. In turn, the run's own planning is clocked.
    ahead = ranker.overlap

    def planning():
        for batch in groups:
            plan_requests(reader, batch, 0, passages)

    apart = min(clocked(device, planning) for _ in range(repeats)) if ahead else 0.0
    with MethodClock(reader, "plan") as plan, MethodClock(reader, "read_plans") as forward:
        for _ in range(repeats):
            best["floor"] = min(best["floor"], clocked(device, floor))
            plan.seconds = forward.seconds = 0.0
            wall = clocked(device, engine)
            if wall < best["engine"]:
                host = {"plan_s": apart if ahead else plan.seconds, "forward_s": forward.seconds, "wall_s": wall}
            best["engine"] = min(best["engine"], wall)
    count = len(requests)
    return {
        "queries": count,
        "batches": len(groups),
        "repeats": repeats,
        "layers": reader.truncated.depth,
        "heads": len(reader.profile.heads),
        "groups": sum(map(len, floor_ids)),
        "batch_tokens": reader.batch_tokens,
        "padded_tokens_per_group": round(sum(i.numel() for b in floor_ids for i in b) / sum(map(len, floor_ids)), 1),
        "queries_per_s": round(count / best["engine"], 2),
        "floor_queries_per_s": round(count / best["floor"], 2),
        "engine_over_floor": round(best["engine"] / best["floor"], 3),
        "peak_mb": round(peak_mb(str(device)), 1),
        **crossings.summary(),
        **{k: round(v, 4) for k, v in host.items()},
        "hidden_share": round(hidden_share(**host), 3),
        "overlap": ranker.overlap,
        "oom": 0,
    }


# -- driver ----------------------------------------------------------------------------------------


class Context:
    """What the sections share: the plan, the device, the tokenizer, the clock and one model at a time."""

    def __init__(self, args):
        import torch
        from transformers import AutoTokenizer

        from headrank_ir.engine.models import resolve_model_folder

        self.start = time.perf_counter()
        self.plan, self.budget = (TINY if args.tiny else GPU), args.budget
        self.device = torch.device(args.device)
        self.tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or resolve_model_folder("smollm2-135m"))
        self.pool = word_pool()
        self._model, self._key, self.cells = None, None, []
        self.output, self.record = args.output, {"command": sys.argv, "device": str(self.device), "tiny": args.tiny}

    def save(self, section: str, value) -> None:
        self.record[section], self.record["seconds"] = value, round(self.elapsed(), 1)
        write_atomic(self.output, json.dumps(self.record, indent=1) + "\n")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def profile(self, shape: str):
        return head_profile(self.plan.spec, shape, self.depth, SHAPES[shape]["num_attention_heads"], 128)

    @property
    def depth(self) -> int:
        return int(self.plan.spec.partition(":")[2])

    def model(self, shape: str, dtype: str):
        """The random ``shape`` model with the profile's layers in ``dtype``; the previous one freed."""
        import torch

        if self._key != (shape, dtype):
            self._model = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            vocab = len(self.tokenizer) if self.plan is TINY else None
            self._model = build(self.plan, shape, self.depth, self.device, getattr(torch, dtype), vocab=vocab)
            self._key = (shape, dtype)
        return self._model


SECTIONS = {"env": s_env, "exact": s_exact, "syncs": s_syncs, "invariance": s_invariance, "throughput": s_throughput}


def main(argv=None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    torch.set_grad_enabled(False)
    ctx = Context(args)
    record = ctx.record
    record["budget_s"] = args.budget
    failed = False
    for name, section in SECTIONS.items():
        print(f"=== {name} ({ctx.elapsed():.0f} s)", flush=True)
        if ctx.elapsed() > args.budget:
            record[name] = {"skipped": "over the budget"}
        else:
            try:
                record[name] = section(ctx)
            except Exception as error:  # one section's failure must not hide the others
                traceback.print_exc()
                record[name] = {"error": f"{type(error).__name__}: {error}"[:1000]}
                record[name]["cells"] = ctx.cells if name == "throughput" else None
                failed = True
        print(json.dumps(record[name], indent=1), flush=True)
        ctx.save(name, record[name])
    cells = record["throughput"] if isinstance(record.get("throughput"), list) else ctx.cells
    syncs = record["syncs"] if "syncs_per_group" in record.get("syncs", {}) else None
    record["verdicts"] = verdicts([c for c in cells if "skipped" not in c], syncs, targets(ctx.plan))
    ctx.save("verdicts", record["verdicts"])
    print_summary(record)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
