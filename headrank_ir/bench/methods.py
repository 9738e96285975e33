"""The rankers under comparison, one registry entry each, all behind ``ranking(request) -> Ranking``.

Every method hands back a ``records.Result`` (each candidate with a score), which the cell writes
with the CLI's run formatter. Rerankers reorder the first stage's top ``depth`` and leave the rest
of its top 100 in place below them (``engine.ranker.place``, the CLI's rule). The attention
methods are ``HeadRanker.rerank_batch``, the CLI's call; their per-head scores, prompt positions
and forward count come back in the result's ``invocations_history``. Trained profiles are always
taken from the *other* DL set (``Dataset.train_set``), so no method is tested on the queries it was
selected or trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from headrank_ir.bench.datasets import HITS, Collection, train_set
from headrank_ir.engine.profile import HeadProfile, head_label, parse_head_label
from headrank_ir.records import Candidate, Request, Result, in_given_order

logger = logging.getLogger(__name__)

QRHEAD_HEADS = 16


class Skip(Exception):
    """The method cannot run on this dataset yet (e.g. its profile is not trained); says why."""


@dataclass(frozen=True)
class Ranking:
    """One query's ranked list and what it cost."""

    # every candidate with its score, as the run file gets it; attention methods also fill
    # ``invocations_history`` (per window: docids, prompt positions, every profile head's scores)
    result: Result
    forward_passes: int = 0
    # Generative methods: windows asked, windows answered with a full permutation, ids appended.
    windows: int = 0
    full_windows: int = 0
    appended: int = 0


class Method(Protocol):
    about: str  # one line for the results notes: which profile, which settings

    def ranking(self, request: Request) -> Ranking: ...


@dataclass(frozen=True)
class Context:
    model: str
    dataset: str
    depth: int
    collection: Collection
    profiles: Path  # folder of trained profiles, ``<model>.<train set>/…``
    cache: Path
    train_head_ndcg: dict[str, float] | None = None  # ICR's per-head nDCG@10 on the dataset's train_set


def rescored_top(request: Request, top_scores: Sequence[float], depth: int) -> Result:
    """The top ``depth`` by ``top_scores`` (one per candidate there), the rest below in first-stage order."""
    from headrank_ir.engine.ranker import place

    return place(request, top_scores, 0, depth)


# -- first stage as is ------------------------------------------------------------------------


class FirstStage:
    about = f"Pyserini BM25 (its defaults for the index), top {HITS} as retrieved"

    def ranking(self, request: Request) -> Ranking:
        return Ranking(in_given_order(request))


# -- attention heads ---------------------------------------------------------------------------


class AttentionMethod:
    """A ``HeadRanker`` under a profile, called as the CLI calls it, every head's scores kept."""

    def __init__(self, ranker, depth: int, about: str):
        self.ranker = ranker
        self.depth = depth
        self.about = about
        # the order of each invocation's ``head_scores`` rows
        self.head_labels = [head_label(layer, h) for layer, hs, _ in ranker.profile.heads_by_layer() for h in hs]

    def ranking(self, request: Request) -> Ranking:
        (result,) = self.ranker.rerank_batch([request], rank_end=self.depth, populate_invocations_history=True)
        return Ranking(result, forward_passes=sum(i.forward_passes for i in result.invocations_history))


def _load_lm(ctx: Context):
    from headrank_ir.engine.models import load_model

    return load_model(ctx.model)


def _attention(ctx: Context, profile: HeadProfile | None, about: str) -> AttentionMethod:
    from headrank_ir.engine.ranker import HeadRanker

    model, tokenizer = _load_lm(ctx)
    return AttentionMethod(HeadRanker(model, tokenizer, profile, name=ctx.model), ctx.depth, about)


def build_icr(ctx: Context) -> AttentionMethod:
    # no profile: the engine's default, ICR's
    return _attention(ctx, None, "ICR: all heads, equal weights, N/A-calibrated, engine defaults")


# Trained profiles live at ``<profiles>/<model>.<train set>.<slug>/profile.json``, one slug per method.
PROFILE_SLUGS = {"qrhead": "ndcg", "headrank-select": "entropy", "headrank": "headrank"}


def profile_path(ctx: Context, method: str) -> Path:
    from headrank_ir.bench.store import model_label

    folder = f"{model_label(ctx.model)}.{train_set(ctx.dataset)}.{PROFILE_SLUGS[method]}"
    return ctx.profiles / folder / "profile.json"


def trained_profile(ctx: Context, method: str) -> Path | None:
    path = profile_path(ctx, method)
    return path if path.exists() else None


def _profiled(method: str) -> Callable[[Context], AttentionMethod]:
    def build(ctx: Context) -> AttentionMethod:
        path = trained_profile(ctx, method)
        if path is None:
            raise Skip(f"no profile trained on {train_set(ctx.dataset)} yet ({profile_path(ctx, method)} is missing)")
        return _attention(
            ctx,
            HeadProfile.load(path),
            f"profile {path} (trained on {train_set(ctx.dataset)})",
        )

    return build


def qrhead_profile(model: str, head_ndcg: dict[str, float], k: int = QRHEAD_HEADS) -> HeadProfile:
    """QRHead's choice: the ``k`` heads with the best nDCG@10 on training queries, equal weights."""
    best = sorted(head_ndcg, key=lambda head: (-head_ndcg[head], head))[:k]
    heads = tuple((*parse_head_label(h), 1.0 / len(best)) for h in best)
    return HeadProfile(model=model, heads=heads, meta={"method": "qrhead", "k": k})


