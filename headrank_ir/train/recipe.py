"""The training stages end to end: head features → selection → alignment → profile (+ adapter).

``output`` is a folder: ``profile.json``, ``adapter.safetensors`` when alignment ran, and,
while alignment runs, ``checkpoint.pt`` (removed once the profile is written; rerunning the same
command after an interruption resumes from it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.records import Request
from headrank_ir.train.alignment import AlignConfig, Aligned, align
from headrank_ir.train.examples import (
    HeadFeatures,
    Qrels,
    TrainingQuery,
    collect_features,
    training_queries,
)
from headrank_ir.train.selection import (
    DEFAULT_ENTROPY_WEIGHT,
    SELECTION_METHODS,
    HeadQuality,
    head_quality,
    select_heads,
)

logger = logging.getLogger(__name__)

PROFILE_FILE = "profile.json"
ADAPTER_FILE = "adapter.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
SELECTIONS = (*SELECTION_METHODS, "none")  # "none": every head, as ICR


@dataclass(frozen=True)
class TrainingConfig:
    selection: str = "entropy"
    top_k: int = 16
    max_depth: int | None = None  # heads only from layers below this (caps the truncation depth)
    entropy_weight: float = DEFAULT_ENTROPY_WEIGHT
    align: AlignConfig | None = field(default_factory=AlignConfig)  # None: selection only
    prompt: PromptSettings = field(default_factory=lambda: PromptSettings(max_passage_tokens=64))
    train_depth: int = 20  # candidates per query, from the top of the first stage

    def __post_init__(self):
        if self.selection not in SELECTIONS:
            raise ValueError(f"--selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.top_k < 1:
            raise ValueError(f"--top-k must be a positive integer, got {self.top_k}")
        if self.max_depth is not None and self.max_depth < 1:
            raise ValueError(f"--max-depth must be a positive integer, got {self.max_depth}")
        if not math.isfinite(self.entropy_weight) or self.entropy_weight < 0:
            raise ValueError(f"--entropy-weight must be a finite number of at least 0, got {self.entropy_weight}")
        if self.train_depth < 1:
            raise ValueError(f"--train-depth must be a positive integer, got {self.train_depth}")
        numbers = {k: v for k, v in asdict(self.align or AlignConfig()).items() if isinstance(v, float)}
        for name, value in numbers.items():
            if not math.isfinite(value):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


@dataclass(frozen=True)
class Trained:
    profile: HeadProfile
    path: Path  # the profile JSON
    seconds: dict[str, float]  # per stage


def train(
    model_name: str,
    requests: Sequence[Request],
    qrels: Qrels,
    config: TrainingConfig,
    output: str | Path,
    features: HeadFeatures | None = None,
    progress: bool = True,
    device: str | None = None,
    dtype: str | None = None,
) -> Trained:
    """Train a profile for ``model_name`` (on ``device`` in ``dtype``, see ``load_model``) on the
    judged ``requests`` and write it to ``output``.

    ``features`` (all heads, same queries, depth and prompt) skips the feature pass; the
    evaluation tool shares one pass between training and testing.
    """
    from headrank_ir.engine.models import load_model

    output = Path(output)
    queries = graded_queries(training_queries(requests, qrels, config.train_depth), config.train_depth)
    model, tokenizer = load_model(model_name, device=device, dtype=dtype)
    check_top_k(config, model)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    if features is None:
        features = all_head_features(model, tokenizer, model_name, queries, config.prompt, config.max_depth, progress)
    check_features(features, queries)
    seconds["features"] = time.perf_counter() - began
    began = time.perf_counter()
    profile, qualities = select(model_name, features, queries, config)
    seconds["selection"] = time.perf_counter() - began
    aligned = None
    if config.align is not None:
        began = time.perf_counter()
        references = {
            q.qid: features.combined(q.qid, [h[:2] for h in profile.heads], [h[2] for h in profile.heads])
            for q in queries
        }
        aligned = align(
            model,
            tokenizer,
            profile,
            queries,
            references,
            config.align,
            output / CHECKPOINT_FILE,
            progress,
        )
        seconds["alignment"] = time.perf_counter() - began
    profile = finish(profile, aligned, qualities, queries, config, seconds, output)
    return Trained(profile, output / PROFILE_FILE, seconds)


def graded_queries(queries: Sequence[TrainingQuery], depth: int) -> list[TrainingQuery]:
    """The queries with a passage graded above 0 in their top ``depth``: grades of -1 and 0 only
    tell no head from another, and would train a profile whose heads all score 0."""
    kept = [q for q in queries if any(g is not None and g > 0 for g in q.grades)]
    if not kept:
        raise ValueError(
            f"no query has a passage graded above 0 in its top {depth} (the qrels hold only grades of 0 or "
            "less there): nothing to learn from; check --qrels"
        )
    return kept


def all_head_features(
    model,
    tokenizer,
    model_name: str,
    queries,
    prompt: PromptSettings,
    max_depth: int | None = None,
    progress: bool = True,
) -> HeadFeatures:
    """Every head's scores and entropy on ``queries``: one forward each, ``max_depth`` layers deep."""
    from headrank_ir.engine.ranker import HeadRanker

    config = model.config.get_text_config()
    layers = min(config.num_hidden_layers, max_depth or config.num_hidden_layers)
    profile = replace(HeadProfile.icr(model_name, layers, config.num_attention_heads), prompt=prompt)
    return collect_features(HeadRanker(model, tokenizer, profile).reader, queries, progress)


