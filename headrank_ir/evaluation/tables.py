"""The tables the commands print: measures by run, trec_eval ``-q`` lines, a reranked run's gain
over its first stage, and runs tested against a baseline query by query."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from headrank_ir.evaluation.measures import Qrels, mean_measures, read_run_scores, scores_of
from headrank_ir.evaluation.significance import Tested
from headrank_ir.records import Request, in_given_order

PerQuery = Mapping[str, Mapping[str, float]]  # {measure: {qid: value}}


def format_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """Measures down, runs across, four decimals."""
    names = list(next(iter(columns.values())))
    width = max(len("measure"), *(len(n) for n in names))
    lines = ["measure".ljust(width) + "".join(f"  {title:>10}" for title in columns)]
    for name in names:
        lines.append(name.ljust(width) + "".join(f"  {column[name]:>10.4f}" for column in columns.values()))
    return "\n".join(lines)


def format_per_query(values: Mapping[str, Mapping[str, float]]) -> str:
    """trec_eval ``-q`` style: ``measure<TAB>qid<TAB>value`` per query, then the ``all`` line."""
    lines = []
    for name, by_qid in values.items():
        ordered = sorted(by_qid, key=lambda q: (not q.isdigit(), int(q) if q.isdigit() else 0, q))
        lines += [f"{name}\t{qid}\t{by_qid[qid]:.4f}" for qid in ordered]
        lines.append(f"{name}\tall\t{sum(by_qid.values()) / len(by_qid):.4f}")
    return "\n".join(lines)


def gain_table(requests: Sequence[Request], run_path: str, run_format: str | None, qrels: Qrels) -> str:
    """The first stage and the reranked run written to ``run_path``, and the gain, on the judged
    queries that were reranked, so a --max-queries trial is fair."""
    judged = {r.query.qid: qrels[r.query.qid] for r in requests if r.query.qid in qrels}
    columns = {
        "first stage": mean_measures(scores_of(map(in_given_order, requests)), judged),
        "reranked": mean_measures(read_run_scores(run_path, run_format), judged),
    }
    columns["gain"] = {m: columns["reranked"][m] - columns["first stage"][m] for m in columns["reranked"]}
    return f"{len(judged)} judged queries of {len(requests)}\n" + format_table(columns)


def comparison_table(tested: Sequence[Tested]) -> str:
    """One row per run and measure tested: its mean, the baseline's, the mean difference, both
    p-values as computed and as adjusted for the whole table, and wins/losses/ties."""
    header = ["run", "measure", "mean", "baseline", "diff", "p(rand)", "p(t)", "adj(rand)", "adj(t)", "win/loss/tie"]
    rows = []
    for t in tested:
        c = t.comparison
        rows.append(
            [t.run, t.measure, f"{t.mean:.4f}", f"{t.mean - c.mean_difference:.4f}", f"{c.mean_difference:+.4f}"]
            + [_p(c.p_randomisation), _p(c.p_ttest), _p(t.p_randomisation_adjusted), _p(t.p_ttest_adjusted)]
            + [f"{c.wins}/{c.losses}/{c.ties}"]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    )


def _p(value: float) -> str:
    return "n/a" if value != value else f"{value:.4f}" if not value < 1e-4 else f"{value:.1e}"