def build_qrhead(ctx: Context) -> AttentionMethod:
    """The training command's QRHead profile; else the same choice made from the bench's own ICR cell."""
    if trained_profile(ctx, "qrhead") is not None:
        return _profiled("qrhead")(ctx)
    if ctx.train_head_ndcg is None:
        raise Skip(f"no QRHead profile and no ICR cell on {train_set(ctx.dataset)} to choose heads from")
    profile = qrhead_profile(ctx.model, ctx.train_head_ndcg)
    return _attention(
        ctx,
        profile,
        f"top-{QRHEAD_HEADS} heads by nDCG@10 of the bench's ICR cell on {train_set(ctx.dataset)}",
    )


def build_shipped(ctx: Context) -> AttentionMethod:
    """The profile the package ships for the model (what ``--profile`` omitted gives)."""
    from headrank_ir.engine.profile import shipped_profile_path

    path = shipped_profile_path(ctx.model)
    if path is None:
        raise Skip(f"no profile is shipped for {ctx.model}")
    about = f"shipped profile {path.name} (trained on all four public sets: in-sample; see runs/loco.{ctx.model}.md)"
    return _attention(ctx, HeadProfile.load(path), about)


# -- generative listwise -----------------------------------------------------------------------


class ListwiseMethod:
    def __init__(self, ranker, depth: int):
        self.ranker = ranker
        self.depth = depth
        self.about = f"RankGPT prompt, window {ranker.window}, step {ranker.step}, greedy, same LM"

    def ranking(self, request: Request) -> Ranking:
        texts = [c.text for c in request.candidates[: self.depth]]
        result = self.ranker.permute(request.query.text, texts)
        place_in_order = {i: len(texts) - rank for rank, i in enumerate(result.order)}  # best: len(texts)
        return Ranking(
            rescored_top(request, [place_in_order[i] for i in range(len(texts))], self.depth),
            forward_passes=sum(a.generated_tokens for a in result.answers),
            windows=len(result.answers),
            full_windows=sum(a.permutation.full for a in result.answers),
            appended=sum(a.permutation.appended for a in result.answers),
        )


def build_rankgpt(ctx: Context) -> ListwiseMethod:
    from headrank_ir.bench.baselines.rankgpt import RankGPT

    model, tokenizer = _load_lm(ctx)
    return ListwiseMethod(RankGPT(model, tokenizer), ctx.depth)


# -- dense -------------------------------------------------------------------------------------


class DenseReranker:
    about = "all-MiniLM-L6-v2 bi-encoder, cosine, mean pooling"

    def __init__(self, depth: int):
        from headrank_ir.bench.baselines.dense import MiniLM

        self.encoder = MiniLM()
        self.depth = depth

    def ranking(self, request: Request) -> Ranking:
        before = self.encoder.forward_passes
        top = request.candidates[: self.depth]
        scores = self.encoder.scores(request.query.text, [c.text for c in top])
        return Ranking(rescored_top(request, scores, self.depth), self.encoder.forward_passes - before)


class DenseFirstStage:
    """MiniLM over the full corpus instead of BM25: its own top 100 (corpus encoded once, cached)."""

    about = "all-MiniLM-L6-v2 over the full corpus, faiss IndexFlatIP, top 100"

    def __init__(self, ctx: Context):
        from headrank_ir.bench.baselines.dense import DenseIndex, MiniLM, corpus_vectors
        from headrank_ir.pipeline.readers import read_corpus

        if ctx.collection.dataset.bm25_run:
            raise Skip("its corpus file holds only the BM25 pool, not the full collection")
        self.encoder = MiniLM()
        cache = ctx.cache / "dense" / f"{ctx.dataset}.minilm.npz"
        docids, vectors = corpus_vectors(self.encoder, read_corpus(ctx.collection.corpus), cache)
        self.index = DenseIndex(docids, vectors)

    def ranking(self, request: Request) -> Ranking:
        before = self.encoder.forward_passes
        hits = self.index.search(self.encoder.encode([request.query.text])[0], HITS)
        result = Result(request.query, [Candidate(docid, score) for docid, score in hits])
        return Ranking(result, self.encoder.forward_passes - before)


@dataclass(frozen=True)
class MethodSpec:
    build: Callable[[Context], Method]
    own_first_stage: bool = False  # retrieves its own list instead of ranking BM25's
    timed: bool = True  # False: nothing is computed at query time (the given first stage)


METHODS: dict[str, MethodSpec] = {
    "bm25": MethodSpec(lambda ctx: FirstStage(), timed=False),
    "icr": MethodSpec(build_icr),
    "qrhead": MethodSpec(build_qrhead),
    "headrank-select": MethodSpec(_profiled("headrank-select")),
    "headrank": MethodSpec(_profiled("headrank")),
    "headrank-default": MethodSpec(build_shipped),
    "rankgpt": MethodSpec(build_rankgpt),
    "minilm": MethodSpec(lambda ctx: DenseReranker(ctx.depth)),
    "minilm-dense": MethodSpec(DenseFirstStage, own_first_stage=True),
}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]
