"""``python -m headrank_ir.bench``: methods × datasets, quality and cost side by side.

Runs every unfinished cell of the grid (each in its own process unless ``--no-isolate``), then
writes ``results.csv``, ``results.md`` and the plots from *all* finished cells under the same
model, depth and query counts, so that subsets run one after another add up to one table.

    python -m headrank_ir.bench --depth 20 --max-queries cranfield=50 vaswani=50
    python -m headrank_ir.bench --methods bm25 icr --datasets dl19 --max-queries 5   # quick pass
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from headrank_ir.bench import plots, report
from headrank_ir.bench.cells import Cell, is_finished, run_cell, run_isolated, run_selectivity
from headrank_ir.bench.datasets import (
    BUILT_IN,
    DATA_VARIABLE,
    DATASETS,
    first_stage_run,
    get_dataset,
    parse_collection,
    prepare,
    register,
)
from headrank_ir.bench.methods import METHODS, get_method
from headrank_ir.bench.store import CellKey, model_label, read_json
from headrank_ir.command_helpers import add_placement_args, positive_int
from headrank_ir.engine.models import DEFAULT_MODEL, DEVICE_ENV, DTYPE_ENV, cache_dir, precision_name
from headrank_ir.engine.profile import parse_head_label
from headrank_ir.outputs import guard_file, guard_folder

logger = logging.getLogger("headrank_ir.bench")

# The homogenisation plot's HeadRank, and the profiles whose heads the head maps mark. Not the
# shipped default: its cell's scores are fused with BM25's ranks, so by position they would show
# the first stage's order, not how the heads' attention spreads.
HEADRANK_PREFERENCE = ("headrank", "headrank-select", "qrhead")


# what an earlier bench leaves in its folder: such a folder is the bench's to write into again
BENCH_OUTPUTS = ("results.csv", "results.md", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m headrank_ir.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"causal LM: short name, folder or hub id (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        metavar="METHOD",
        help=f"subset of: {', '.join(METHODS)}",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="DATASET",
        help=f"subset of: {', '.join(DATASETS)} and the --collection names (default: all built-in ones, "
        "or only the --collection ones when given)",
    )
    parser.add_argument(
        "--collection",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME|KEY=PATH",
        help="a collection of your own, benched like the built-in ones (repeatable): NAME topics=FILE "
        "qrels=FILE corpus=FILE.jsonl (BM25 over an index built once into --cache), or index=DIR, "
        "optionally run=FILE (its first stage instead of BM25) and grade=N (lowest relevant grade, default 1)",
    )
    parser.add_argument(
        "--depth",
        type=positive_int,
        default=20,
        help="rerank the first stage's top DEPTH of 100 (default 20)",
    )
    parser.add_argument(
        "--max-queries",
        nargs="+",
        default=[],
        metavar="N|DATASET=N",
        help="first N queries (sorted ids) of every dataset, or per dataset: cranfield=50 vaswani=50",
    )
    parser.add_argument(
        "--output",
        dest="out",
        type=Path,
        default=Path("runs"),
        help="folder for the results, plots and bench/ (default runs; a new, empty or earlier bench folder)",
    )
    parser.add_argument("--out", dest="out", type=Path, help=argparse.SUPPRESS)  # the flag's name before 27
    parser.add_argument(
        "--profiles",
        type=Path,
        default=Path("profiles"),
        help="trained profiles folder (default profiles)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"the built-in datasets' data folder (default ${DATA_VARIABLE}; not needed for --collection)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="Lucene indexes and corpus embeddings (default the model cache)",
    )
    parser.add_argument(
        "--no-isolate",
        action="store_true",
        help="run cells in this process (faster; peak RSS then accumulates)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="recompute the selected cells even when finished",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite the table and plots from finished cells",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    add_placement_args(parser)
    return parser


def parse_max_queries(values: Sequence[str], datasets: Sequence[str]) -> dict[str, int | None]:
    """``["50"]`` → every dataset 50; ``["cranfield=50"]`` → only Cranfield; others all queries."""
    limits: dict[str, int | None] = {d: None for d in datasets}
    for value in values:
        name, _, count = value.rpartition("=")
        try:
            number = positive_int(count)
        except argparse.ArgumentTypeError:
            raise ValueError(f"--max-queries takes N or DATASET=N with N a positive integer, got {value!r}") from None
        targets = [get_dataset(name).name] if name else list(datasets)
        limits.update({d: number for d in targets})
    return limits


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
    )
    try:
        for name in args.methods:
            get_method(name)
        own = [register(parse_collection(values)).name for values in args.collection]
        datasets = [get_dataset(d).name for d in args.datasets or ([] if own else BUILT_IN)]
        datasets += [name for name in own if name not in datasets]
        limits = parse_max_queries(args.max_queries, list(DATASETS))
        # a missing GPU fails here, not in every cell; the precision is part of every cell's key
        args.precision = precision_name(args.device, args.dtype)
        # the one output guard, before any cell: never a file, an input or someone else's folder
        guard_folder(args.out, "--output", [args.data, args.profiles, args.cache], ours=BENCH_OUTPUTS)
        for name in ("results.csv", "results.md", "quality_cost.png", "homogenisation.png"):
            guard_file(args.out / name, "--output")  # written after the cells: a pipe or link fails now
        # every model of the run (each cell's own process included) loads where these say
        os.environ.update({DEVICE_ENV: args.device, DTYPE_ENV: args.dtype})
        return _bench(args, datasets, limits)
    except (ValueError, RuntimeError) as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2


def _bench(args, datasets: list[str], limits: dict[str, int | None]) -> int:
    bench_dir = args.out / "bench"
    data = args.data  # None: $HEADRANK_DATA, looked up only if a built-in dataset is used
    cache = args.cache or cache_dir()
    failures: list[str] = []
    if not args.report_only:
        failures = _run_cells(args, datasets, limits, bench_dir, data, cache)
    write_report(args, bench_dir, data, limits)
    for failure in failures:
        print(f"bench: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _run_cells(args, datasets, limits, bench_dir: Path, data: Path | None, cache: Path) -> list[str]:
    collections = {d: prepare(DATASETS[d], data, bench_dir, cache) for d in datasets}
    failures = []
    for method in [m for m in METHODS if m in args.methods]:  # registry order: ICR before the QRHead it feeds
        for dataset in datasets:
            cell = Cell(
                CellKey(args.model, dataset, method, args.depth, limits[dataset], args.precision),
                collections[dataset],
                bench_dir,
                args.profiles,
                cache,
            )
            if is_finished(cell) and not args.force:
                continue
            logger.info("cell %s on %s", method, dataset)
            try:
                run_cell(cell) if args.no_isolate else run_isolated(cell)
            except RuntimeError as error:
                failures.append(str(error))
                logger.error("%s", error)
    return failures


def write_report(args, bench_dir: Path, data: Path | None, limits: dict[str, int | None]) -> None:
    """Table and plots from every finished cell of this model, depth and query counts."""
    from headrank_ir.pipeline.readers import read_qrels_file, read_trec_run

    keys = [CellKey(args.model, d, m, args.depth, limits[d], args.precision) for d in DATASETS for m in METHODS]
    records = report.order_records(
        [r for k in keys if (r := read_json(k.result(bench_dir)))],
        list(METHODS),
        list(DATASETS),
    )
    skipped = [s for k in keys if not k.result(bench_dir).exists() and (s := read_json(k.skip_note(bench_dir)))]
    if not records:
        logger.warning("no finished cells yet: no table written")
        return
    present = [d for d in DATASETS if any(r["dataset"] == d for r in records)]
    by_cell = {(r["method"], r["dataset"]): r for r in records}
    qrels = {d: read_qrels_file(DATASETS[d].path(data, DATASETS[d].qrels)) for d in present}
    first_stages = {d: read_trec_run(first_stage_run(DATASETS[d], data, bench_dir)).hits for d in present}
    for r in records:
        r["selectivity"] = _selectivity(r, bench_dir, first_stages[r["dataset"]], qrels[r["dataset"]])
    written = [plots.quality_cost(records, present, args.out / "quality_cost.png")]
    written += _homogenisation(by_cell, present, qrels, args.out)
    written += _head_maps(by_cell, args.model, args.out)
    notes = report.about_notes(records) + [f"skipped `{s['method']}` on {s['dataset']}: {s['reason']}" for s in skipped]
    notes += _standing_notes(records)
    settings = _settings_line(args, limits, present)
    (args.out / "results.csv").write_text(report.to_csv([report.row(r) for r in records]), encoding="utf-8")
    md = report.to_markdown(records, present, notes, [p.name for p in written], settings)
    (args.out / "results.md").write_text(md, encoding="utf-8")
    logger.info(
        "wrote %s, %s and %d plots",
        args.out / "results.csv",
        args.out / "results.md",
        len(written),
    )


def _selectivity(record: dict, bench_dir: Path, first_stage: dict, qrels) -> dict | None:
    if get_method(record["method"]).own_first_stage:
        return None  # no BM25 context to be selective in
    fields = ("model", "dataset", "method", "depth", "max_queries")
    key = CellKey(*(record[field] for field in fields), record.get("dtype", "float32"))  # older cells: float32
    return run_selectivity(key.run(bench_dir), first_stage, qrels, DATASETS[key.dataset], key.depth)


def _homogenisation(by_cell, datasets: list[str], qrels, out: Path) -> list[Path]:
    panels = []
    for dataset in datasets:
        icr = by_cell.get(("icr", dataset))
        best = plots.best_available(
            {m: by_cell[m, dataset] for m in HEADRANK_PREFERENCE if (m, dataset) in by_cell},
            HEADRANK_PREFERENCE,
        )
        if icr is None or best is None:
            continue
        panels += [
            (f"{dataset}: ICR", icr, qrels[dataset], DATASETS[dataset]),
            (f"{dataset}: {best}", by_cell[best, dataset], qrels[dataset], DATASETS[dataset]),
        ]
    return [plots.homogenisation(panels, out / "homogenisation.png")] if panels else []


def _head_maps(by_cell, model: str, out: Path) -> list[Path]:
    """One map per training set: ICR's per-head nDCG@10 there, heads chosen from it marked."""
    written = []
    for train in ("dl20", "dl19"):
        icr = by_cell.get(("icr", train))
        if icr is None or not icr.get("head_ndcg"):
            continue
        tests = [d for d, dataset in DATASETS.items() if dataset.train_set == train]
        selected = {}
        for method in HEADRANK_PREFERENCE[::-1]:
            record = next((by_cell[method, d] for d in tests if (method, d) in by_cell), None)
            if record and record.get("heads"):
                selected[method] = set(record["heads"])
        labels = [parse_head_label(h) for h in icr["head_ndcg"]]
        layers, heads = max(l for l, _ in labels) + 1, max(h for _, h in labels) + 1
        marked = (
            f"marked: heads chosen on {train} (used on {', '.join(tests)})"
            if selected
            else f"no heads marked: no profile chosen on {train} was benched"
        )
        title = (
            f"{model_label(model)}: nDCG@10 of each head alone on {train} "
            f"({icr['queries']} queries, top {icr['depth']});\n{marked}"
        )
        written.append(
            plots.head_map(
                icr["head_ndcg"],
                layers,
                heads,
                selected,
                title,
                out / f"headmap.{train}.png",
            )
        )
    return written


