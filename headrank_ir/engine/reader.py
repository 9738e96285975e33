"""``HeadReader``: the engine core under ``HeadRanker`` — plan, read, calibrate, merge.

Per window of passages (see ``plan_windows``) the reader reads one prompt in a truncated
forward and, for calibration, ICR's content-free query over the prefix (instructions and
passages) the two prompts share, never recomputed: the calibration query costs its own tokens.
A passage's score for one head is the attention its tokens receive, summed over the passage
and averaged over the query tokens, minus the same with the content-free query; the profile's
weights combine the heads.

Windows of several queries share forwards (``batch_groups``): right-padded rows of similar
length in one causal pass, so padding never reaches a real token. Each row's calibration query
(its tokens after the shared prefix, a "tail") follows in the columns after the group's widest
prompt, under a mask that shows it its own prefix and itself only, at the positions it would
have alone: in a second pass over the first pass's cache, or folded into the same forward
(``fold_calibration``, by device type: ``FOLD_CALIBRATION``).

The reader takes a model, a tokenizer and a profile (never the ranker), so the engine's
verbs, training (scores with gradients) and the benchmarks read through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from headrank_ir.engine.attention import Recorders, RowRecorder, TruncatedModel, attention_window, head_selection
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.prompt import PromptLayout, PromptPieces, build_layouts, passage_pieces, prompt_positions
from headrank_ir.engine.transfer import download, upload
from headrank_ir.engine.windows import batch_groups, merge_windows, plan_windows, right_padded
from headrank_ir.records import Invocation


@dataclass(frozen=True)
class Reading:
    """What the engine read for one query: the windows (passage indices, first-stage order) and
    each window's calibrated ``(heads, passages)`` scores."""

    windows: List[List[int]]
    head_scores: List[torch.Tensor]


@dataclass(frozen=True)
class Job:
    """One window of one query: its prompt and the calibration prompt (None when calibration is
    off) that shares its first ``prefix`` tokens, every passage among them."""

    real: PromptLayout
    blank: Optional[PromptLayout]
    prefix: int


Plan = Tuple[List[List[int]], List[Job]]  # a query's windows and one job per window

# Padded tokens per forward (rows × longest row) by device type. On the CPU a forward costs its
# tokens whatever the batch, so the budget only bounds memory: a window of a 100-passage query
# (~8k tokens) runs alone, and peak RSS stays that of batch 1; a GPU gains from wide batches.
BATCH_TOKENS = {"cpu": 8192, "cuda": 65536}

# Whether a group's calibration tails ride in its one forward (folded) or follow it in a second
# pass over its cache, by device type. On the CPU a forward costs its tokens and the second pass
# is a few tokens a row: folding measured within the load's noise of it, no steady gain (folded/
# two-pass 0.86 to 0.99 at batch 1, 1.07 to 1.14 and 8% more peak RSS at batch 4; smollm2-135m,
# runs/bench_calibration_cpu*.json), so the CPU keeps two passes. On a GPU the second pass is
# launch-bound (a dozen small kernels a layer for a few tokens) and its masked SDPA repeats the
# cached K/V per query head while the cache grows by concatenation, every layer; folded, that is
# one small SDPA and one concatenation a layer, the prompts keeping the flash kernel. Chosen by
# that analysis, not yet measured: tools/bench_calibration.py --device cuda.
FOLD_CALIBRATION = {"cpu": False, "cuda": True}


def context_tokens(profile: HeadProfile, config) -> int:
    """The tokens one prompt may hold: the profile's ``max_context_tokens``, else the model's
    positions, and never more than the sliding window of the layers read (``attention_window``):
    within it the window masks nothing, so every query token sees the whole prompt, as the head
    scores assume (the calibration tails' own masks know no window)."""
    limit = profile.prompt.max_context_tokens or config.max_position_embeddings
    window = attention_window(config, profile.depth)
    return limit if window is None else min(limit, window)


