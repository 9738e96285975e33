"""The bench's three pictures, drawn from the cell records, and ``evaluate --compare``'s per-query
differences (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from headrank_ir.engine.profile import parse_head_label
from headrank_ir.evaluation.selectivity import relevance_kind

MIDDLE_COLOUR = "#eeeeee"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    return plt


def _method_index(method: str) -> int | None:
    """The method's place in the bench registry: the same colour and marker in every panel."""
    from headrank_ir.bench.methods import METHODS

    return list(METHODS).index(method) if method in METHODS else None


def method_colour(method: str) -> str:
    """matplotlib's tab10 in registry order."""
    index = _method_index(method)
    return "black" if index is None else f"C{index % 10}"


def method_marker(method: str) -> str:
    """A marker per method too, so that points which overlap can still be told apart."""
    markers = "osD^vPXh<>"
    index = _method_index(method)
    return "o" if index is None else markers[index % len(markers)]


def _grid(plt, count: int, width: float = 5.0, height: float = 4.0):
    cols = min(count, 2)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def decade_limits(low: float, high: float) -> tuple[float, float]:
    """``(low, high)`` widened to whole powers of ten. A log axis labels only its decades: over a
    narrower range its labelled ticks fall outside the view and are drawn at its edges, so that
    points at 3.9 and 6.2 s looked like 1 and 10 s."""
    return 10.0 ** math.floor(math.log10(low)), 10.0 ** math.ceil(math.log10(high))


def quality_cost(records: Sequence[Mapping], datasets: Sequence[str], path: Path) -> Path:
    """nDCG@10 against seconds per query, one point per method, one panel per dataset."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, axes = _grid(plt, len(datasets))
    for ax, dataset in zip(axes, datasets):
        cells = [r for r in records if r["dataset"] == dataset]
        for r in cells:
            ndcg, seconds = r["measures"]["ndcg_cut_10"], r["cost"]["s_per_query"]
            if seconds is None:  # the given first stage: no query-time cost, drawn as a reference line
                ax.axhline(ndcg, color="grey", linestyle="--", linewidth=1)
                ax.annotate(
                    f"{r['method']} (no rerank cost)",
                    (0.02, ndcg),
                    xycoords=("axes fraction", "data"),
                    fontsize=8,
                    color="grey",
                    va="bottom",
                )
                continue
            method = r["method"]
            ax.scatter(
                seconds,
                ndcg,
                s=70,
                zorder=3,
                color=method_colour(method),
                marker=method_marker(method),
                edgecolor="white",
                linewidth=0.5,
                label=method,
            )
        queries = cells[0]["queries"] if cells else 0
        ax.set_xscale("log")
        if any(r["cost"]["s_per_query"] is not None for r in cells):
            ax.set_xlim(*decade_limits(*ax.get_xlim()))
        # plain numbers on the log axis, and no minor labels: they collide over a short range
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("seconds per query (log scale)")
        ax.set_ylabel("nDCG@10")
        ax.set_title(f"{dataset} ({queries} queries)")
        ax.grid(True, which="both", alpha=0.3)
    # one legend for all panels (a method keeps its colour and marker): labels beside the points
    # collide where methods cost and score alike
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    if handles:  # none when only the first stage was run: it is drawn as a line, not a point
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 8), fontsize=9)
    fig.suptitle("Quality against cost (rerank depth as in the table; CPU, 2 threads)")
    return _save(fig, plt, path, bottom=0.45 / fig.get_figheight())


def _zscores(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    spread = v.std()
    return (v - v.mean()) / spread if spread > 0 else v * 0.0


def position_profile(
    record: Mapping, qrels: Mapping[str, Mapping[str, int]], relevant_grade: int, unjudged_irrelevant: bool = False
):
    """Per prompt position: mean and standard error of the per-query z-scored score, relevant vs
    irrelevant (as :func:`headrank_ir.evaluation.selectivity.relevance_kind` sorts them)."""
    depth = max(len(q["positions"]) for q in record["scores"].values())
    groups: dict[str, list[list[float]]] = {
        "relevant": [[] for _ in range(depth)],
        "irrelevant": [[] for _ in range(depth)],
    }
    for qid, q in record["scores"].items():
        for docid, z, position in zip(q["docids"], _zscores(q["scores"]), q["positions"]):
            kind = relevance_kind(qrels.get(qid, {}).get(docid), relevant_grade, unjudged_irrelevant)
            if kind:
                groups[kind][position].append(float(z))
    return {
        kind: (
            np.array([np.mean(v) if v else np.nan for v in per]),
            np.array([np.std(v) / np.sqrt(len(v)) if len(v) > 1 else np.nan for v in per]),
        )
        for kind, per in groups.items()
    }


def homogenisation(panels: Sequence[tuple], path: Path) -> Path:
    """Calibrated score against prompt position; ``panels``: ``(title, record, qrels, dataset)``
    with the bench's ``Dataset`` (its relevance grades).

    The middle half of the context is shaded: a reranker that homogenises it draws the two
    curves together there.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = _grid(plt, len(panels))
    for ax, (title, record, qrels, dataset) in zip(axes, panels):
        grade, unjudged = dataset.relevant_grade, dataset.unjudged_irrelevant
        profile = position_profile(record, qrels, grade, unjudged)
        depth = len(profile["relevant"][0])
        x = np.arange(1, depth + 1)
        ax.axvspan(
            depth / 4 + 0.5,
            3 * depth / 4 + 0.5,
            color=MIDDLE_COLOUR,
            label="middle half",
        )
        for kind, colour in (("relevant", "tab:green"), ("irrelevant", "tab:red")):
            mean, error = profile[kind]
            irrelevant = "irrelevant (unjudged)" if unjudged else "irrelevant (grade 0)"
            label = f"relevant (grade ≥ {grade})" if kind == "relevant" else irrelevant
            ax.plot(x, mean, marker="o", markersize=3, color=colour, label=label)
            ax.fill_between(x, mean - error, mean + error, color=colour, alpha=0.2)
        ax.set_xlabel("position in the prompt\n(1 = shown first, farthest from the query)")
        ax.set_ylabel("calibrated score (z-scored per query)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Homogenisation: scores by position in the prompt (mean ± s.e.)")
    return _save(fig, plt, path)


