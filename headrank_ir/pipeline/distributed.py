"""Rerank on a Ray cluster: a pool of Ray actors, each holding one loaded ``HeadRanker``.

The driver (the process running ``python -m headrank_ir.rerank --ray``) cuts the requests into
the same batches as a single-process run, hands each batch to the next worker with a free slot,
and yields the results back in request order, so the one ``RunWriter`` on the driver writes the
bytes a single-process run writes, however many workers there are and in whatever order they
finish. A worker process that dies is restarted by Ray (``max_restarts``) and only the batches
it held are run again (``max_task_retries``); the other workers carry on. Ray is an optional
extra: nothing here imports it until a pool starts.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from headrank_ir.errors import InputError, MissingExtra
from headrank_ir.pipeline.signal_handlers import kept_signal_handlers

if TYPE_CHECKING:
    from headrank_ir.engine.ranker import HeadRanker
    from headrank_ir.records import Request, Result

logger = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'headrank_ir[ray]'"
# Ray restarts a dead worker this many times, and re-runs each of its batches as often.
RETRIES = 3
# Batches queued on each worker, so it never waits for the driver between two batches.
SLOTS_PER_WORKER = 2
# Finished batches held back while an earlier one is still running, per slot: bounds the buffer.
AHEAD_PER_SLOT = 2

RankedBatch = tuple[list["Request"], list["Result"]]
T = TypeVar("T")


def rank_batch(
    ranker: HeadRanker, batch: Sequence[Request], depth: int, turn: AbstractContextManager = nullcontext()
) -> list[Result]:
    """One batch, as a Ray worker ranks it: sent to the ranker's planner at once, read when ``turn``
    (the model) is free; bad input names its queries."""
    ahead = with_query_ids(batch, lambda: ranker.rerank_ahead(batch, rank_end=depth))
    with turn:
        return with_query_ids(batch, ahead.read)


def with_query_ids(batch: Sequence[Request], rank: Callable[[], T]) -> T:
    """``rank()``, with the batch's query ids put in front of a bad-input error."""
    try:
        return rank()
    except ValueError as error:
        raise ValueError(f"query {', '.join(r.query.qid for r in batch)}: {error}") from error


def start_ray(ray: Any, **options: Any) -> None:
    """``ray.init(**options)``, with this process's fatal-signal handlers left as they were: a JVM
    here (Pyserini's first stage) dies at random without its own (see ``signal_handlers``)."""
    with kept_signal_handlers():
        ray.init(**options)


