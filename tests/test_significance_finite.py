"""``compare`` refuses a per-query value that is not a finite number (a NaN would otherwise
turn the t-test's p-value into NaN, which used to be reported as 1.0), and a constant non-zero
difference is a certain one for the t-test (p = 0, as scipy gives it)."""

from __future__ import annotations

import math

import pytest

from headrank_ir.evaluation.significance import compare


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("side", ["first", "second"])
def test_a_value_that_is_not_finite_is_refused_naming_its_query(bad, side):
    good = {"q1": 0.5, "q2": 0.25, "q3": 0.75}
    broken = {**good, "q2": bad}
    a, b = (broken, good) if side == "first" else (good, broken)
    with pytest.raises(ValueError, match=rf"^the {side} set of per-query scores is not finite at query q2: {bad}$"):
        compare(a, b, resamples=100)


def test_the_same_gain_on_every_query_is_certain_for_the_t_test():
    a = {"q1": 0.5, "q2": 0.25, "q3": 0.75}
    result = compare(a, {q: v - 0.125 for q, v in a.items()}, resamples=100)
    assert (result.mean_difference, result.p_ttest, result.wins) == (0.125, 0.0, 3)
