"""The results table: one row per finished cell, as CSV and as Markdown with significance."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

from headrank_ir.evaluation.measures import DEFAULT_MEASURES
from headrank_ir.evaluation.significance import compare

# The table's name for each of the CLI's measures (``evaluation.measures.DEFAULT_MEASURES``), as the
# committed results.csv and cell records spell them.
MEASURE_COLUMNS = {"nDCG@10": "ndcg_cut_10", "AP@100": "map_100", "R@100": "recall_100", "RR@10": "rr_10"}

COLUMNS = [
    "method",
    "dataset",
    "queries",
    *(MEASURE_COLUMNS[m] for m in DEFAULT_MEASURES),
    "sel_rel",
    "sel_irr",
    "sel_gap",
    "s_per_query",
    "passages_per_s",
    "forward_passes",
    "peak_rss_mb",
    "format_success",
]


def row(record: Mapping) -> dict[str, object]:
    """A cell record flattened to the table's columns; None where a column does not apply."""
    sel = record.get("selectivity") or {}
    cost = record["cost"]
    fmt = record.get("format") or {}
    return {
        "method": record["method"],
        "dataset": record["dataset"],
        "queries": record["queries"],
        **record["measures"],
        "sel_rel": sel.get("relevant"),
        "sel_irr": sel.get("irrelevant"),
        "sel_gap": sel.get("gap"),
        "s_per_query": cost["s_per_query"],
        "passages_per_s": cost["passages_per_s"],
        "forward_passes": cost["forward_passes"] if cost["s_per_query"] is not None else None,
        "peak_rss_mb": cost["peak_rss_mb"] if cost["s_per_query"] is not None else None,
        "format_success": fmt.get("success"),
    }


def _cell(value: object, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else ""
    return str(value)


def to_csv(rows: Sequence[Mapping]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in COLUMNS])
    return out.getvalue()


# The Markdown table's paired-significance columns, one per reference method: the first stage, the
# engine's default, and the old (trained-on-one-set) profiles that the shipped default replaces.
SIGNIFICANCE_REFERENCES = (
    ("bm25", "Δ nDCG@10 vs BM25"),
    ("icr", "Δ vs ICR"),
    ("headrank-select", "Δ vs headrank-select"),
    ("headrank", "Δ vs headrank"),
)


def significance_marks(records: Sequence[Mapping]) -> dict[tuple, list[str]]:
    """``(method, dataset) -> ["+0.012 (p=0.030)", "-0.004 (p=0.710)", ...]``: nDCG@10 against each
    of ``SIGNIFICANCE_REFERENCES`` in order; blank where that reference's cell is missing, shares no
    query with the row, or is the row itself."""
    per_query = {(r["method"], r["dataset"]): r["per_query_ndcg_cut_10"] for r in records}
    marks = {}
    for (method, dataset), scores in per_query.items():
        parts = []
        for reference, _ in SIGNIFICANCE_REFERENCES:
            other = per_query.get((reference, dataset))
            if other is None or reference == method or not set(other) & set(scores):
                parts.append("")
                continue
            c = compare(scores, other)
            parts.append(f"{c.mean_difference:+.4f} (p={c.p_randomisation:.3f})")
        marks[method, dataset] = parts
    return marks


MD_COLUMNS = tuple(c for c in COLUMNS if c != "dataset")  # one table per dataset


def to_markdown(
    records: Sequence[Mapping],
    datasets: Sequence[str],
    notes: list[str],
    plots: Sequence[str],
    settings: str,
) -> str:
    """Tables per dataset, significance columns, ``notes`` then the cells' own notes, plot links."""
    marks = significance_marks(records)
    significance_headers = [header for _, header in SIGNIFICANCE_REFERENCES]
    lines = ["# HeadRank benchmark results", "", settings, ""]
    for dataset in datasets:
        rows = [row(r) for r in records if r["dataset"] == dataset]
        if not rows:
            continue
        lines += [
            f"## {dataset}",
            "",
            "| " + " | ".join([*MD_COLUMNS, *significance_headers]) + " |",
            "|" + "---|" * (len(MD_COLUMNS) + len(significance_headers)),
        ]
        for r in rows:
            cells = [
                _cell(
                    r[c],
                    2
                    if c
                    in (
                        "s_per_query",
                        "passages_per_s",
                        "forward_passes",
                        "peak_rss_mb",
                    )
                    else 4,
                )
                for c in MD_COLUMNS
            ]
            lines.append("| " + " | ".join(cells + marks[r["method"], dataset]) + " |")
        lines.append("")
    lines += ["## Notes", ""] + [f"- {n}" for n in [*notes, *cell_notes(records)]] + [""]
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def about_notes(records: Sequence[Mapping]) -> list[str]:
    """What each method was, once per distinct description (profiles differ per test set)."""
    seen: dict[str, list[str]] = {}
    for r in records:
        seen.setdefault(f"`{r['method']}`: {r['about']}", []).append(r["dataset"])
    return [f"{text} — on {', '.join(ds)}" for text, ds in seen.items()]


def cell_notes(records: Sequence[Mapping]) -> list[str]:
    """The load each timed cell was ranked under, where its record has it (cells written since the
    bench recorded it): the highest 1-minute load average seen while ranking, against the CPUs.
    A load above the CPU count plus one means other jobs shared them: the row's times overstate an idle run."""
    notes = []
    for r in records:
        cost = r["cost"]
        if cost.get("load_average_max") is None or cost.get("s_per_query") is None:
            continue
        load, cpus = cost["load_average_max"], cost["cpus"]
        note = f"`{r['method']}` on {r['dataset']}: load average up to {load:.1f} on {cpus} CPUs"
        shared = load > cpus + 1  # the cell's own threads keep the load near the CPU count
        notes.append(note + (" (shared with other jobs: its times overstate an idle run)" if shared else ""))
    return notes


def order_records(records: Sequence[Mapping], methods: Sequence[str], datasets: Sequence[str]) -> list[Mapping]:
    rank = {m: i for i, m in enumerate(methods)}
    where = {d: i for i, d in enumerate(datasets)}
    return sorted(records, key=lambda r: (where.get(r["dataset"], 99), rank.get(r["method"], 99)))
