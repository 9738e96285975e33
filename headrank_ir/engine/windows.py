"""Windows and batches: which passages share a prompt, and which prompts share a forward.

Passages that do not fit one context are split, in first-stage order, into consecutive windows
(``plan_windows``), each read in its own prompt and merged so that a later window never
outranks an earlier one (``merge_windows``). Prompts of similar length share right-padded
forwards (``batch_groups``, ``right_padded``).
"""

from __future__ import annotations

from typing import List, Sequence

import torch


def right_padded(sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """``(rows, longest)`` token ids on the host, each row padded at its end (with id 0: causal
    passes never let a real token see what comes after it)."""
    ids = torch.zeros(len(sequences), max(len(s) for s in sequences), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.as_tensor(sequence)
    return ids


def batch_groups(lengths: Sequence[int], budget: int, fill: float = 0.75) -> List[List[int]]:
    """Indices of ``lengths`` grouped for shared forwards, longest first: a row joins the current
    group while the padded batch (rows × longest) stays within ``budget`` tokens and the row is at
    least ``fill`` of the longest (padding costs compute); a row longer than ``budget`` runs alone."""
    groups: List[List[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        longest = lengths[groups[-1][0]] if groups else 0
        if groups and (len(groups[-1]) + 1) * longest <= budget and lengths[i] >= fill * longest:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


PASSAGE_MARGIN = 8  # label "[n] ", newline and tokenizer merges at the edges


def plan_windows(lengths: Sequence[int], overhead: int, context_tokens: int) -> List[List[int]]:
    """Split passages (their token counts), in input order, into consecutive windows that fit a
    ``context_tokens`` context beside ``overhead`` tokens of prompt."""
    budget = context_tokens - overhead
    windows: List[List[int]] = [[]]
    used = 0
    for i, length in enumerate(lengths):
        cost = length + PASSAGE_MARGIN
        if cost > budget:
            raise ValueError(
                f"passage {i} needs {cost} tokens next to a {overhead}-token prompt, but the context holds "
                f"{context_tokens}; lower max_passage_tokens or shorten the query"
            )
        if used + cost > budget:
            windows.append([])
            used = 0
        windows[-1].append(i)
        used += cost
    return windows


def merge_windows(windows: List[List[int]], scores: List[List[float]], count: int) -> List[float]:
    """Merge per-window scores into one list that ranks window by window.

    Scores from different prompts are not comparable, so a later window never outranks an
    earlier one (windows follow the first-stage order): each later window's scores are shifted
    to sit just below the lowest score so far, keeping their differences within the window.
    """
    merged = [0.0] * count
    floor = None
    for window, window_scores in zip(windows, scores):
        shift = 0.0 if floor is None else floor - max(window_scores) - 1.0
        for i, s in zip(window, window_scores):
            merged[i] = s + shift
        floor = min(merged[i] for i in window)
    return merged
