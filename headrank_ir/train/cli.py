"""Train HeadRank profiles, and the research that chose the shipped ones.

    python -m headrank_ir.train fit --model smollm2-135m --topics dl20 --qrels dl20 \\
        --run run.bm25.txt --corpus corpus.jsonl --output profiles/smollm2-135m.dl20
    python -m headrank_ir.train loco features      # every head's reading, cached per query
    python -m headrank_ir.train loco evaluate      # runs/loco.<model>.md and .json (--ship: the profile)
    python -m headrank_ir.train loco ceiling       # runs/loco_ceiling.<model>.md and .json
    python -m headrank_ir.train pseudo build       # label-free lists; then features, evaluate, align
    python -m headrank_ir.train ablation           # runs/train_eval.md: train on one DL year, test on the other

``fit`` (the default when the first argument is a flag, so ``python -m headrank_ir.train --run …``
still trains) writes ``OUTPUT/profile.json`` (and ``OUTPUT/adapter.safetensors`` when alignment
ran), for ``python -m headrank_ir.rerank --profile OUTPUT``; an interrupted run resumes when the
same command is run again, and each stage can be switched off for ablations. ``loco`` is the
leave-one-collection-out pipeline that made ``headrank_ir/profiles/*.json``; ``pseudo`` its
label-free variant; ``ablation`` the DL19/DL20 ablation table. Each says more under ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from headrank_ir.bench.datasets import BUILT_IN
from headrank_ir.command_helpers import add_first_stage_args, add_placement_args, requests_from_args, run_command
from headrank_ir.engine.models import DEFAULT_MODEL
from headrank_ir.outputs import guard_folder, locked
from headrank_ir.pipeline.names import read_qrels
from headrank_ir.train.settings import add_training_args, config_from_args
from headrank_ir.train.store import PASSAGE_TOKENS, ROOT

LOCO_STAGES = {
    "features": "every head's reading of every judged query, cached per query under .cache/loco/ (resumable)",
    "evaluate": "nested leave-one-out: runs/loco.<model>.md and .json; --ship writes the profile",
    "align": "q/k LoRA + head weights aligned per fold, tested by forwards: runs/loco_align.<model>.q<N>.*",
    "weights": "head weights aligned from the cached features, swept and nested: runs/loco_weights.<model>.*",
    "ceiling": "the grid chosen on each set's own judgements: runs/loco_ceiling.<model>.*",
}
LOCO_DETAILS = """\
``features`` reads every head (up to --max-depth layers) on the BM25 top --depth of every judged
query of DL19, DL20, Cranfield and Vaswani whose top --depth holds a relevant passage (the
others score nDCG@10 0 whatever the reranking), one forward per query, cached one file per
query so that an interrupted pass resumes where it stopped. ``evaluate`` then needs no model:
for each held-out set, head selection (entropy-regularised or by nDCG, top-k heads) and the
fusion (method and weight) are chosen on the other three sets' queries, and tested on the
held-out one, against BM25 with paired significance. ``ceiling`` is their optimistic
reference: the same grid chosen on each set's own judgements."""
PSEUDO_STAGES = {
    "build": "inverse-cloze pseudo-query lists of every corpus: .cache/pseudo/ict-<set>.*.jsonl",
    "features": "every head's reading of every list, cached as loco's",
    "evaluate": "head selection on pseudo-queries against judged ones: runs/pseudo.<model>.md and .json",
    "align": "the judged selection aligned on pseudo-query lists: runs/pseudo_align.<model>.q<N>.*",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m headrank_ir.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_fit_parser(commands)
    add_loco_parser(commands)
    add_pseudo_parser(commands)
    add_ablation_parser(commands)
    return parser


def add_fit_parser(commands) -> None:
    parser = commands.add_parser("fit", help="train a profile on judged queries (the default)")
    parser.description = (
        "Train a HeadRank profile: head selection, hard preference pairs, alignment in attention space."
    )
    parser.set_defaults(handler=fit)
    add_first_stage_args(parser)
    parser.add_argument("--qrels", required=True, help="graded qrels file or Pyserini name of the training topics")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"short name, folder or Hugging Face id (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--output", required=True, help="folder for profile.json and adapter.safetensors")
    parser.add_argument(
        "--train-depth",
        type=int,
        default=20,
        help="candidates per query from the top of the first stage (default 20)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_placement_args(parser)
    add_training_args(parser)


def add_research_args(parser: argparse.ArgumentParser, default_queries: int) -> None:
    """The flags ``loco`` and ``pseudo`` share: which model, sets, candidates and cached features."""
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--datasets", nargs="+", default=list(BUILT_IN), choices=BUILT_IN)
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates reranked per query (default 20)")
    parser.add_argument(
        "--passage-tokens",
        type=int,
        default=PASSAGE_TOKENS,
        help=f"prompt.max_passage_tokens (default {PASSAGE_TOKENS}; another length's reports are named .tok<N>)",
    )
    parser.add_argument("--max-depth", type=int, default=24, help="heads from the first N layers only (default 24)")
    parser.add_argument(
        "--align-queries",
        type=int,
        default=default_queries,
        help=f"align: the first N evaluated queries (or lists) of each training set (default {default_queries})",
    )
    parser.add_argument(
        "--align-setting",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="align: AlignConfig fields other than the defaults (epochs, lr, head_lr, temperature, lora_rank, "
        "lora_alpha, max_pairs); one result each",
    )


def stage_parser(commands, name: str, stages: dict[str, str], summary: str, details: str) -> argparse.ArgumentParser:
    listed = "\n".join(f"  {stage:<9} {what}" for stage, what in stages.items())
    parser = commands.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\nstages:\n{listed}\n\n{details}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", choices=stages, help="the stage to run (see above)")
    return parser


def add_loco_parser(commands) -> None:
    parser = stage_parser(
        commands,
        "loco",
        LOCO_STAGES,
        "leave-one-collection-out: choose the recipe and the fusion on three sets, test on the fourth",
        LOCO_DETAILS,
    )
    parser.set_defaults(handler=loco)
    add_research_args(parser, default_queries=40)
    parser.add_argument(
        "--max-queries",
        nargs="*",
        default=["cranfield=40", "vaswani=40"],
        metavar="SET=N",
        help="per set, only the first N queries with a relevant passage (default cranfield=40 vaswani=40)",
    )
    parser.add_argument("--ship", action="store_true", help="write the chosen profile into headrank_ir/profiles/")
    parser.add_argument(
        "--trained-weights",
        action="store_true",
        help="ceiling: also the 64 best heads' weights trained on each set's own judgements (minutes per set)",
    )


def add_pseudo_parser(commands) -> None:
    from headrank_ir.train import pseudo

    summary = "label-free training lists: inverse-cloze pseudo-queries from the four public corpora"
    parser = stage_parser(commands, "pseudo", PSEUDO_STAGES, summary, pseudo.__doc__.split("\n\n", 1)[1])
    parser.set_defaults(handler=pseudo_stage)
    add_research_args(parser, default_queries=50)
    parser.add_argument(
        "--max-queries",
        nargs="*",
        default=[],
        metavar="SET=N",
        help="evaluate: per judged set, only the first N queries with a relevant passage (default: all)",
    )
    parser.add_argument("--per-corpus", type=int, default=250, help="spans drawn per corpus (default 250)")
    parser.add_argument("--seed", type=int, default=13)


def add_ablation_parser(commands) -> None:
    from headrank_ir.train import ablation

    parser = commands.add_parser(
        "ablation",
        help="train on one TREC DL year, test on the other: the ablation table (runs/train_eval.*)",
        description=ablation.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=ablation.run)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=str(ablation.MSMARCO), help="folder with dl19/ and dl20/")
    parser.add_argument("--splits", nargs="+", default=["dl20:dl19", "dl19:dl20"], help="TRAIN:TEST pairs")
    parser.add_argument("--depth", type=int, default=20, help="candidates trained on and reranked (default 20)")
    add_training_args(parser, ablations=False)
    parser.add_argument("--profiles", default=str(ROOT / "profiles"))
    parser.add_argument("--output", default=str(ROOT / "runs" / "train_eval"), help="writes OUTPUT.json and OUTPUT.md")
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=ablation.SYSTEMS,
        default=list(ablation.SYSTEMS),
        help="rows to make (default all)",
    )
    parser.add_argument("--tag", default="", help="suffix of the profile folder names (for trials)")
    parser.add_argument(
        "--reuse", action="store_true", help="load profiles already trained under --profiles instead of training"
    )


