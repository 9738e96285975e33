"""What ``gpu_acceptance.py`` measures and how it judges: the model shapes, the plans (GPU and
tiny CPU smoke), the targets, their PASS/MISS verdicts and printed summary, and the synthetic workload (random
Qwen3 models, requests of README words, timing). Imported by the acceptance command and its tests.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

from bench_engine import QWEN3_SHAPES

REPO = Path(__file__).resolve().parents[1]
SHAPES = {
    **{name: dict(shape, num_key_value_heads=8, head_dim=128) for name, shape in QWEN3_SHAPES.items()},
    "small": dict(hidden_size=256, intermediate_size=512, num_attention_heads=16, num_key_value_heads=8, head_dim=128),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "tiny-wide": dict(
        hidden_size=128, intermediate_size=256, num_attention_heads=8, num_key_value_heads=4, head_dim=16
    ),
}
BOUND = {"float32": 1e-6, "bfloat16": 1e-3}  # tests/test_batch_invariance.py's


@dataclasses.dataclass(frozen=True)
class Plan:
    """What each section runs: the GPU's shapes and sizes, or tiny ones for the CPU smoke test."""

    small: str  # the 0.6B targets' shape
    large: str  # the 4B target's shape
    exact_shape: str
    exact_heads: tuple  # (layer, head, weight)
    spec: str  # the throughput profile: HEADS:LAYERS (bench_throughput.head_profile)
    passages: tuple  # (few, many)
    batch_sizes: tuple
    words: tuple  # words per passage, lowest and highest
    batches: int = 4
    repeats: int = 3
    vocab: int = 151936


GPU = Plan(
    "qwen3-0.6b",
    "qwen3-4b",
    "small",
    ((0, 1, 1.0), (1, 5, 0.5), (2, 8, 0.25), (3, 15, 2.0), (3, 2, 1.0), (3, 3, 1.0)),
    "16:16",
    (20, 100),
    (1, 8, 32),
    (35, 100),
)
TINY = Plan(
    "tiny",
    "tiny-wide",
    "tiny",
    ((0, 1, 1.0), (1, 3, 0.5), (2, 0, 0.25), (2, 2, 2.0)),
    "4:3",
    (5, 12),
    (1, 2, 4),
    (10, 30),
    repeats=1,  # a smoke test: every path once
)


# -- pure helpers: verdicts ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    cell: tuple | None  # (shape, dtype, passages, batch size) of a throughput cell; None: the syncs section
    field: str
    op: str  # ">=", "<=" or "=="
    bound: float


def targets(plan: Plan) -> list[Target]:
    few, many = plan.passages
    batch = plan.batch_sizes[-1]
    small, large = (plan.small, "bfloat16", few, batch), (plan.small, "bfloat16", many, batch)
    return [
        Target(f"{plan.small} bf16, {few} passages, batch {batch}: q/s", small, "queries_per_s", ">=", 100),
        Target(f"{plan.small} bf16, {many} passages, batch {batch}: q/s", large, "queries_per_s", ">=", 25),
        Target(
            f"{plan.small} bf16, {few} passages, batch {batch}: engine/floor", small, "engine_over_floor", "<=", 1.25
        ),
        Target(
            f"{plan.small} bf16, {many} passages, batch {batch}: engine/floor", large, "engine_over_floor", "<=", 1.25
        ),
        Target("syncs inside a group", None, "syncs_per_group", "==", 0),
        Target(
            f"{plan.large} bf16, {many} passages, batch {batch}: q/s",
            (plan.large, "bfloat16", many, batch),
            "queries_per_s",
            ">=",
            10,
        ),
        Target(
            f"{plan.small} fp32, {many} passages: out of memory", (plan.small, "float32", many, batch), "oom", "==", 0
        ),
    ]


def judge(value, op: str, bound: float) -> str:
    """PASS or MISS of ``value op bound``; n/a where nothing was measured."""
    if value is None:
        return "n/a"
    ok = {">=": value >= bound, "<=": value <= bound, "==": value == bound}[op]
    return "PASS" if ok else "MISS"


def verdicts(cells: list[dict], syncs: dict | None, wanted: list[Target]) -> list[dict]:
    index = {(c["shape"], c["dtype"], c["passages"], c["batch_size"]): c for c in cells}
    out = []
    for target in wanted:
        source = syncs if target.cell is None else index.get(target.cell)
        value = None if source is None else source.get(target.field)
        out.append(
            {
                "target": target.name,
                "value": value,
                "op": target.op,
                "bound": target.bound,
                "verdict": judge(value, target.op, target.bound),
            }
        )
    return out


# -- models and texts ------------------------------------------------------------------------------