def _standing_notes(records) -> list[str]:
    isolated = all(r["cost"]["isolated"] for r in records)
    return [
        "Rerankers reorder the BM25 top `depth` of 100; the rest keeps BM25's order, so recall_100 equals BM25's.",
        "Δ columns: mean per-query nDCG@10 difference, p from a paired randomisation test (10,000 sign flips).",
        "Selectivity: middle half of the top-`depth` context; relevant = grade ≥ 2 (DL, Cranfield) or ≥ 1 (Vaswani); "
        "irrelevant = grade 0 (DL), unjudged (Cranfield and Vaswani, whose qrels list relevant passages only).",
        "Cost: wall time of ranking only (model loading excluded); forward_passes per query counts truncated "
        "forwards (attention), generated tokens (RankGPT) or encoder batches (MiniLM); peak RSS per "
        + ("cell process." if isolated else "process (cells shared a process: peaks accumulate)."),
    ]


def _settings_line(args, limits, datasets) -> str:
    queries = ", ".join(f"{d}: {'all' if limits[d] is None else f'first {limits[d]}'}" for d in datasets)
    return (
        f"Model `{args.model}`, rerank depth {args.depth}, queries ({queries}); "
        f"{platform.machine()} CPU, --device {args.device} --dtype {args.dtype}, Python {platform.python_version()}. "
        "Columns as in results.csv."
    )


if __name__ == "__main__":
    sys.exit(main())