def stop_ray(ray: Any) -> None:
    """``ray.shutdown()``, which would reset the fatal-signal handlers to the default."""
    with kept_signal_handlers():
        ray.shutdown()


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`MissingExtra` saying how to install it."""
    try:
        import ray
    except ImportError as error:
        if error.name != "ray":  # Ray is there but broken: show the real failure
            raise
        raise MissingExtra(f"--ray needs Ray, an optional extra: {RAY_EXTRA}") from None
    return ray


# Seconds an address may take to accept a connection before ``--ray`` gives up on it.
CONNECT_TIMEOUT = 5.0


def ray_endpoint(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of a ``--ray`` address (``host:port`` or ``ray://host:port``); None for a
    local instance or ``auto``, which Ray looks up itself."""
    if not address or address in ("auto", "local"):
        return None
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise InputError(f"--ray takes auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def check_ray_address(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """An address where nothing answers fails in one line within ``timeout`` seconds, before
    anything is loaded or written; Ray itself would retry it for ever."""
    endpoint = ray_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as error:
        why = error.strerror or type(error).__name__.replace("TimeoutError", "no answer")
        raise InputError(
            f"--ray {address}: nothing answers at {endpoint[0]}:{endpoint[1]} ({why}); start the cluster "
            "(ray start --head) or check the address"
        ) from None


def quiet_ray_logs() -> None:
    """In redirected output (a log file, a pipe), Ray's worker lines without ANSI colours and
    without its token-authentication notice, which says nothing about this run."""
    if sys.stderr.isatty():
        return
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read by the driver's log printer and the workers
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


@dataclass(frozen=True)
class PoolShape:
    """How many workers, and what each one holds: a GPU, or a share of the CPUs as torch threads."""

    workers: int
    gpus_each: int
    threads_each: int


def pool_shape(resources: Mapping[str, float], workers: int | None, max_threads: int | None = None) -> PoolShape:
    """One worker per GPU where the cluster has GPUs (``workers`` may ask for fewer), else ``workers``
    (default 1); each with an equal share of the CPUs as torch threads, at most ``max_threads``."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    count = workers or gpus or 1
    if gpus and count > gpus:
        raise InputError(f"--workers {count} but the Ray cluster has {gpus} GPUs; each worker takes one GPU")
    if not gpus and count > cpus:
        raise InputError(f"--workers {count} but the Ray cluster has {cpus} CPUs; give --workers {cpus} or less")
    threads = max(1, cpus // count)
    return PoolShape(count, 1 if gpus else 0, min(threads, max_threads or threads))


def thread_cap() -> int | None:
    """``OMP_NUM_THREADS`` of the driver, if set: the workers keep to it as a single process would."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class RankerWorker:
    """A Ray actor's state: one ``HeadRanker``, loaded on its first batch (so a bad model name is
    an ordinary task error, not a dead actor) and again after Ray restarts the process.

    The actor takes its ``SLOTS_PER_WORKER`` queued batches at once (a threaded actor): each goes
    to the ranker's planner as it arrives (``HeadRanker.rerank_ahead``: in a planner process where
    ``overlap`` says so), then waits for the model, which reads one batch at a time. A sequential
    actor would not see the next batch before this one returned."""

    def __init__(self, load: Callable[[], HeadRanker], depth: int, threads: int):
        self._load = load
        self._depth = depth
        self._threads = threads
        self._ranker: HeadRanker | None = None
        self._loading, self._model = threading.Lock(), threading.Lock()

    def ready(self) -> None:
        """Load the ranker, once per process."""
        with self._loading:
            if self._ranker is None:
                import torch

                torch.set_num_threads(self._threads)
                self._ranker = self._load()

    def rank(self, batch: list[Request]) -> list[Result]:
        self.ready()
        return rank_batch(self._ranker, batch, self._depth, self._model)


class RayPool:
    """Workers on a Ray cluster; use as a context manager, then :meth:`ranked` the batches.

    ``address`` as ``ray.init`` takes it (``"auto"``, ``"ray://host:10001"``, …); ``None`` starts
    a local Ray instance, shut down again on exit. ``load`` builds a worker's ranker; it is
    pickled to the workers, so a ``functools.partial`` of ``HeadRanker.from_pretrained`` suits.
    """

    def __init__(self, load: Callable[[], HeadRanker], depth: int, address: str | None, workers: int | None):
        self._ray = import_ray()
        self._load, self._depth, self._address, self._workers = load, depth, address, workers
        self._started_ray = False
        self._actors: list[Any] = []

    def __enter__(self) -> RayPool:
        ray = self._ray
        if not ray.is_initialized():
            check_ray_address(self._address)  # Ray retries an unreachable address for ever
            quiet_ray_logs()
            start_ray(ray, address=self._address, logging_level=logging.WARNING)
            self._started_ray = True
        try:
            self._start_workers()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_workers(self) -> None:
        ray = self._ray
        resources = ray.cluster_resources()
        shape = pool_shape(resources, self._workers, thread_cap())
        actor = ray.remote(RankerWorker).options(
            max_concurrency=SLOTS_PER_WORKER,  # the next batch is planned while this one is read
            num_cpus=1,
            num_gpus=shape.gpus_each,
            max_restarts=RETRIES,
            max_task_retries=RETRIES,
            scheduling_strategy="SPREAD",
        )
        self._actors = [actor.remote(self._load, self._depth, shape.threads_each) for _ in range(shape.workers)]
        self._get([a.ready.remote() for a in self._actors])
        logger.info(
            "Ray: %d workers, each with %s, on a cluster of %d CPUs and %d GPUs",
            shape.workers,
            "1 GPU" if shape.gpus_each else f"{shape.threads_each} torch threads",
            resources.get("CPU", 0),
            resources.get("GPU", 0),
        )

    def _get(self, refs: Any) -> Any:
        """``ray.get``, with an error raised by our code (bad input) given back as itself."""
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, ValueError):
                raise error.cause from None
            raise

    def ranked(self, batches: Iterable[list[Request]]) -> Iterator[RankedBatch]:
        """``(batch, results)`` in the order of ``batches``, whichever worker finishes first."""
        todo = enumerate(batches)
        slots = deque(actor for actor in self._actors for _ in range(SLOTS_PER_WORKER))
        limit = len(slots) * AHEAD_PER_SLOT
        running: dict[Any, tuple[int, Any, list[Request]]] = {}
        finished: dict[int, RankedBatch] = {}
        submitted = next_out = 0
        while True:
            while slots and submitted < next_out + limit and (item := next(todo, None)) is not None:
                index, batch = item
                actor = slots.popleft()
                running[actor.rank.remote(batch)] = (index, actor, batch)
                submitted += 1
            if not running:
                return
            ready, _ = self._ray.wait(list(running), num_returns=1)
            for ref in ready:
                index, actor, batch = running.pop(ref)
                finished[index] = (batch, self._get(ref))
                slots.append(actor)
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1

    def __exit__(self, *exc_info: object) -> None:
        for actor in self._actors:
            self._ray.kill(actor)  # frees the GPUs of a shared cluster now, not when the driver exits
        self._actors = []
        if self._started_ray:
            stop_ray(self._ray)
            self._started_ray = False