def head_map(
    quality: Mapping[str, float],
    layers: int,
    heads: int,
    selected: Mapping[str, set[str]],
    title: str,
    path: Path,
) -> Path:
    """Per (layer, head) nDCG@10 as a heat map; each selection's heads marked with its own symbol."""
    plt = _pyplot()
    grid = np.full((layers, heads), np.nan)
    for label, value in quality.items():
        layer, head = parse_head_label(label)
        grid[layer, head] = value
    fig, ax = plt.subplots(figsize=(max(7.0, heads * 0.6 + 2), max(5.0, layers * 0.25 + 2)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", origin="lower")
    fig.colorbar(image, ax=ax, label="nDCG@10 of the head alone")
    styles = (("o", "red"), ("x", "white"), ("+", "orange"))
    for (name, labels), (marker, colour) in zip(selected.items(), styles):
        points = [parse_head_label(label) for label in labels]
        if points:
            ys, xs = zip(*points)
            # a hollow ring for the first selection, so that a second one shows inside it
            paint = {"facecolors": "none", "edgecolors": colour} if marker == "o" else {"c": colour}
            ax.scatter(
                xs,
                ys,
                marker=marker,
                s=70,
                linewidths=1.8,
                label=f"{name} ({len(points)} heads)",
                **paint,
            )
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(heads))
    ax.set_yticks(range(0, layers, 2 if layers > 12 else 1))
    ax.set_title(title, fontsize=10)
    if selected:
        # grey behind the legend, so that white markers show there as on the map
        fig.legend(loc="lower center", ncol=len(selected), fontsize=9, facecolor="0.75", framealpha=1)
    return _save(fig, plt, path, bottom=0.06 if selected else 0.0)


def per_query_differences(tested: Sequence, baseline: str, path: Path) -> Path:
    """One panel per run and measure of ``evaluate --compare`` (``significance.Tested``): each
    query's difference from the baseline, sorted, as bars (above zero: the run wins), with the
    wins/losses/ties and the adjusted randomisation p-value in the title."""
    plt = _pyplot()
    fig, axes = _grid(plt, max(len(tested), 1), width=5.5, height=3.6)
    for ax, t in zip(axes, tested):
        differences = sorted(t.differences.values(), reverse=True)
        x = np.arange(1, len(differences) + 1)
        colours = ["tab:green" if d > 0 else "tab:red" if d < 0 else "grey" for d in differences]
        ax.bar(x, differences, width=1.0, color=colours, linewidth=0)
        ax.axhline(0, color="black", linewidth=0.8)
        c = t.comparison
        ax.set_title(
            f"{t.run}: {t.measure} {c.mean_difference:+.4f}\n"
            f"{c.wins}/{c.losses}/{c.ties} win/loss/tie, adjusted p(rand) {t.p_randomisation_adjusted:.3g}",
            fontsize=9,
        )
        ax.set_xlabel("queries, by difference")
        ax.set_ylabel(f"{t.measure} minus {baseline}", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    if not tested:
        axes[0].text(0.5, 0.5, "no measure tested", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle(f"Per-query differences against {baseline}")
    return _save(fig, plt, path)


def _save(fig, plt, path: Path, bottom: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    top = 1 - 0.45 / fig.get_figheight()  # room for the suptitle, in inches whatever the figure's size
    fig.tight_layout(rect=(0, bottom, 1, top))  # ``bottom`` keeps room for a figure legend
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def best_available(records: Mapping[str, Mapping], preference: Sequence[str]) -> str | None:
    """The first method of ``preference`` that has a record."""
    return next((m for m in preference if m in records), None)