def fit(args: argparse.Namespace) -> int:
    from headrank_ir.train.recipe import ADAPTER_FILE, CHECKPOINT_FILE, PROFILE_FILE, train

    config = config_from_args(args, args.train_depth)
    inputs = [args.topics, args.index, args.run, args.corpus, args.qrels, args.model]
    # the one output guard, before the feature pass: a file, an input or someone else's folder fails now
    output = guard_folder(args.output, "--output", inputs, ours=(PROFILE_FILE, CHECKPOINT_FILE, ADAPTER_FILE))
    qrels = read_qrels(args.qrels)  # first: bad qrels fail before the long part
    requests = requests_from_args(args)
    with locked(output, "--output"):
        trained = train(
            args.model, requests, qrels, config, output, progress=not args.quiet, device=args.device, dtype=args.dtype
        )
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in trained.seconds.items())
    print(f"wrote {trained.path}: {len(trained.profile.heads)} heads, depth {trained.profile.depth} ({stages})")
    return 0


def loco(args: argparse.Namespace) -> int:
    from headrank_ir.train import align_folds, ceiling, features, nested, weights

    stages = {
        "features": features.collect,
        "evaluate": nested.evaluate,
        "align": align_folds.align_folds,
        "weights": weights.weight_folds,
        "ceiling": ceiling.ceiling,
    }
    stages[args.stage](args)
    return 0


def pseudo_stage(args: argparse.Namespace) -> int:
    from headrank_ir.train import pseudo

    stages = {"build": pseudo.build, "features": pseudo.features, "evaluate": pseudo.evaluate, "align": pseudo.align}
    stages[args.stage](args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "fit")  # the command before it had subcommands: `train --run … --output …`
    args = build_parser().parse_args(argv)
    # fit resumes from its checkpoint in --output; the research stages from their caches
    resume = f"from {args.output}" if args.command == "fit" else "where it stopped"
    return run_command(args.handler, args, resume_hint=resume)


if __name__ == "__main__":
    sys.exit(main())