def check_top_k(config: TrainingConfig, model) -> None:
    """Fail before the long feature pass when the flags ask for more heads than there are."""
    text = model.config.get_text_config()
    layers = min(text.num_hidden_layers, config.max_depth or text.num_hidden_layers)
    heads = layers * text.num_attention_heads
    if config.selection != "none" and not 1 <= config.top_k <= heads:
        raise ValueError(
            f"--top-k must be between 1 and the {heads} heads in the first {layers} layers, got {config.top_k}"
        )


def check_features(features: HeadFeatures, queries: Sequence[TrainingQuery]) -> None:
    for query in queries:
        scores = features.scores.get(query.qid)
        if scores is None or scores.shape[1] != len(query.docids):
            raise ValueError(
                f"the head features do not cover query {query.qid} with its {len(query.docids)} candidates"
            )


def select(
    model_name: str, features: HeadFeatures, queries, config: TrainingConfig
) -> tuple[HeadProfile, list[HeadQuality]]:
    """The profile of the selection stage; ``none`` keeps every profiled head, equal weights."""
    if config.selection == "none":
        kept = [(layer, head) for layer, head in features.heads if config.max_depth is None or layer < config.max_depth]
        heads = tuple((layer, head, 1.0 / len(kept)) for layer, head in kept)
        return HeadProfile(model_name, heads, config.prompt), []
    qualities = head_quality(features, queries, config.selection, config.entropy_weight)
    return HeadProfile(model_name, select_heads(qualities, config.top_k, config.max_depth), config.prompt), qualities


def finish(
    profile,
    aligned: Aligned | None,
    qualities,
    queries,
    config: TrainingConfig,
    seconds,
    output: Path,
) -> HeadProfile:
    """Write the adapter and the profile (with how it was made in ``meta``); drop the checkpoint."""
    from headrank_ir.engine.adapter import save_adapter

    if aligned is not None:
        save_adapter(aligned.adapter, aligned.spec, output / ADAPTER_FILE)
        profile = replace(profile, heads=aligned.heads, adapter=ADAPTER_FILE)
    chosen = {(layer, head) for layer, head, _ in profile.heads}
    meta = {
        "method": "headrank",
        "selection": {
            "method": config.selection,
            "top_k": config.top_k,
            "max_depth": config.max_depth,
            "entropy_weight": config.entropy_weight,
        },
        "selected_heads": [q.to_json() for q in qualities if (q.layer, q.head) in chosen],
        "align": config.align.to_json() if config.align is not None else None,
        "train_queries": len(queries),
        "train_depth": config.train_depth,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    if aligned is not None:
        last_epoch = aligned.history[-len(aligned.history) // config.align.epochs :]
        meta["last_epoch_loss"] = round(sum(h["loss"] for h in last_epoch) / len(last_epoch), 4)
    replace(profile, meta=meta).save(output / PROFILE_FILE)
    (output / CHECKPOINT_FILE).unlink(missing_ok=True)
    logger.info(
        "wrote %s (%d heads, depth %d)",
        output / PROFILE_FILE,
        len(profile.heads),
        profile.depth,
    )
    return HeadProfile.load(output / PROFILE_FILE)
