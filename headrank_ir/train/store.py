"""Where the research commands read and write: the repository's ``runs/`` reports, the feature
cache under ``.cache/``, and the shared data folder (``$HEADRANK_DATA``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from headrank_ir.atomic import write_atomic

logger = logging.getLogger(__name__)

# the checkout the package runs from: the reports and shipped profiles it writes are committed there
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "loco"
DATA = Path(os.environ.get("HEADRANK_DATA", ROOT.parent / "shared" / "data"))
PASSAGE_TOKENS = 64


def output(stem: str, result: dict, markdown: str) -> None:
    """``runs/STEM.json`` and ``runs/STEM.md``."""
    write_atomic(ROOT / "runs" / f"{stem}.json", json.dumps(result, indent=1))
    write_atomic(ROOT / "runs" / f"{stem}.md", markdown)
    logger.info("wrote runs/%s.md and runs/%s.json", stem, stem)


def report_name(args: argparse.Namespace, kind: str) -> str:
    """``<kind>.<model>``, with ``.tok<N>`` when passages are not cut at the default 64 tokens and
    the models' precision when it is not float32: one report per passage length and precision,
    the committed 64-token float32 reports keeping their names."""
    length = [] if args.passage_tokens == PASSAGE_TOKENS else [f"tok{args.passage_tokens}"]
    return ".".join([f"{kind}.{args.model}", *length, *precision()])


def feature_folder(args: argparse.Namespace, dataset: str) -> Path:
    name = f"{args.model}.{dataset}.top{args.depth}.tok{args.passage_tokens}.d{args.max_depth}"
    return CACHE / ".".join([name, *precision()])


def precision() -> list[str]:
    """``[]`` for float32, else ``[dtype]``: the precision the research commands' models load in
    (``load_model``'s default: ``$HEADRANK_DTYPE``, else ``auto``, bfloat16 on a CPU with native
    bfloat16), which moves every score, so that cached features and reports of two precisions never mix."""
    from headrank_ir.engine.models import precision_name

    dtype = precision_name()
    return [] if dtype == "float32" else [dtype]
