"""Paired significance on a baseline that varies by query: the t-test is ``scipy.stats.ttest_rel``
on the pairs, the randomisation test is the exact sign-flip test enumerated by hand (issue 28:
with a constant baseline, a shuffled pairing went unnoticed)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

# Name other engineers may move (significance into an evaluation module): imported here only.
from headrank_ir.evaluation.significance import Comparison, compare

# per-query scores: b varies widely, a is b plus a small, nearly constant gain
B = {"q1": 0.10, "q2": 0.90, "q3": 0.40, "q4": 0.70, "q5": 0.20}
GAIN = {"q1": 0.25, "q2": 0.125, "q3": 0.25, "q4": -0.125, "q5": 0.375}  # exact in binary
A = {q: B[q] + GAIN[q] for q in B}


def exact_sign_flip_p(differences) -> float:
    """Two-sided p of the mean difference over all 2**n sign patterns."""
    d = np.asarray(differences)
    seen = abs(d.mean())
    means = [abs((np.array(signs) * d).mean()) for signs in itertools.product([1, -1], repeat=len(d))]
    return sum(m >= seen - 1e-12 for m in means) / len(means)


def test_ttest_is_paired_by_query_on_a_varying_baseline():
    qids = sorted(B)
    x, y = [A[q] for q in qids], [B[q] for q in qids]
    paired = stats.ttest_rel(x, y).pvalue
    unpaired = stats.ttest_ind(x, y).pvalue
    assert paired < 0.2 < unpaired  # the pairing is what makes the gain visible
    result = compare(A, B)
    assert result.p_ttest == pytest.approx(paired, rel=1e-9)
    assert result.mean_difference == pytest.approx(np.mean([GAIN[q] for q in qids]), abs=1e-12)
    assert (result.queries, result.wins, result.losses, result.ties) == (5, 4, 1, 0)


def test_randomisation_is_the_exact_sign_flip_test_when_resamples_cover_every_pattern():
    qids = sorted(B)
    expected = exact_sign_flip_p([A[q] - B[q] for q in qids])
    # |differences| sum to 1.125 and the seen sum is 0.875: a pattern reaches it when the |d| it
    # makes negative sum to at most 0.125 (none, or one of the two 0.125s), or mirrored: 6 of 32
    assert expected == pytest.approx(6 / 32)
    assert compare(A, B, resamples=10000).p_randomisation == pytest.approx(expected, abs=1e-12)


def test_pairing_follows_query_ids_not_dict_order():
    reordered = {q: A[q] for q in reversed(sorted(A))}
    assert compare(reordered, B).p_ttest == pytest.approx(compare(A, B).p_ttest, rel=1e-12)
    extra = {**B, "q9": 5.0}  # a query only one side holds is left out
    assert compare(A, extra).queries == 5 and compare(A, extra).p_ttest == pytest.approx(compare(A, B).p_ttest)


def test_identical_systems_differ_nowhere():
    scores = {"q1": 0.5, "q2": 0.75, "q3": 0.25}
    assert compare(scores, dict(scores)) == Comparison(3, 0.0, 1.0, 1.0, wins=0, losses=0, ties=3)


def test_one_shared_query_has_a_difference_but_no_test():
    result = compare({"q1": 0.75, "q2": 0.5}, {"q1": 0.5, "q3": 0.0})
    assert (result.queries, result.mean_difference, result.wins) == (1, 0.25, 1)
    assert math.isnan(result.p_randomisation) and math.isnan(result.p_ttest)


def test_two_shared_queries_are_enough_for_both_tests():
    result = compare({"q1": 0.5, "q2": 0.75}, {"q1": 0.25, "q2": 0.25})
    assert result.p_randomisation == pytest.approx(2 / 4)  # of the 4 sign patterns, +/+ and -/- reach 0.375
    assert result.p_ttest == pytest.approx(stats.ttest_rel([0.5, 0.75], [0.25, 0.25]).pvalue, rel=1e-12)


def test_every_difference_equal_gives_t_p_one_and_the_exact_sign_flip_p():
    b = {"q1": 0.0, "q2": 0.5, "q3": 0.25}
    result = compare({q: v + 0.25 for q, v in b.items()}, b)
    # no spread in the differences: scipy's t is infinite and its p 0 (not nan, so the code's nan-to-1
    # branch is not reached here); compare gives scipy's value
    assert result.p_ttest == stats.ttest_rel([0.25, 0.75, 0.5], [0.0, 0.5, 0.25]).pvalue
    assert result.p_randomisation == pytest.approx(2 / 8)  # only all-plus and all-minus reach 0.25


def test_differences_within_tie_count_as_ties():
    a = {"q1": 1e-9, "q2": -1e-9, "q3": 0.0, "q4": 1.0, "q5": 0.0}
    b = {"q1": 0.0, "q2": 0.0, "q3": 0.0, "q4": 0.0, "q5": 1.0}
    result = compare(a, b)
    assert (result.wins, result.losses, result.ties) == (1, 1, 3)


def test_no_shared_query_is_refused():
    with pytest.raises(ValueError, match="^the two sets of per-query scores share no query id$"):
        compare({"q1": 1.0}, {"q2": 1.0})


@pytest.mark.parametrize(
    "hits, misses",
    [
        ([True, True, False, True], [False, True, False, False]),  # e.g. success@10 per query
        ([Fraction(1), Fraction(1), Fraction(0), Fraction(1)], [0.0, 1.0, 0.0, 0.0]),  # exact measures
        ([1.0, 1.0, 0.0, 1.0], [Fraction(0), Fraction(1), Fraction(0), Fraction(0)]),
    ],
    ids=["booleans", "fractions-a", "fractions-b"],
)
def test_values_of_any_real_type_compare_as_floats(hits, misses):
    qids = ["q1", "q2", "q3", "q4"]
    result = compare(dict(zip(qids, hits)), dict(zip(qids, misses)))
    assert (result.mean_difference, result.wins, result.ties) == (0.5, 2, 2)
    assert result.p_ttest == pytest.approx(stats.ttest_rel([1, 1, 0, 1], [0, 1, 0, 0]).pvalue, rel=1e-12)
    assert result.p_randomisation == pytest.approx(exact_sign_flip_p([1, 0, 0, 1]))


def test_randomisation_defaults_are_10000_resamples_seed_0():
    rng = np.random.default_rng(7)
    b = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(size=20))}  # 2**20 patterns: sampled
    a = {q: v + float(rng.normal(0.05, 0.1)) for q, v in b.items()}
    x, y = np.array([a[q] for q in sorted(b)]), np.array([b[q] for q in sorted(b)])
    expected = stats.permutation_test(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        n_resamples=10000,
        alternative="two-sided",
        random_state=0,
        vectorized=True,
    ).pvalue
    assert 0.0 < expected < 1.0
    assert compare(a, b).p_randomisation == expected