class PromptPlanner:
    """The host side of reading: each query's passages tokenised once, the windows that fit
    (``plan_windows``) and every window's prompts joined from those tokens. No model: ``HeadReader``
    plans with it, and ``checks.preflight`` runs it over every query so that a prompt that cannot
    fit the context stops a run before its output is touched."""

    def __init__(self, tokenizer, profile: HeadProfile, context_tokens: int):
        self.tokenizer = tokenizer
        self.profile = profile
        self.context_tokens = context_tokens
        self._pieces = PromptPieces(tokenizer, profile.prompt)

    def plan(self, query: str, passages: Sequence[str]) -> Plan:
        """Each passage tokenised once, the windows that fit (``plan_windows``) and every
        window's prompts joined from those tokens."""
        texts, pieces = passage_pieces(self.tokenizer, passages, self.profile.prompt.max_passage_tokens)
        lengths = [p.length for p in pieces]
        windows = [w for w in plan_windows(lengths, self.prompt_overhead(query), self.context_tokens) if w]
        return windows, self.jobs(query, texts, pieces, windows)

    def prompt_overhead(self, query: str) -> int:
        """Tokens of the prompt around the passages: the longer of the query's and the
        calibration query's prompts over no passage."""
        prompt = self.profile.prompt
        empty = build_layouts(self.tokenizer, [query, prompt.calibration_query], [], prompt)
        return max(len(layout.input_ids) for layout in empty)

    def jobs(self, query: str, texts, pieces, windows) -> List[Job]:
        jobs = []
        for real, *blank in self._pieces.layouts(query, texts, pieces, windows):
            self._check_fits(real)
            jobs.append(Job(real, blank[0], shared_prefix(real, blank[0])) if blank else Job(real, None, 0))
        return jobs

    def _check_fits(self, layout: PromptLayout) -> None:
        if len(layout.input_ids) > self.context_tokens:
            raise ValueError(
                f"the prompt needs {len(layout.input_ids)} tokens but the context holds {self.context_tokens}"
            )