def build(plan: Plan, shape: str, layers: int, device, dtype, attn="sdpa", state=None, vocab=None):
    """A random Qwen3 of ``shape`` with ``layers`` layers, built in place on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(
        **SHAPES[shape],
        num_hidden_layers=layers,
        vocab_size=vocab or plan.vocab,
        max_position_embeddings=40960,
        tie_word_embeddings=True,
    )
    config._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


def word_pool() -> list[str]:
    words = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        words += [w for w in path.read_text(errors="ignore").split() if w.isascii() and w.isalnum() and len(w) <= 16]
    return words


def make_requests(count: int, passages: int, words: tuple, seed: int, pool: list[str]):
    """Queries of 4-12 words over passages of ``words`` words, runs of the pool's words."""
    from headrank_ir.records import Candidate, Query, Request

    rng = random.Random(seed)

    def span(lo, hi):
        n = rng.randint(lo, hi)
        start = rng.randrange(0, len(pool) - n)
        return " ".join(pool[start : start + n])

    return [
        Request(
            Query(span(4, 12), f"q{seed}_{q}"),
            [Candidate(f"q{seed}_{q}d{i}", float(passages - i), {"contents": span(*words)}) for i in range(passages)],
        )
        for q in range(count)
    ]


def ranker_for(model, tokenizer, profile, **kwargs):
    from headrank_ir.engine.ranker import HeadRanker

    return HeadRanker(model, tokenizer, profile, allow_profile_model_mismatch=True, **kwargs)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clocked(device, step) -> float:
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def dtypes(device) -> list[str]:
    return ["float32", "bfloat16"] + (["float16"] if device.type == "cuda" else [])


def order_change(alone: list[list[float]], batched: list[list[float]], tie: float) -> tuple[float, int]:
    """Largest score difference, and how many queries' orders differ between candidates whose
    scores (alone) are more than ``tie`` apart."""
    worst, reordered = 0.0, 0
    for a, b in zip(alone, batched):
        worst = max([worst] + [abs(x - y) for x, y in zip(a, b)])
        first = sorted(range(len(a)), key=lambda i: -a[i])
        second = sorted(range(len(b)), key=lambda i: -b[i])
        reordered += any(i != j and abs(a[i] - a[j]) > tie for i, j in zip(first, second))
    return worst, reordered


def throughput_cells(plan: Plan) -> list[tuple]:
    """(shape, dtype, passages, batch size, batches, repeats), most wanted first."""
    few, many = plan.passages
    cells = [(plan.small, "bfloat16", p, b, plan.batches, plan.repeats) for p in (few, many) for b in plan.batch_sizes]
    cells.append((plan.large, "bfloat16", many, plan.batch_sizes[-1], plan.batches, min(2, plan.repeats)))
    cells.append((plan.small, "float32", many, plan.batch_sizes[-1], 2, 1))  # memory, and the math kernel's time
    cells.append((plan.large, "bfloat16", few, plan.batch_sizes[-1], plan.batches, min(2, plan.repeats)))
    return cells


def print_summary(record: dict) -> None:
    print(f"\n=== summary ({record['seconds']} s, {record['env'].get('gpu', record['device'])})")
    for row in record["exact"] if isinstance(record.get("exact"), list) else []:
        print(
            f"{row['verdict']:4}  exact {row['dtype']}: engine {row['engine_error']:.1e} of the largest score "
            f"(eager in {row['dtype']} {row['eager_error']:.1e}), bound {row['bound']:.1e}"
        )
    for row in record["invariance"] if isinstance(record.get("invariance"), list) else []:
        print(
            f"{row['verdict']:4}  batch {row['batch_size']} vs {row['against']}, {row['dtype']}: max |diff| "
            f"{row['max_abs_diff']:.1e} (bound {row['bound']:.0e}), {row['queries_reordered']} queries reordered"
        )
    for row in record["throughput"] if isinstance(record.get("throughput"), list) else []:
        if "queries_per_s" in row:
            print(
                f"      {row['shape']} {row['dtype']} {row['passages']:>3} passages batch {row['batch_size']:>2}: "
                f"{row['queries_per_s']:8.2f} q/s, floor {row['floor_queries_per_s']:8.2f}, engine/floor "
                f"{row['engine_over_floor']:.3f}, peak {row['peak_mb']:.0f} MB, syncs/group {row['syncs_per_group']}, "
                f"hidden {row['hidden_share']}"
            )
        else:
            print(
                f"      {row['shape']} {row['dtype']} {row['passages']} passages batch {row['batch_size']}: "
                f"{row.get('skipped') or row.get('error')}"
            )
    for v in record["verdicts"]:
        print(f"{v['verdict']:4}  {v['target']}: {v['value']} (target {v['op']} {v['bound']})")
