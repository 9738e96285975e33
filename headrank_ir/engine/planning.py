"""Planning ahead of the forwards: a batch's checks and prompts (``PromptPlanner``), in a process
of its own or on a thread, while the model reads the batch before it.

A planner thread shares the GIL with the loop that feeds the model: every blocking copy in that
loop releases the GIL and must take it back from the planner (1.7-2.5 ms a time measured, against
0.08 ms alone), and about half of planning is Python. A :class:`Planner` on the "process" route
plans in a second process instead: the loop only sends the batch and takes back its plans,
pickled (tools/bench_throughput.py measures the routes). The process is started with 'spawn'
(torch is not fork-safe), so a script that uses it needs the usual ``if __name__ == "__main__":``
guard.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Dict, Optional, Sequence, Union

from headrank_ir.engine.checks import check_requests
from headrank_ir.engine.reader import HeadReader, Plan, PromptPlanner
from headrank_ir.records import Request

Plans = Dict[int, Plan]  # request index -> its plan; requests with no candidate to rerank have none

Planning = Union[PromptPlanner, HeadReader]  # what plans: ``plan(query, passages)`` and ``profile``

# Where a batch is planned while the one before it is read (``HeadRanker.overlap``).
OVERLAP_ROUTES = ("thread", "process")


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


class Planner:
    """``plan_requests`` with ``planner`` on one worker (``route`` "thread" or "process"), started
    on the first :meth:`submit` and kept for the next ones (a process takes seconds to start: it
    imports torch); :meth:`close` drops pending plans and joins the worker,
    and a later ``submit`` starts a new one.

    A process is given the planner once, at start (tokenizer, profile, context length: no model).
    """

    def __init__(self, planner: Planning, route: str):
        if route not in OVERLAP_ROUTES:
            raise ValueError(f"a planner runs on a thread or in a process, not {route!r}")
        self.planner, self.route = planner, route
        self._pool: Optional[Executor] = None

    def submit(self, requests: Sequence[Request], rank_start: int, rank_end: int) -> Future:
        if self._pool is None:
            self._pool = self._start()
        if self.route == "thread":
            return self._pool.submit(plan_requests, self.planner, requests, rank_start, rank_end)
        return self._pool.submit(_plan_in_process, requests, rank_start, rank_end)

    def _start(self) -> Executor:
        if self.route == "thread":
            return ThreadPoolExecutor(max_workers=1)
        spawn = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=_install, initargs=(self.planner,))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def close_all(planners: Dict[str, Planner]) -> None:
    for planner in planners.values():
        planner.close()


def plans_of(future: Future) -> Plans:
    """A submitted batch's plans; a planning error is raised here as itself, as planning in
    this thread would raise it (not chained to the worker's traceback)."""
    try:
        return future.result()
    except (ValueError, TypeError) as error:
        raise error.with_traceback(None) from None


def failed(error: BaseException) -> Future:
    """A future that holds ``error``: a batch that could not be submitted, raised at its turn."""
    future: Future = Future()
    future.set_exception(error)
    return future