class HeadReader:
    """Reads a profile's heads from a model truncated at the profile's deepest layer.

    ``profile`` must fit the model (``check_profile``); its adapter, if any, is already merged.
    """

    def __init__(
        self,
        model,
        tokenizer,
        profile: HeadProfile,
        batch_tokens: Optional[int] = None,
        fold_calibration: Optional[bool] = None,
    ):
        config = model.config.get_text_config()
        self.model = model
        self.tokenizer = tokenizer
        self.profile = profile
        self.truncated = TruncatedModel(model, profile.depth)
        self.planner = PromptPlanner(tokenizer, profile, context_tokens(profile, self.truncated.config))
        layers = profile.heads_by_layer()
        self.heads = {layer: heads for layer, heads, _ in layers}
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self.selections = {
            layer: head_selection(heads, config.num_attention_heads, kv_heads, self.device)
            for layer, heads in self.heads.items()
        }
        self._host_weights = torch.tensor([w for _, _, weights in layers for w in weights])
        self.weights = self._host_weights.to(self.device)
        self.batch_tokens = batch_tokens or BATCH_TOKENS.get(self.device.type, BATCH_TOKENS["cuda"])
        default_fold = FOLD_CALIBRATION.get(self.device.type, FOLD_CALIBRATION["cuda"])
        self.fold_calibration = default_fold if fold_calibration is None else fold_calibration

    @property
    def device(self) -> torch.device:
        return self.truncated.device

    # -- planning: the CPU side, by the planner -------------------------------------------------

    def plan(self, query: str, passages: Sequence[str]) -> Plan:
        """``PromptPlanner.plan``: the query's windows and their prompts."""
        return self.planner.plan(query, passages)

    # -- reading: the model side -----------------------------------------------------------------

    def read_plans(self, plans: Sequence[Plan]) -> List[Reading]:
        """The forwards of queries already planned: every window of every query in shared forwards,
        all queued before the scores come back to the host, in one copy."""
        with torch.inference_mode():
            scores = iter(download(self.read_jobs([job for _, jobs in plans for job in jobs])))
        return [Reading(windows, [next(scores) for _ in jobs]) for windows, jobs in plans]

    def read_batch(self, queries: Sequence[str], passage_lists: Sequence[Sequence[str]]) -> List[Reading]:
        """``plan`` then ``read_plans`` for several queries, each with its own passages."""
        return self.read_plans([self.plan(q, passages) for q, passages in zip(queries, passage_lists)])

    def read_jobs(self, jobs: Sequence[Job]) -> List[torch.Tensor]:
        """Each job's calibrated ``(heads, passages)`` scores, on the device; jobs share forwards
        (``batch_groups``)."""
        scores: List[Optional[torch.Tensor]] = [None] * len(jobs)
        for group in batch_groups([len(job.real.input_ids) for job in jobs], self.batch_tokens):
            for i, masses in zip(group, self._read_group([jobs[i] for i in group])):
                scores[i] = calibrated(*masses)
        return scores

    def head_scores(self, query: str, passages: Sequence[str]) -> torch.Tensor:
        """Calibrated per-head scores, ``(selected heads, passages)``, of one window.

        Heads come in ``profile.heads_by_layer()`` order. Gradients flow when enabled (training).
        """
        return calibrated(*self.head_masses(query, passages))

    def head_masses(self, query: str, passages: Sequence[str]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Uncalibrated ``(heads, passages)`` attention mass of one window for the query and for the
        calibration query (``None`` when calibration is off), over the same prefix."""
        if not passages:
            empty = torch.zeros(len(self.weights), 0, device=self.device)
            return empty, empty if self.profile.prompt.calibrate else None
        texts, pieces = passage_pieces(self.tokenizer, passages, self.profile.prompt.max_passage_tokens)
        job = self.planner.jobs(query, texts, pieces, [list(range(len(texts)))])[0]
        return self._read_group([job])[0]

    def _read_group(self, jobs: Sequence[Job]) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """The jobs' prompts, right-padded, and their calibration queries read in one forward
        (folded) or two (``fold_calibration``); everything the passes index with is uploaded
        once, before them (``group_inputs``)."""
        inputs = upload(group_inputs(jobs), self.device)
        counts = [len(job.real.passage_spans) for job in jobs]
        if jobs[0].blank is None:
            (real,) = self._rows(inputs["ids"], [self._query_spans(jobs, inputs)])
            masses = span_mass(real, inputs["starts"], inputs["ends"])
            return [(masses[j, :, :n], None) for j, n in enumerate(counts)]
        real, blank = (self._folded_rows if self.fold_calibration else self._two_pass_rows)(jobs, inputs)
        masses = span_mass(real, inputs["starts"], inputs["ends"])
        blank = span_mass(blank, inputs["blank_starts"], inputs["blank_ends"])
        return [(masses[j, :, :n], blank[j, :, :n]) for j, n in enumerate(counts)]

    def _rows(self, ids: torch.Tensor, query_spans, cache=None, **placement) -> List[torch.Tensor]:
        """Per ``(host spans, device spans)`` of ``query_spans``, ``(rows, heads, T)``: every
        selected head's attention averaged over those query tokens, per batch row, all read in
        one forward of ``ids``."""
        recorders = [RowRecorder(self.heads, spans, on_device, self.selections) for spans, on_device in query_spans]
        self.truncated.forward(ids, cache, recorders[0] if len(recorders) == 1 else Recorders(recorders), **placement)
        return [torch.cat([recorder.rows[layer] for layer in self.heads], dim=1) for recorder in recorders]

    @staticmethod
    def _query_spans(jobs: Sequence[Job], inputs: Dict[str, torch.Tensor]):
        return [job.real.query_span for job in jobs], inputs["query"]

    @staticmethod
    def _calibration_spans(jobs: Sequence[Job], inputs: Dict[str, torch.Tensor]):
        return calibration_query_spans(jobs, inputs["ids"].shape[1]), inputs["blank_query"]

    def _two_pass_rows(self, jobs: Sequence[Job], inputs: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """The prompts in one causal forward, keeping its cache, then the calibration tails after
        the cached columns in a second, launch-bound pass over every layer."""
        cache = self.truncated.new_cache()
        (real,) = self._rows(inputs["ids"], [self._query_spans(jobs, inputs)], cache)
        placement = calibration_placement(inputs)
        (blank,) = self._rows(inputs["tails"], [self._calibration_spans(jobs, inputs)], cache, **placement)
        return [real, blank]

    def _folded_rows(self, jobs: Sequence[Job], inputs: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """Rows ``[prompt, padding, calibration tail, padding]`` in one forward, the tails in the
        columns the second pass would give them, under the same ``tails × T`` mask (attention.py's
        ``_folded_attention`` keeps the prompts causal): both query spans of every row read from
        the same layers."""
        ids = torch.cat([inputs["ids"], inputs["tails"]], dim=1)
        placement = calibration_placement(inputs)
        prompt = torch.arange(inputs["ids"].shape[1], device=ids.device).expand(len(jobs), -1)
        placement["position_ids"] = torch.cat([prompt, placement["position_ids"]], dim=1)
        spans = [self._query_spans(jobs, inputs), self._calibration_spans(jobs, inputs)]
        return self._rows(ids, spans, **placement)

    # -- combining: heads into one score per passage ---------------------------------------------

    def combine(self, head_scores: torch.Tensor) -> torch.Tensor:
        """Weighted sum over the profile's heads: ``(heads, passages)`` → ``(passages,)``."""
        weights = self._host_weights if head_scores.device.type == "cpu" else self.weights
        return weights.to(head_scores.device) @ head_scores

    def merged(self, reading: Reading) -> List[float]:
        """A reading's per-passage scores: heads combined, windows merged. A score that is not a
        finite number (half precision overflowing on real weights) is refused here, the one place
        every verb's scores pass, before any sort or fusion could order it."""
        with torch.inference_mode():
            scores = [self.combine(s) for s in reading.head_scores]
        if not all(bool(torch.isfinite(s).all()) for s in scores):
            dtype = self.truncated.dtype
            fix = "rerun in float32 or bfloat16 (--dtype)" if dtype == torch.float16 else "check the model's weights"
            raise ValueError(f"the model gave non-finite attention scores (NaN or inf) in {dtype}; {fix}")
        return merge_windows(reading.windows, [s.tolist() for s in scores], sum(len(w) for w in reading.windows))

    def invocations(self, reading: Reading, docids: Sequence[str]) -> List[Invocation]:
        """A reading as rank_llm-style invocation records, one per window."""
        forwards = 2 if self.profile.prompt.calibrate and not self.fold_calibration else 1
        return [
            Invocation(
                [docids[i] for i in window],
                prompt_positions(len(window), self.profile.prompt),
                scores.tolist(),
                forwards,
            )
            for window, scores in zip(reading.windows, reading.head_scores)
        ]


def shared_prefix(layout: PromptLayout, other: PromptLayout) -> int:
    """Length of the token prefix both prompts share, up to the query; it holds every passage."""
    limit = min(layout.query_span[0], other.query_span[0])
    prefix = 0
    while prefix < limit and layout.input_ids[prefix] == other.input_ids[prefix]:
        prefix += 1
    if any(end > prefix for _, end in layout.passage_spans):
        raise RuntimeError("the calibration prompt diverges inside the passages; cannot reuse their cache")
    return prefix


def calibrated(real: torch.Tensor, blank: Optional[torch.Tensor]) -> torch.Tensor:
    """The query's attention mass less the calibration query's (``None``: calibration off)."""
    return real if blank is None else real - blank


def group_inputs(jobs: Sequence[Job]) -> Dict[str, torch.Tensor]:
    """On the host, everything a group's passes index with: the right-padded prompts, the query
    spans, the passage spans padded to the group's most passages (as empty spans), and for the
    calibration pass its tails, prefixes and spans in the columns of the shared cache."""
    real = [job.real for job in jobs]
    parts = {
        "ids": right_padded([p.input_ids for p in real]),
        "query": torch.tensor([list(p.query_span) for p in real]),
        **span_bounds([p.passage_spans for p in real]),
    }
    if jobs[0].blank is not None:
        width = parts["ids"].shape[1]
        parts["tails"] = right_padded([job.blank.input_ids[job.prefix :] for job in jobs])
        parts["prefix"] = torch.tensor([job.prefix for job in jobs])
        parts["blank_query"] = torch.tensor([list(span) for span in calibration_query_spans(jobs, width)])
        parts.update({f"blank_{k}": v for k, v in span_bounds([job.blank.passage_spans for job in jobs]).items()})
    return parts


def calibration_query_spans(jobs: Sequence[Job], width: int) -> List[Tuple[int, int]]:
    """Each calibration query's span in the columns of a cache ``width`` wide: a calibration
    token's column is its place in its own prompt plus ``width - prefix``."""
    return [
        (job.blank.query_span[0] + width - job.prefix, job.blank.query_span[1] + width - job.prefix) for job in jobs
    ]


def calibration_placement(inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Position ids and 4-D mask of a group's calibration tails, which follow its ``width`` prompt
    columns, made on the device from the uploaded prefixes: a tail token sits at ``prefix + own``
    (where it would be alone) and sees its row's first ``prefix`` columns and its own tail up to
    itself, not its row's query, not padding. The mask is ``(rows, 1, tails, width + tails)``."""
    width, tails, prefix = inputs["ids"].shape[1], inputs["tails"].shape[1], inputs["prefix"]
    own = torch.arange(tails, device=prefix.device)
    columns = torch.arange(width + tails, device=prefix.device)
    sees_itself = (columns[None, :] >= width) & (columns[None, :] <= width + own[:, None])  # (tails, columns)
    sees_prefix = columns[None, None, :] < prefix[:, None, None]  # (rows, 1, columns)
    return dict(position_ids=prefix[:, None] + own, attention_mask=(sees_prefix | sees_itself[None])[:, None])


def span_bounds(span_lists: Sequence[Sequence[Tuple[int, int]]]) -> Dict[str, torch.Tensor]:
    """``starts`` and ``ends``, ``(rows, most spans)``; missing spans are empty (0, 0)."""
    bounds = torch.zeros(2, len(span_lists), max(len(spans) for spans in span_lists), dtype=torch.long)
    for row, spans in enumerate(span_lists):
        if spans:
            bounds[:, row, : len(spans)] = torch.tensor(spans).T
    return {"starts": bounds[0], "ends": bounds[1]}


def span_mass(rows: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Sum of each row over each token span: ``(rows, heads, T)`` with ``(rows, spans)`` bounds →
    ``(rows, heads, spans)``."""
    cumulative = torch.nn.functional.pad(rows.cumsum(dim=-1), (1, 0))
    heads = rows.shape[1]
    at_ends = cumulative.gather(-1, ends[:, None, :].expand(-1, heads, -1))
    return at_ends - cumulative.gather(-1, starts[:, None, :].expand(-1, heads, -1))


def passage_mass(rows: torch.Tensor, spans) -> torch.Tensor:
    """``span_mass`` of one row: ``(heads, T)`` → ``(heads, passages)``."""
    bounds = span_bounds([spans])
    return span_mass(rows[None], bounds["starts"].to(rows.device), bounds["ends"].to(rows.device))[0]
