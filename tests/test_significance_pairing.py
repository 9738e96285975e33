"""Paired significance on a baseline that varies by query: the t-test is ``scipy.stats.ttest_rel``
on the pairs, the randomisation test is the exact sign-flip test enumerated by hand (issue 28:
with a constant baseline, a shuffled pairing went unnoticed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

# Name other engineers may move (significance into an evaluation module): imported here only.
from headrank_ir.bench.significance import compare

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
