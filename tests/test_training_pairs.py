"""Preference pairs: exactly the adjacent grade levels, hard and middle-of-context ones first."""

from __future__ import annotations

from headrank_ir.train.pairs import adjacent_pairs, choose_pairs

GRADES = [3, 2, 0, None, 1, 2, 0, 3]


def test_only_pairs_one_grade_apart():
    pairs = adjacent_pairs(GRADES)
    expected = {(0, 1), (0, 5), (7, 1), (7, 5), (1, 4), (5, 4), (4, 2), (4, 6)}
    assert set(pairs) == expected and len(pairs) == len(expected)
    assert all(GRADES[i] - GRADES[j] == 1 for i, j in pairs)  # never 3>1, 3>0, 2>0, nor unjudged


def test_hard_pairs_then_middle_pairs_then_small_margins():
    grades = [1, 0, 0, 1, 0, 1]
    scores = [
        2.0,
        1.0,
        0.9,
        -1.0,
        0.0,
        0.4,
    ]  # 3 and 5 are misordered or close against some 0s
    middle = {2, 3}
    chosen = choose_pairs(grades, scores, middle, max_pairs=9, hard_margin=0.5)
    assert len(chosen) == 9  # all 3 × 3 pairs when the cap allows
    hard = [(p.better, p.worse) for p in chosen if p.hard]
    assert hard == [
        (3, 2),
        (3, 1),
        (3, 4),
        (5, 2),
        (5, 1),
        (5, 4),
    ]  # more middle passages first, then margin
    assert all(p.hard for p in chosen[:6]) and not any(p.hard for p in chosen[6:])
    assert [(p.better, p.worse) for p in choose_pairs(grades, scores, middle, max_pairs=2, hard_margin=0.5)] == [
        (3, 2),
        (3, 1),
    ]


def test_no_pairs_without_adjacent_levels():
    assert adjacent_pairs([3, 0, None, 3]) == []
    assert choose_pairs([3, 0], [0.0, 1.0], set(), max_pairs=4, hard_margin=0.5) == []
