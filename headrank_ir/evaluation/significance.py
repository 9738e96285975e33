"""Paired significance over queries: a randomisation (sign-flip permutation) test and a t-test,
with the wins, losses and ties that a table of them usually shows; p-values of several tests
adjusted together by statsmodels' ``multipletests`` (Holm by default)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on the queries both were measured on."""

    queries: int
    mean_difference: float  # mean of a - b
    p_randomisation: float  # two-sided, paired (each query's difference flips sign at random)
    p_ttest: float  # two-sided paired t-test
    wins: int = 0  # queries where a is higher than b (by more than TIE)
    losses: int = 0  # queries where a is lower
    ties: int = 0  # queries where they differ by at most TIE


TIE = 1e-9  # float noise in a measure, not a difference between systems


def compare(
    a: Mapping[str, float],
    b: Mapping[str, float],
    resamples: int = 10000,
    seed: int = 0,
) -> Comparison:
    """Compare per-query scores ``a`` and ``b`` (``{qid: value}``) on their common queries."""
    from scipy import stats

    qids = sorted(set(a) & set(b))
    if not qids:
        raise ValueError("the two sets of per-query scores share no query id")
    x = np.array([a[q] for q in qids], dtype=float)
    y = np.array([b[q] for q in qids], dtype=float)
    for name, values in (("first", x), ("second", y)):
        if not np.isfinite(values).all():
            qid = qids[int(np.argmin(np.isfinite(values)))]
            raise ValueError(
                f"the {name} set of per-query scores is not finite at query {qid}: {values[qids.index(qid)]}"
            )
    difference = x - y
    counts = {"wins": int((difference > TIE).sum()), "losses": int((difference < -TIE).sum())}
    counts["ties"] = len(qids) - counts["wins"] - counts["losses"]
    if not difference.any():  # identical systems: both tests are undefined, nothing differs
        return Comparison(len(qids), 0.0, 1.0, 1.0, **counts)
    if len(qids) < 2:  # no spread to test against
        return Comparison(len(qids), float(difference.mean()), math.nan, math.nan, **counts)
    randomised = stats.permutation_test(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
        random_state=seed,
        vectorized=True,
    )
    t = stats.ttest_rel(x, y)
    return Comparison(len(qids), float(difference.mean()), float(randomised.pvalue), float(t.pvalue), **counts)


# statsmodels' multipletests methods offered by ``evaluate --correction``: Holm (family-wise
# error, any dependence between the tests: measures on the same queries are correlated),
# Bonferroni, Benjamini-Hochberg (false discovery rate); "none" leaves the p-values as they are.
CORRECTIONS = ("holm", "bonferroni", "fdr_bh", "none")


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """``pvalues`` adjusted for being tested together (statsmodels' ``multipletests``); a NaN (a
    test on one query) stays NaN and is not counted in the family."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    finite = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    adjusted = [float(p) for p in pvalues]
    if method == "none" or len(finite) < 2:
        return adjusted
    from statsmodels.stats.multitest import multipletests

    corrected = multipletests([pvalues[i] for i in finite], method=method)[1]
    for i, p in zip(finite, corrected):
        adjusted[i] = float(p)
    return adjusted


@dataclass(frozen=True)
class Tested:
    """One run against the baseline on one measure: the test, its adjusted p-values and each
    query's difference (run minus baseline)."""

    run: str
    measure: str
    mean: float  # the run's mean over the compared queries
    comparison: Comparison
    p_randomisation_adjusted: float
    p_ttest_adjusted: float
    differences: Mapping[str, float] = field(default_factory=dict)


def compare_runs(
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    baseline: Mapping[str, Mapping[str, float]],
    resamples: int = 10000,
    correction: str = "holm",
) -> list[Tested]:
    """Each run (``{label: {measure: {qid: value}}}``) against ``baseline`` (``{measure: {qid:
    value}}``) on each of its measures; both p-value columns adjusted over all these tests."""
    pairs = [(label, measure, by_qid) for label, values in runs.items() for measure, by_qid in values.items()]
    comparisons = [compare(by_qid, baseline[measure], resamples=resamples) for _, measure, by_qid in pairs]
    randomisation = adjust([c.p_randomisation for c in comparisons], correction)
    ttest = adjust([c.p_ttest for c in comparisons], correction)
    return [
        Tested(
            label,
            measure,
            sum(by_qid.values()) / len(by_qid),
            c,
            p_rand,
            p_t,
            {q: by_qid[q] - baseline[measure][q] for q in sorted(set(by_qid) & set(baseline[measure]))},
        )
        for (label, measure, by_qid), c, p_rand, p_t in zip(pairs, comparisons, randomisation, ttest)
    ]
