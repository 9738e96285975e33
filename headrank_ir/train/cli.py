"""Train a HeadRank profile: head selection, hard preference pairs, alignment in attention space.

    python -m headrank_ir.train --model smollm2-135m --topics dl20 --qrels dl20 \\
        --run run.bm25.txt --corpus corpus.jsonl --output profiles/smollm2-135m.dl20

Writes ``OUTPUT/profile.json`` (and ``OUTPUT/adapter.safetensors`` when alignment ran), for
``python -m headrank_ir.rerank --profile OUTPUT``. An interrupted run resumes when the same
command is run again. Each stage can be switched off for ablations.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from headrank_ir.command_helpers import add_first_stage_args, add_placement_args, requests_from_args, run_command
from headrank_ir.engine.models import DEFAULT_MODEL
from headrank_ir.engine.profile import PromptSettings
from headrank_ir.pipeline.names import read_qrels
from headrank_ir.train.alignment import AlignConfig
from headrank_ir.train.objective import Regularizer
from headrank_ir.train.recipe import SELECTIONS, TrainingConfig, train
from headrank_ir.train.selection import DEFAULT_ENTROPY_WEIGHT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m headrank_ir.train", description=__doc__.split("\n")[0])
    add_first_stage_args(parser)
    parser.add_argument(
        "--qrels",
        required=True,
        help="graded qrels file or Pyserini name of the training topics",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"short name, folder or Hugging Face id (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="folder for profile.json and adapter.safetensors",
    )
    parser.add_argument(
        "--train-depth",
        type=int,
        default=20,
        help="candidates per query from the top of the first stage (default 20)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_placement_args(parser)
    add_training_args(parser)
    return parser


def add_training_args(parser: argparse.ArgumentParser, ablations: bool = True) -> None:
    """The training settings, shared with scripts that train every ablation themselves: those
    take the settings without the switches (``ablations=False``)."""
    parser.set_defaults(selection="entropy", no_align=False, no_regularizer=False)
    parser.add_argument(
        "--max-passage-tokens",
        type=int,
        default=64,
        help="passages are cut to this many tokens (default 64)",
    )
    parser.add_argument("--seed", type=int, default=0)

    selection = parser.add_argument_group("head selection")
    if ablations:
        selection.add_argument(
            "--selection",
            choices=SELECTIONS,
            default="entropy",
            help="entropy-penalised nDCG (default), nDCG alone (QRHead), or none (every head)",
        )
    selection.add_argument("--top-k", type=int, default=16, help="heads to keep (default 16)")
    selection.add_argument(
        "--max-depth", type=int, help="choose heads only below this layer (caps the truncation depth and the cost)"
    )
    selection.add_argument(
        "--entropy-weight",
        type=float,
        default=DEFAULT_ENTROPY_WEIGHT,
        help=f"lambda of the entropy penalty (default {DEFAULT_ENTROPY_WEIGHT})",
    )

    default = AlignConfig()
    alignment = parser.add_argument_group("alignment (head weights + LoRA on q/k)")
    if ablations:
        alignment.add_argument(
            "--no-align",
            action="store_true",
            help="selection only: no weights or adapter trained",
        )
    alignment.add_argument("--epochs", type=int, default=default.epochs)
    alignment.add_argument(
        "--lr",
        type=float,
        default=default.lr,
        help=f"LoRA learning rate (default {default.lr})",
    )
    alignment.add_argument(
        "--head-lr",
        type=float,
        default=default.head_lr,
        help=f"head-weight learning rate (default {default.head_lr})",
    )
    alignment.add_argument(
        "--temperature",
        type=float,
        default=default.temperature,
        help=f"pair-loss temperature (default {default.temperature})",
    )
    alignment.add_argument("--lora-rank", type=int, default=default.lora_rank)
    alignment.add_argument("--lora-alpha", type=float, default=default.lora_alpha)
    alignment.add_argument(
        "--lora-layers",
        help="first-last layer with LoRA, e.g. 12-23 (default: every layer below the depth)",
    )
    alignment.add_argument(
        "--max-pairs",
        type=int,
        default=default.max_pairs,
        help=f"pairs per query, hardest first (default {default.max_pairs})",
    )
    alignment.add_argument("--hard-margin", type=float, default=default.hard_margin)
    alignment.add_argument(
        "--checkpoint-every",
        type=int,
        default=default.checkpoint_every,
        help="steps between checkpoints",
    )

    reg = Regularizer()
    regularizer = parser.add_argument_group("distribution regulariser")
    if ablations:
        regularizer.add_argument("--no-regularizer", action="store_true", help="pair loss only")
    regularizer.add_argument(
        "--kl-weight",
        type=float,
        default=reg.reference_weight,
        help=f"beta: KL to the reference (default {reg.reference_weight})",
    )
    regularizer.add_argument(
        "--spread-weight",
        type=float,
        default=reg.middle_weight,
        help=f"gamma: middle-zone spread (default {reg.middle_weight})",
    )


def layer_range(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    first, _, last = value.partition("-")
    try:
        return tuple(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ValueError(f"--lora-layers takes FIRST-LAST (e.g. 12-23), got {value!r}") from None


def config_from_args(args: argparse.Namespace, train_depth: int) -> TrainingConfig:
    regularizer = None if args.no_regularizer else Regularizer(args.kl_weight, args.spread_weight)
    align = None
    if not args.no_align:
        align = AlignConfig(
            epochs=args.epochs,
            lr=args.lr,
            head_lr=args.head_lr,
            temperature=args.temperature,
            lora_rank=args.lora_rank,
            lora_alpha=args.lora_alpha,
            lora_layers=layer_range(args.lora_layers),
            max_pairs=args.max_pairs,
            hard_margin=args.hard_margin,
            regularizer=regularizer,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
        )
    return TrainingConfig(
        selection=args.selection,
        top_k=args.top_k,
        max_depth=args.max_depth,
        entropy_weight=args.entropy_weight,
        align=align,
        prompt=PromptSettings(max_passage_tokens=args.max_passage_tokens),
        train_depth=train_depth,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, args.train_depth)
    qrels = read_qrels(args.qrels)  # first: bad qrels fail before the long part
    requests = requests_from_args(args)
    trained = train(
        args.model, requests, qrels, config, args.output, progress=not args.quiet, device=args.device, dtype=args.dtype
    )
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in trained.seconds.items())
    print(f"wrote {trained.path}: {len(trained.profile.heads)} heads, depth {trained.profile.depth} ({stages})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(run, args, resume_hint=f"from {args.output}")


if __name__ == "__main__":
    sys.exit(main())
