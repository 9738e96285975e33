"""Run execution: a run's pending queries in batches, ranked in this process or by a pool of Ray
workers (``distributed``), each written as it comes under one progress line over all queries.

The ``rerank`` command parses its flags into :class:`RankerSettings` and calls
:func:`rerank_pending` with an open ``runfile.RunWriter``; resuming is the writer's part.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from headrank_ir.engine.profile import ICR
from headrank_ir.errors import InputError
from headrank_ir.pipeline.distributed import RankedBatch, RayPool, with_query_ids
from headrank_ir.pipeline.runfile import RunWriter
from headrank_ir.progress import Throughput, progress
from headrank_ir.records import Request

if TYPE_CHECKING:
    from headrank_ir.engine.profile import HeadProfile
    from headrank_ir.engine.ranker import HeadRanker

RankBatches = Callable[[Iterable[list[Request]]], Iterator[RankedBatch]]


@dataclass(frozen=True)
class RankerSettings:
    """The ranker a run loads (``HeadRanker.from_pretrained``'s arguments) and where it ranks:
    ``ray`` None in this process, "" on a local Ray instance, else on the cluster at that address."""

    model: str
    profile: HeadProfile | None  # resolved already: None is ICR's here, not "the shipped one"
    depth: int
    device: str = "auto"
    dtype: str = "auto"
    batch_tokens: int | None = None
    ray: str | None = None
    workers: int | None = None


def rerank_pending(
    writer: RunWriter, requests: Sequence[Request], settings: RankerSettings, batch_size: int
) -> Throughput | None:
    """Rerank the requests ``writer`` does not hold yet, ``batch_size`` queries at a time, and
    write them; None when a resumed run had nothing left (no model is loaded then)."""
    todo = [r for r in requests if not writer.is_done(r.query.qid)]
    if not todo:
        return None
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    with batch_ranker(settings) as rank_batches:
        return rerank_into(writer, rank_batches(batches), settings.depth, len(requests), len(requests) - len(todo))


def rerank_into(
    writer: RunWriter,
    ranked: Iterable[RankedBatch],
    depth: int,
    total: int,
    initial: int,
) -> Throughput:
    """Write each ranked batch (in request order) as it comes, under one progress bar over all queries."""
    done = Throughput()
    with progress(
        total=total,
        initial=initial,
        unit="query",
        desc="reranking",
        dynamic_ncols=True,
    ) as bar:
        began = time.perf_counter()
        for batch, results in ranked:
            done.seconds += time.perf_counter() - began
            for result in results:
                writer.write(result)
            writer.sync()  # once per batch: durable, and never an fsync per query
            done.queries += len(batch)
            done.passages += sum(min(depth, len(r.candidates)) for r in batch)
            bar.set_postfix_str(f"{done.rate:.1f} passages/s")  # first: a plain line shows it with the count
            bar.update(len(batch))
            began = time.perf_counter()
    return done


@contextmanager
def batch_ranker(settings: RankerSettings) -> Iterator[RankBatches]:
    """How batches are ranked: in this process, or (``settings.ray``) by a pool of Ray workers."""
    from headrank_ir.engine.ranker import HeadRanker

    if settings.workers and settings.ray is None:
        raise InputError("--workers sets the number of Ray workers: give it with --ray")
    # the profile was checked against the model up front (engine.checks.preflight)
    load = partial(
        HeadRanker.from_pretrained,
        settings.model,
        profile=ICR if settings.profile is None else settings.profile,
        allow_profile_model_mismatch=True,
        device=settings.device,
        dtype=settings.dtype,
        batch_tokens=settings.batch_tokens,
    )
    if settings.ray is None:
        with load() as ranker:  # leaving stops its planner process, if one was started
            yield lambda batches: ranked_here(ranker, list(batches), settings.depth)
    else:
        with RayPool(load, settings.depth, settings.ray or None, settings.workers) as pool:
            yield pool.ranked


def ranked_here(ranker: HeadRanker, batches: list[list[Request]], depth: int) -> Iterator[RankedBatch]:
    """``(batch, results)`` in order, in this process: ``rerank_batches`` plans the next batch in a
    planner process while a GPU reads this one (``HeadRanker.overlap``); bad input names its
    queries, as on a Ray worker."""
    reranked = ranker.rerank_batches(batches, rank_end=depth)
    for batch in batches:
        yield batch, with_query_ids(batch, lambda: next(reranked))
