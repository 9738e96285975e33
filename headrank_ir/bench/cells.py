"""One cell of the grid: one method on one dataset, run, written and evaluated.

A cell writes its TREC run with the CLI's formatter (tag: the method's name), then a JSON record
(measures read back from that run file by ``evaluation.measures``, per-query nDCG@10, cost, and the raw
scores the plots need). Selectivity is read from the run file by the report (``run_selectivity``),
so every row uses the current definition. The JSON is written last and atomically, so its presence
means the cell is finished. By default each cell runs in a fresh process: peak RSS is then that
method's alone, and timings do not inherit another method's warm caches.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, replace
from itertools import accumulate
from pathlib import Path

from headrank_ir.atomic import write_atomic
from headrank_ir.bench.datasets import Collection, Dataset, Loaded, load, train_set
from headrank_ir.bench.methods import Context, Ranking, Skip, get_method, rescored_top
from headrank_ir.bench.report import MEASURE_COLUMNS
from headrank_ir.bench.store import CellKey, read_json, write_json
from headrank_ir.evaluation.measures import (
    DEFAULT_MEASURES,
    Qrels,
    mean_measures,
    per_query,
    read_run_scores,
    scores_of,
)
from headrank_ir.evaluation.selectivity import selectivity
from headrank_ir.pipeline.readers import read_trec_run
from headrank_ir.pipeline.runfile import format_trec
from headrank_ir.records import Result

logger = logging.getLogger(__name__)

NDCG = "nDCG@10"  # per query: the significance tests and the head map


@dataclass(frozen=True)
class Cell:
    key: CellKey
    collection: Collection
    bench_dir: Path
    profiles: Path
    cache: Path


def is_finished(cell: Cell) -> bool:
    return cell.key.result(cell.bench_dir).exists()


def run_isolated(cell: Cell) -> None:
    """Run the cell in a fresh (spawned) process; raises when it fails."""
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(cell, logging.getLogger().level))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"cell {cell.key.method} on {cell.key.dataset} failed (exit code {child.exitcode})")


def _child(cell: Cell, level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    run_cell(cell, isolated=True)


def run_cell(cell: Cell, isolated: bool = False) -> dict | None:
    """Run, write and evaluate one cell; returns its record, or None when the method must skip."""
    key = cell.key
    loaded = load(cell.collection, key.max_queries)
    try:
        method = get_method(key.method).build(_context(cell))
    except Skip as reason:
        logger.warning("skipping %s on %s: %s", key.method, key.dataset, reason)
        write_json(
            key.skip_note(cell.bench_dir),
            {"method": key.method, "dataset": key.dataset, "reason": str(reason)},
        )
        return None
    rankings, seconds, load_max = _rank_all(method, loaded)
    head_labels = getattr(method, "head_labels", None)  # attention methods only
    run_path = key.run(cell.bench_dir)
    write_atomic(run_path, "".join(format_trec(ranking.result, key.method) for ranking in rankings))
    record = {
        **asdict(key),
        "about": method.about,
        "queries": len(loaded.requests),
        **run_measures(run_path, loaded.qrels),
        "cost": _cost(key, loaded, rankings, seconds, load_max, isolated),
        "format": _format(rankings),
        "heads": head_labels,
        "scores": _scores(rankings),
        "head_ndcg": _head_ndcg(head_labels, loaded, rankings),
    }
    write_json(key.result(cell.bench_dir), record)
    key.skip_note(cell.bench_dir).unlink(missing_ok=True)
    logger.info(
        "%s on %s: nDCG@10 %.4f",
        key.method,
        key.dataset,
        record["measures"]["ndcg_cut_10"],
    )
    return record


def _context(cell: Cell) -> Context:
    key = cell.key
    train = train_set(key.dataset)
    icr = read_json(replace(key, dataset=train, method="icr").result(cell.bench_dir))
    return Context(
        key.model,
        key.dataset,
        key.depth,
        cell.collection,
        cell.profiles,
        cell.cache,
        icr and icr["head_ndcg"],
    )


def _rank_all(method, loaded: Loaded):
    from headrank_ir.progress import progress

    rankings: list[Ranking] = []
    seconds, load_max = 0.0, 0.0
    for request in progress(loaded.requests, desc="queries", unit="q", mininterval=10):
        start = time.perf_counter()
        rankings.append(method.ranking(request))
        seconds += time.perf_counter() - start
        load_max = max(load_max, os.getloadavg()[0])  # other jobs on the CPUs inflate the times
    return rankings, seconds, load_max


def run_measures(run_path: Path, qrels: Qrels) -> dict:
    """The CLI's measures and per-query nDCG@10 of a TREC run file, under the table's column names."""
    run = read_run_scores(str(run_path), "trec")
    aggregate = mean_measures(run, qrels, DEFAULT_MEASURES)
    return {
        "measures": {MEASURE_COLUMNS[m]: aggregate[m] for m in DEFAULT_MEASURES},
        "per_query_ndcg_cut_10": per_query(run, qrels, [NDCG])[NDCG],
    }


def run_selectivity(run_path: Path, first_stage: dict, qrels: dict, dataset: Dataset, depth: int) -> dict:
    """Selectivity of a written run: its top ``depth`` (the prompt's passages, reordered) against
    the same passages in first-stage order (``first_stage``: the first stage's hits per qid)."""
    reranked = {q: [h.docid for h in hits[:depth]] for q, hits in read_trec_run(run_path).hits.items()}
    shown = {q: _in_order_of(first_stage[q], docids) for q, docids in reranked.items()}
    result = selectivity(
        shown,
        reranked,
        qrels,
        relevant_grade=dataset.relevant_grade,
        unjudged_irrelevant=dataset.unjudged_irrelevant,
    )
    return {**asdict(result), "gap": result.gap}


def _in_order_of(hits, docids) -> list[str]:
    kept = set(docids)
    return [h.docid for h in hits if h.docid in kept]


def _cost(
    key: CellKey,
    loaded: Loaded,
    rankings: list[Ranking],
    seconds: float,
    load_max: float,
    isolated: bool,
) -> dict:
    queries = len(rankings)
    passages = sum(min(key.depth, len(r.candidates)) for r in loaded.requests)
    timed = get_method(key.method).timed
    return {
        "seconds": seconds if timed else None,
        "s_per_query": seconds / queries if timed and queries else None,
        "passages_per_s": passages / seconds if timed and seconds else None,
        "forward_passes": sum(r.forward_passes for r in rankings) / queries if queries else 0.0,
        # ru_maxrss is in KiB on Linux; only meaningful per method when the cell had its own process
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "isolated": isolated,
        "load_average_max": load_max,  # the highest 1-minute load average while ranking
        "cpus": os.cpu_count(),
    }


def _format(rankings: list[Ranking]) -> dict | None:
    windows = sum(r.windows for r in rankings)
    if not windows:
        return None
    full = sum(r.full_windows for r in rankings)
    return {
        "windows": windows,
        "full": full,
        "success": full / windows,
        "appended": sum(r.appended for r in rankings),
    }


def _scores(rankings: list[Ranking]) -> dict | None:
    """Attention methods, per query: the top-depth docids (first-stage order), their scores and
    prompt positions, read from the invocations history."""
    if not any(r.result.invocations_history for r in rankings):
        return None
    scores = {}
    for ranking in rankings:
        history = ranking.result.invocations_history
        by_docid = {c.docid: c.score for c in ranking.result.candidates}
        docids = [d for window in history for d in window.docids]
        scores[ranking.result.query.qid] = {
            "docids": docids,
            "scores": [by_docid[d] for d in docids],
            "positions": [p for window in history for p in window.positions],
        }
    return scores


def _head_ndcg(labels: list[str] | None, loaded: Loaded, rankings: list[Ranking]) -> dict[str, float] | None:
    """Mean nDCG@10 of each profile head reranking the top depth on its own (the head map's data)."""
    if labels is None:
        return None
    return {
        label: mean_measures(scores_of(head_results(loaded, rankings, k)), loaded.qrels, [NDCG])[NDCG]
        for k, label in enumerate(labels)
    }


def head_results(loaded: Loaded, rankings: list[Ranking], head: int) -> list[Result]:
    """Each query reranked by one head's scores alone (windows merged as the ranker merges them)."""
    from headrank_ir.engine.windows import merge_windows

    results = []
    for request, ranking in zip(loaded.requests, rankings):
        history = ranking.result.invocations_history
        ends = list(accumulate(len(window.docids) for window in history))
        windows = [list(range(end - len(w.docids), end)) for end, w in zip(ends, history)]
        scores = merge_windows(windows, [w.head_scores[head] for w in history], ends[-1] if ends else 0)
        results.append(rescored_top(request, scores, len(scores)))
    return results
