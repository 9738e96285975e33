"""Planning ahead of the forwards: a batch's checks and prompts (``PromptPlanner``), in a process
of its own, while the model reads the batch before it.

Not on a thread: a planner thread shares the GIL with the loop that feeds the model (every
blocking copy in that loop releases the GIL and must take it back from the planner: 1.7-2.5 ms a
time measured, against 0.08 ms alone), about half of planning is Python, and on the CPU a thread
planned more slowly than in turn and its runs were no faster than with a process (README,
"Planning ahead"). A :class:`Planner` on the "process" route plans in a second process: the loop
only sends the batch and takes back its plans, pickled (a 100-passage query's plans: 86 kB,
0.5 ms to pickle and 0.7 ms to unpickle, measured here). The process is started with 'spawn'
(torch is not fork-safe), and without the caller's ``__main__`` (``_main_left_behind``), so a
script needs no ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import threading
import types
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Optional, Sequence, Union

from headrank_ir.engine.checks import check_requests
from headrank_ir.engine.reader import HeadReader, Plan, PromptPlanner
from headrank_ir.records import Request

Plans = Dict[int, Plan]  # request index -> its plan; requests with no candidate to rerank have none

Planning = Union[PromptPlanner, HeadReader]  # what plans: ``plan(query, passages)`` and ``profile``

# When and where a batch is planned (``HeadRanker.overlap``): in turn with the reading, in the
# reading's thread ("off"), or ahead of its turn in a planner process.
OVERLAP_ROUTES = ("off", "process")


def plan_requests(planner: Planning, requests: Sequence[Request], rank_start: int, rank_end: int) -> Plans:
    """Every request checked, then the candidates from ``rank_start`` to ``rank_end`` of each
    planned. ``planner``: a ``PromptPlanner``, or the ``HeadReader`` that plans with one (in the
    ranker's own process, where benches clock ``HeadReader.plan``)."""
    check_requests(requests, planner.profile.prompt)
    windows = [r.candidates[rank_start:rank_end] for r in requests]
    return {i: planner.plan(r.query.text, [c.text for c in windows[i]]) for i, r in enumerate(requests) if windows[i]}


_process_planner: Optional[PromptPlanner] = None  # in a planner process: its planner, set once at start


def _install(planner: PromptPlanner) -> None:
    global _process_planner
    _process_planner = planner


def _plan_in_process(requests: Sequence[Request], rank_start: int, rank_end: int) -> Plans:
    return plan_requests(_process_planner, requests, rank_start, rank_end)


class InTurn:
    """A batch's plans made when asked for, in the asking thread: ``Future``'s ``result`` and ``cancel``."""

    def __init__(self, plan: Callable[[], Plans]):
        self._plan = plan

    def result(self) -> Plans:
        return self._plan()

    def cancel(self) -> bool:
        return True


class Planner:
    """``plan_requests`` with ``planner`` in turn (``route`` "off") or ahead on one worker
    ("process"), started on the first :meth:`submit`, whose batch is planned in turn
    meanwhile (a process takes seconds to start: it imports torch), and kept for the next ones;
    :meth:`close` drops pending plans and joins the worker, and a later ``submit`` starts another.

    A process is given the planner once, at start (tokenizer, profile, context length: no model).
    """

    def __init__(self, planner: Planning, route: str):
        if route not in OVERLAP_ROUTES:
            raise ValueError(f"a planner runs in turn or in a process ({OVERLAP_ROUTES}), not {route!r}")
        self.planner, self.route = planner, route
        self._pool: Optional[ProcessPoolExecutor] = None
        self._starting = threading.Lock()  # a Ray worker submits from two threads

    def submit(self, requests: Sequence[Request], rank_start: int, rank_end: int) -> Union[Future, InTurn]:
        in_turn = InTurn(partial(plan_requests, self.planner, requests, rank_start, rank_end))
        if self.route == "off":
            return in_turn
        with self._starting:
            if self._pool is None:  # a process takes seconds to start: meanwhile this batch is planned in turn
                self._pool = self._start()
                return in_turn
        return self._pool.submit(_plan_in_process, requests, rank_start, rank_end)

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        # The planner goes as the first task, which also starts the process now. As an initializer
        # argument it would be written to the new process before it runs, and the caller would
        # wait there while the process imports torch to read the planner's classes.
        with _main_left_behind():
            pool.submit(_install, self.planner)
        return pool

    def close(self) -> None:
        with self._starting:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _main_left_behind():
    """While a process is spawned, ``__main__`` is a bare module. A spawned process first imports
    its parent's ``__main__`` script (as ``__mp_main__``): a script calling ``rerank_batches`` at
    top level, with no ``if __name__ == "__main__":`` guard, would run again in the planner (its
    model loaded twice) and fail there. The planner needs nothing from ``__main__``."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def close_all(planners: Dict[str, Planner]) -> None:
    for planner in planners.values():
        planner.close()


@dataclass(frozen=True)
class Ahead:
    """A batch handed to a planner: ``read()`` waits for its plans (a planning error raised as
    itself, as planning in turn raises it, not chained to a worker's traceback) and gives them
    to ``reading``; ``cancel()`` drops plans not yet begun."""

    plans: Union[Future, InTurn]
    reading: Callable[[Plans], Any]

    def read(self) -> Any:
        try:
            plans = self.plans.result()
        except (ValueError, TypeError) as error:
            raise error from None
        return self.reading(plans)

    def cancel(self) -> None:
        self.plans.cancel()


def failed(error: BaseException) -> Future:
    """A future that holds ``error``: a batch that could not be submitted, raised at its turn."""
    future: Future = Future()
    future.set_exception(error)
    return future
