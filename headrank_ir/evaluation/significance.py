"""Paired significance over queries: a randomisation (sign-flip permutation) test and a t-test,
with the wins, losses and ties that a table of them usually shows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

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
    p_t = float(t.pvalue) if not math.isnan(t.pvalue) else 1.0  # nan when every difference is equal
    return Comparison(len(qids), float(difference.mean()), float(randomised.pvalue), p_t, **counts)
