"""The training settings as flags, shared by ``train fit`` and ``train ablation`` (which trains
every ablation itself and so takes the settings without the switches)."""

from __future__ import annotations

import argparse
import math

from headrank_ir.command_helpers import positive_int
from headrank_ir.engine.profile import PromptSettings
from headrank_ir.train.alignment import AlignConfig
from headrank_ir.train.objective import Regularizer
from headrank_ir.train.recipe import SELECTIONS, TrainingConfig
from headrank_ir.train.selection import DEFAULT_ENTROPY_WEIGHT


def finite_float(value: str) -> float:
    """An argparse type: a finite number (``nan`` or ``inf`` would train, and write, garbage)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
    return number


def non_negative_float(value: str) -> float:
    """An argparse type: a finite number of at least 0 (a weight)."""
    number = finite_float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def positive_float(value: str) -> float:
    """An argparse type: a finite number above 0 (a learning rate, a temperature)."""
    number = finite_float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return number


def add_training_args(parser: argparse.ArgumentParser, ablations: bool = True) -> None:
    """The training settings, shared with `train ablation`, which trains every ablation itself and
    so takes them without the switches (``ablations=False``)."""
    parser.set_defaults(selection="entropy", no_align=False, no_regularizer=False)
    parser.add_argument(
        "--max-passage-tokens",
        type=positive_int,
        default=64,
        help="passages are cut to this many tokens (default 64)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the query order in each epoch and of the LoRA factors drawn at start (default 0)",
    )

    selection = parser.add_argument_group("head selection")
    if ablations:
        selection.add_argument(
            "--selection",
            choices=SELECTIONS,
            default="entropy",
            help="entropy-penalised nDCG (default), nDCG alone (QRHead), or none (every head)",
        )
    selection.add_argument("--top-k", type=positive_int, default=16, help="heads to keep (default 16)")
    selection.add_argument(
        "--max-depth", type=positive_int, help="choose heads only below this layer (caps the depth and the cost)"
    )
    selection.add_argument(
        "--entropy-weight",
        type=non_negative_float,
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
    alignment.add_argument(
        "--epochs",
        type=positive_int,
        default=default.epochs,
        help=f"passes over the training queries (default {default.epochs})",
    )
    alignment.add_argument(
        "--lr",
        type=positive_float,
        default=default.lr,
        help=f"LoRA learning rate (default {default.lr})",
    )
    alignment.add_argument(
        "--head-lr",
        type=non_negative_float,
        default=default.head_lr,
        help=f"head-weight learning rate (default {default.head_lr})",
    )
    alignment.add_argument(
        "--temperature",
        type=positive_float,
        default=default.temperature,
        help=f"pair-loss temperature (default {default.temperature})",
    )
    alignment.add_argument(
        "--lora-rank",
        type=positive_int,
        default=default.lora_rank,
        help=f"LoRA rank on q/k (default {default.lora_rank})",
    )
    alignment.add_argument(
        "--lora-alpha",
        type=positive_float,
        default=default.lora_alpha,
        help=f"LoRA alpha: the update is scaled by alpha / rank (default {default.lora_alpha})",
    )
    alignment.add_argument(
        "--lora-layers",
        help="first-last layer with LoRA, e.g. 12-23 (default: every layer below the depth)",
    )
    alignment.add_argument(
        "--max-pairs",
        type=positive_int,
        default=default.max_pairs,
        help=f"pairs per query, hardest first (default {default.max_pairs})",
    )
    alignment.add_argument(
        "--hard-margin",
        type=non_negative_float,
        default=default.hard_margin,
        help=f"pairs whose score gap is below this count as hard (default {default.hard_margin})",
    )
    alignment.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=default.checkpoint_every,
        help=f"steps between checkpoints (default {default.checkpoint_every})",
    )

    reg = Regularizer()
    regularizer = parser.add_argument_group("distribution regulariser")
    if ablations:
        regularizer.add_argument("--no-regularizer", action="store_true", help="pair loss only")
    regularizer.add_argument(
        "--kl-weight",
        type=non_negative_float,
        default=reg.reference_weight,
        help=f"beta: KL to the reference (default {reg.reference_weight})",
    )
    regularizer.add_argument(
        "--spread-weight",
        type=non_negative_float,
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
