"""Windows and batches by hand: right padding, the batch budget and fill bounds at equality, and
merging three windows (issue 28: the engine's small arithmetic, pinned at its boundaries)."""

from __future__ import annotations

import torch

# Name other engineers may move (engine split): imported here only.
from headrank_ir.engine.windows import batch_groups, merge_windows, plan_windows, right_padded


def test_rows_are_padded_at_their_end_with_zeros():
    ids = right_padded([[5, 6], [7, 8, 9], [4]])
    assert ids.dtype == torch.long
    assert ids.tolist() == [[5, 6, 0], [7, 8, 9], [4, 0, 0]]


def test_a_batch_that_fills_the_budget_exactly_is_one_group():
    # longest first: 40, 40, 30; three rows padded to 40 are 120 tokens
    assert batch_groups([30, 40, 40], budget=120) == [[1, 2, 0]]
    assert batch_groups([30, 40, 40], budget=119) == [[1, 2], [0]]


def test_a_row_at_exactly_the_fill_fraction_joins_and_one_token_less_does_not():
    assert batch_groups([100, 75], budget=10_000) == [[0, 1]]  # 75 is 0.75 of 100: joins
    assert batch_groups([100, 74], budget=10_000) == [[0], [1]]
    assert batch_groups([100, 50], budget=10_000, fill=0.5) == [[0, 1]]
    assert batch_groups([100, 49], budget=10_000, fill=0.5) == [[0], [1]]


def test_a_new_group_is_measured_by_its_own_longest_row():
    # 100 and 80 share a group; 60 is too short for it and starts one of its own that 50 joins
    # (50 >= 0.75 * 60); the budget 200 holds 2 × 100 and 2 × 60 padded tokens
    assert batch_groups([60, 100, 50, 80], budget=200) == [[1, 3], [0, 2]]


def test_no_rows_make_no_groups():
    assert batch_groups([], budget=100) == []


def test_windows_start_fresh_after_a_split():
    # costs (length + 8): 12, 12, 12, 12 against a budget of 30: two per window, the count restarting
    assert plan_windows([4, 4, 4, 4], overhead=10, context_tokens=40) == [[0, 1], [2, 3]]
    assert plan_windows([], overhead=10, context_tokens=40) == [[]]
    # costs 12, 20, 10: after the split, 20 + 10 fill the 30 exactly, so the new window counts from 0
    assert plan_windows([4, 12, 2], overhead=10, context_tokens=40) == [[0], [1, 2]]


def test_three_windows_each_sit_below_the_lowest_score_so_far():
    windows = [[0, 1], [2, 3], [4]]
    scores = [[2.0, 5.0], [10.0, 4.0], [-3.0]]
    # window 2: shifted by 2 - 10 - 1 = -9 -> 1, -5; window 3: below -5: -5 - (-3) - 1 = -3 -> -6
    assert merge_windows(windows, scores, 5) == [2.0, 5.0, 1.0, -5.0, -6.0]


def test_merging_fills_only_the_listed_positions():
    assert merge_windows([[1], [3]], [[2.0], [7.0]], 4) == [0.0, 2.0, 0.0, 1.0]  # 2 - 7 - 1 = -6 below the first
