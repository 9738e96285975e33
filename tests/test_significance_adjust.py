"""Adjusted p-values worked out by hand (Holm, Bonferroni, Benjamini-Hochberg) and ``compare_runs``
plumbing each run's measures to the baseline's (issue 28: neither was reached by a fast test)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

# Name other engineers may move: imported here only.
from headrank_ir.evaluation.significance import adjust, compare_runs

RAW = [0.01, 0.04, 0.03]


@pytest.mark.parametrize(
    "method, expected",
    [
        # Holm: sorted 0.01, 0.03, 0.04 times 3, 2, 1, then the running maximum
        ("holm", [0.03, 0.06, 0.06]),
        ("bonferroni", [0.03, 0.12, 0.09]),
        # BH: sorted times 3/1, 3/2, 3/3 = 0.03, 0.045, 0.04, then the running minimum from the end
        ("fdr_bh", [0.03, 0.04, 0.04]),
        ("none", RAW),
    ],
)
def test_adjusted_p_values_by_hand(method, expected):
    assert adjust(RAW, method) == pytest.approx(expected, abs=1e-12)


def test_holm_is_the_default_and_p_values_cap_at_one():
    assert adjust(RAW) == pytest.approx([0.03, 0.06, 0.06], abs=1e-12)
    assert adjust([0.6, 0.7], "bonferroni") == [1.0, 1.0]


def test_a_nan_stays_nan_and_is_not_counted_in_the_family():
    adjusted = adjust([0.01, math.nan, 0.04], "bonferroni")
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.08)
    assert math.isnan(adjusted[1])
    alone = adjust([math.nan, 0.01], "bonferroni")  # one finite p-value: nothing to adjust for
    assert math.isnan(alone[0]) and alone[1] == 0.01


def test_an_unknown_correction_is_refused():
    with pytest.raises(ValueError, match="unknown correction 'sidak'; choose one of holm, bonferroni, fdr_bh, none"):
        adjust(RAW, "sidak")


def sign_flip_p(differences) -> float:
    d = np.asarray(differences)
    means = [abs((np.array(s) * d).mean()) for s in itertools.product([1, -1], repeat=len(d))]
    return sum(m >= abs(d.mean()) - 1e-12 for m in means) / len(means)


BASELINE = {
    "ndcg": {"q1": 0.5, "q2": 0.25, "q3": 0.75, "q4": 0.5, "q5": 0.0},
    "map": {"q1": 0.25, "q2": 0.5, "q3": 0.5, "q4": 0.0, "q5": 0.25},
}
RUN = {
    "ndcg": {"q1": 0.75, "q2": 0.5, "q3": 0.75, "q4": 0.625, "q5": 0.5, "q9": 1.0},  # q9: the run's only
    "map": {"q1": 0.5, "q2": 0.25, "q3": 0.625, "q4": 0.5, "q5": 0.25},
}


def test_each_measure_is_tested_against_the_baseline_and_adjusted_together():
    tested = compare_runs({"mine": RUN}, BASELINE, resamples=10000, correction="bonferroni")
    assert [(t.run, t.measure) for t in tested] == [("mine", "ndcg"), ("mine", "map")]
    qids = ["q1", "q2", "q3", "q4", "q5"]
    for t in tested:
        run, base = RUN[t.measure], BASELINE[t.measure]
        assert t.mean == pytest.approx(sum(run.values()) / len(run))  # over all of the run's queries
        assert t.differences == pytest.approx({q: run[q] - base[q] for q in qids})
        x, y = [run[q] for q in qids], [base[q] for q in qids]
        p_t, p_rand = stats.ttest_rel(x, y).pvalue, sign_flip_p(np.subtract(x, y))
        assert (t.comparison.p_ttest, t.comparison.p_randomisation) == pytest.approx((p_t, p_rand), rel=1e-9)
        assert t.p_ttest_adjusted == pytest.approx(min(1.0, 2 * p_t), rel=1e-9)
        assert t.p_randomisation_adjusted == pytest.approx(min(1.0, 2 * p_rand), rel=1e-9)


def test_compare_runs_adjusts_by_holm_unless_told():
    tested = compare_runs({"mine": RUN}, BASELINE)
    low, high = sorted(t.comparison.p_ttest for t in tested)
    holm = [min(1.0, 2 * low), max(min(1.0, 2 * low), high)]  # the smaller times 2, then the running maximum
    assert sorted(t.p_ttest_adjusted for t in tested) == pytest.approx(holm, rel=1e-12)
    assert holm != [min(1.0, 2 * low), min(1.0, 2 * high)]  # not Bonferroni's


@pytest.mark.parametrize("resamples", [99, None], ids=["given", "default-10000"])
def test_the_resample_count_reaches_the_randomisation_test(resamples):
    rng = np.random.default_rng(3)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(size=20))}
    run = {q: v + float(rng.normal(0.05, 0.1)) for q, v in base.items()}
    given = {} if resamples is None else {"resamples": resamples}
    (tested,) = compare_runs({"r": {"m": run}}, {"m": base}, correction="none", **given)
    x, y = np.array([run[q] for q in sorted(base)]), np.array([base[q] for q in sorted(base)])
    expected = stats.permutation_test(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        n_resamples=resamples or 10000,
        alternative="two-sided",
        random_state=0,
        vectorized=True,
    ).pvalue
    assert tested.comparison.p_randomisation == expected == tested.p_randomisation_adjusted
