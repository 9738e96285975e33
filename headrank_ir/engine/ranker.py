"""``HeadRanker``: one query and its passages in, passages ranked by attention-head scores out.

Per window of passages (see ``plan_windows``) the engine reads one prompt in a truncated
forward, keeping its cache, then, for calibration, ICR's content-free query on the cached
prefix (instructions and passages) it shares. A passage's score for one head is the attention
its tokens receive, summed over the passage and averaged over the query tokens, minus the same
with the content-free query; the profile's weights combine the heads.

Windows of several queries share forwards (``batch_groups``): right-padded rows of similar
length in one causal pass, so padding never reaches a real token; the calibration queries then
in one pass over that cache, each under a mask that shows it its own prefix only, at the
positions it would have alone.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from headrank_ir.engine.adapter import ensure_adapter
from headrank_ir.engine.attention import RowRecorder, TruncatedModel
from headrank_ir.engine.checks import (
    check_inputs,
    check_not_calibration,
    check_profile,
    check_rank_range,
    check_requests,
)
from headrank_ir.engine.fusion import fuse
from headrank_ir.engine.profile import HeadProfile, check_profile_model
from headrank_ir.engine.prompt import (
    PromptLayout,
    PromptPieces,
    passage_pieces,
    prompt_positions,
)
from headrank_ir.engine.windows import batch_groups, merge_windows, plan_windows, right_padded
from headrank_ir.records import (
    Candidate,
    DocId,
    Document,
    Invocation,
    RankedResults,
    Request,
    Result,
    ScoredDocument,
    as_request,
    best_first,
    tie_key,
)

logger = logging.getLogger(__name__)


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


# Padded tokens per forward (rows × longest row) by device type. On the CPU a forward costs its
# tokens whatever the batch, so the budget only bounds memory: a window of a 100-passage query
# (~8k tokens) runs alone, and peak RSS stays that of batch 1; a GPU gains from wide batches.
BATCH_TOKENS = {"cpu": 8192, "cuda": 65536}


class HeadRanker:
    """Rerank passages with the attention of a profile's heads, in one truncated forward.

    >>> ranker = HeadRanker.from_pretrained("smollm2-135m")
    >>> ranked = ranker.rank("what is a lobster roll", ["passage one ...", "passage two ..."])
    >>> ranked[0].doc_id, ranked[0].score
    """

    def __init__(
        self,
        model,
        tokenizer,
        profile: Optional[HeadProfile] = None,
        name: str = "",
        allow_profile_model_mismatch: bool = False,
        batch_tokens: Optional[int] = None,
    ):
        config = model.config.get_text_config()
        self.name = name or getattr(config, "_name_or_path", "") or "model"
        if profile is not None and not isinstance(profile, HeadProfile):
            raise TypeError(
                f"profile must be a HeadProfile (or a path, in from_pretrained), got {type(profile).__name__}"
            )
        if profile is not None and not allow_profile_model_mismatch:
            check_profile_model(profile, [name, getattr(config, "_name_or_path", "")])
        self.profile = profile or HeadProfile.icr(self.name, config.num_hidden_layers, config.num_attention_heads)
        check_profile(self.profile, config.num_hidden_layers, config.num_attention_heads)
        ensure_adapter(model, self.profile.adapter)
        self.model = model
        self.tokenizer = tokenizer
        self.truncated = TruncatedModel(model, self.profile.depth)
        self.context_tokens = self.profile.prompt.max_context_tokens or config.max_position_embeddings
        layers = self.profile.heads_by_layer()
        self._heads = {layer: heads for layer, heads, _ in layers}
        self._weights = torch.tensor([w for _, _, weights in layers for w in weights], device=self.truncated.device)
        self._pieces = PromptPieces(tokenizer, self.profile.prompt)
        self.batch_tokens = batch_tokens or BATCH_TOKENS.get(self.truncated.device.type, BATCH_TOKENS["cuda"])
        self.overlap = self.truncated.device.type == "cuda"  # see rerank_batches

    @classmethod
    def from_pretrained(
        cls,
        model: str = "smollm2-135m",
        profile: Union[None, str, os.PathLike, HeadProfile] = None,
        allow_profile_model_mismatch: bool = False,
        device: Optional[str] = None,
        dtype: Any = None,
        batch_tokens: Optional[int] = None,
    ):
        """Load ``model`` (short name, folder or Hugging Face id) and ``profile`` (path or object;
        omitted: the model's shipped profile, else ICR's; ``"icr"``: ICR's all heads) on ``device``
        in ``dtype`` (see ``load_model``; default ``auto``).

        A profile made for another model is refused unless ``allow_profile_model_mismatch``.
        """
        from headrank_ir.engine.models import load_model
        from headrank_ir.profiles import resolve_profile

        profile = resolve_profile(model, profile)
        if profile is not None and not allow_profile_model_mismatch:
            check_profile_model(profile, [str(model)])  # before the load: a mismatch costs no time
        lm, tokenizer = load_model(model, device=device, dtype=dtype)
        return cls(
            lm, tokenizer, profile, name=os.fspath(model), allow_profile_model_mismatch=True, batch_tokens=batch_tokens
        )

    # -- scoring -------------------------------------------------------------------------------

    def head_scores(self, query: str, passages: Sequence[str]) -> torch.Tensor:
        """Calibrated per-head scores, ``(selected heads, passages)``, of one window.

        Heads come in ``profile.heads_by_layer()`` order. Gradients flow when enabled (training).
        """
        return calibrated(*self.head_masses(query, passages))

    def head_masses(self, query: str, passages: Sequence[str]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Uncalibrated ``(heads, passages)`` attention mass of one window for the query and for the
        calibration query (``None`` when calibration is off), from the same cached prefix."""
        if not passages:
            empty = torch.zeros(len(self._weights), 0, device=self.truncated.device)
            return empty, empty if self.profile.prompt.calibrate else None
        texts, pieces = passage_pieces(self.tokenizer, passages, self.profile.prompt.max_passage_tokens)
        job = self._jobs(query, texts, pieces, [list(range(len(texts)))])[0]
        return self._read_group([job])[0]

    def plan(self, query: str, passages: Sequence[str]) -> Tuple[List[List[int]], List[Job]]:
        """The CPU side of reading one query: each passage tokenised once, the windows that fit
        (``plan_windows``) and every window's prompts joined from those tokens."""
        texts, pieces = passage_pieces(self.tokenizer, passages, self.profile.prompt.max_passage_tokens)
        windows = [w for w in plan_windows(self, query, [p.length for p in pieces]) if w]
        return windows, self._jobs(query, texts, pieces, windows)

    def _jobs(self, query: str, texts, pieces, windows) -> List[Job]:
        jobs = []
        for real, *blank in self._pieces.layouts(query, texts, pieces, windows):
            self._check_fits(real)
            jobs.append(Job(real, blank[0], shared_prefix(real, blank[0])) if blank else Job(real, None, 0))
        return jobs

    def read_jobs(self, jobs: Sequence[Job]) -> List[torch.Tensor]:
        """Each job's calibrated ``(heads, passages)`` scores; jobs share forwards (``batch_groups``)."""
        scores: List[Optional[torch.Tensor]] = [None] * len(jobs)
        for group in batch_groups([len(job.real.input_ids) for job in jobs], self.batch_tokens):
            for i, masses in zip(group, self._read_group([jobs[i] for i in group])):
                scores[i] = calibrated(*masses)
        return scores

    def _read_group(self, jobs: Sequence[Job]) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """One forward of the jobs' prompts, right-padded, then one of their calibration queries."""
        cache = self.truncated.new_cache() if jobs[0].blank is not None else None
        prompts = [job.real for job in jobs]
        ids = right_padded([p.input_ids for p in prompts], self.truncated.device)
        real = self._rows(ids, [p.query_span for p in prompts], cache)
        masses = [passage_mass(rows, p.passage_spans) for rows, p in zip(real, prompts)]
        if cache is None:
            return [(mass, None) for mass in masses]
        blank = self._calibration_rows(jobs, cache, ids.shape[1])
        return [(mass, passage_mass(rows, job.blank.passage_spans)) for mass, rows, job in zip(masses, blank, jobs)]

    def _rows(self, ids: torch.Tensor, query_spans, cache, **placement) -> torch.Tensor:
        """``(rows, heads, T)``: every selected head's query-averaged attention, per batch row."""
        recorder = RowRecorder(self._heads, query_spans)
        self.truncated.forward(ids, cache, recorder, **placement)
        return torch.cat([recorder.rows[layer] for layer in self._heads], dim=1)

    def _calibration_rows(self, jobs: Sequence[Job], cache, width: int) -> torch.Tensor:
        """The calibration prompts' own tokens after the ``width`` cached columns: each row sees its
        prefix and itself only (not its real query, not padding), at the positions it has alone."""
        device = self.truncated.device
        tails = [job.blank.input_ids[job.prefix :] for job in jobs]
        ids = right_padded(tails, device)
        prefix = torch.tensor([job.prefix for job in jobs], device=device)[:, None]
        own = torch.arange(ids.shape[1], device=device)
        columns = torch.arange(width + ids.shape[1], device=device)
        sees_prefix = columns[None, None, :] < prefix[:, :, None]  # (rows, 1, keys)
        sees_itself = (columns[None, :] >= width) & (columns[None, :] <= width + own[:, None])  # (tokens, keys)
        mask = (sees_prefix | sees_itself[None])[:, None]  # (rows, 1, tokens, keys)
        shift = [width - job.prefix for job in jobs]  # a calibration token's column less its place in its prompt
        spans = [(job.blank.query_span[0] + d, job.blank.query_span[1] + d) for job, d in zip(jobs, shift)]
        return self._rows(ids, spans, cache, position_ids=prefix + own[None, :], attention_mask=mask)

    def score(self, query: str, passages: Sequence[str]) -> List[float]:
        """One score per passage (larger is more relevant), windows merged by ``merge_windows``."""
        return self.score_batch([query], [passages])[0]

    def combine(self, head_scores: torch.Tensor) -> torch.Tensor:
        """Weighted sum over the profile's heads: ``(heads, passages)`` → ``(passages,)``."""
        return self._weights.to(head_scores.device) @ head_scores

    def read_batch(self, queries: Sequence[str], passage_lists: Sequence[Sequence[str]]) -> List[Reading]:
        """Every window's per-head scores for several queries, each with its own passages: the one
        place the verbs below reach the model. The windows of all queries share forwards."""
        return self.read_plans([self.plan(q, passages) for q, passages in zip(queries, passage_lists)])

    def read_plans(self, plans: Sequence[Tuple[List[List[int]], List[Job]]]) -> List[Reading]:
        """``read_batch`` after its CPU side: the forwards of queries already ``plan``-ned."""
        with torch.inference_mode():
            scores = iter(self.read_jobs([job for _, jobs in plans for job in jobs]))
        return [Reading(windows, [next(scores) for _ in jobs]) for windows, jobs in plans]

    def score_batch(self, queries: Sequence[str], passage_lists: Sequence[Sequence[str]]) -> List[List[float]]:
        """``score`` for several queries, each with its own passages."""
        return [self.merged(reading) for reading in self.read_batch(queries, passage_lists)]

    def merged(self, reading: Reading) -> List[float]:
        """A reading's per-passage scores: heads combined, windows merged."""
        with torch.inference_mode():
            scores = [self.combine(s).tolist() for s in reading.head_scores]
        return merge_windows(reading.windows, scores, sum(len(w) for w in reading.windows))

    def invocations(self, reading: Reading, docids: Sequence[str]) -> List[Invocation]:
        """A reading as rank_llm-style invocation records, one per window."""
        forwards = 2 if self.profile.prompt.calibrate else 1
        return [
            Invocation(
                [docids[i] for i in window],
                prompt_positions(len(window), self.profile.prompt),
                scores.tolist(),
                forwards,
            )
            for window, scores in zip(reading.windows, reading.head_scores)
        ]

    # -- public verbs: rerankers' ``rank`` and rank_llm's coordinator surface ----------------------

    def rank(
        self,
        query: str,
        docs: Sequence[str],
        doc_ids: Optional[Sequence[DocId]] = None,
        metadata: Optional[Sequence[dict]] = None,
    ) -> RankedResults:
        """rerankers' verb: ``docs`` ranked for ``query``, best first (ties by doc id).

        Without ``doc_ids`` a document's id is its position in ``docs``; ``metadata`` (one dict per
        document) rides along, as in rerankers. An empty list gives no results.
        """
        check_inputs(query, docs, doc_ids)
        if metadata is not None and len(metadata) != len(docs):
            raise ValueError(f"{len(metadata)} metadata for {len(docs)} passages")
        check_not_calibration(query, self.profile.prompt)
        ids = list(range(len(docs))) if doc_ids is None else list(doc_ids)
        extra = [{} for _ in docs] if metadata is None else [dict(m) for m in metadata]
        scores = self.score(query, docs) if docs else []
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], tie_key(ids[i])))
        results = [
            ScoredDocument(Document(docs[i], ids[i], extra[i]), scores[i], rank)
            for rank, i in enumerate(order, start=1)
        ]
        return RankedResults(results, query)

    def rerank_batch(
        self,
        requests: Sequence[Any],
        rank_start: int = 0,
        rank_end: int = 100,
        shuffle_candidates: bool = False,
        logging: bool = False,
        populate_invocations_history: bool = False,
        **kwargs: Any,
    ) -> List[Result]:
        """rank_llm's verb: in each request, the candidates from ``rank_start`` to ``rank_end``
        are reranked; those before keep their places above, those after theirs below.

        The reranked candidates carry their HeadRank scores; those above are rescored just above
        the best of them and those below just under the worst, counting by one in their given
        order, so that sorting by score (as run files do) keeps the order. ``requests`` may be
        rank_llm's own ``Request`` objects. ``populate_invocations_history`` (rank_llm's
        keyword) fills each result's ``invocations_history`` with one :class:`Invocation` per
        window: every profile head's scores. The profile's ``fusion`` combines the reranked
        candidates' scores with their first-stage scores (``engine/fusion.py``). ``logging`` and
        rank_llm's other keyword arguments change nothing here (there is no prompt to log and no window to slide).
        """
        check_rank_range(rank_start, rank_end, shuffle_candidates)
        planned = self._planned(requests, rank_start, rank_end)
        return self._placed(planned, rank_start, rank_end, populate_invocations_history)

    def rerank_batches(
        self, batches: Sequence[Sequence[Any]], rank_start: int = 0, rank_end: int = 100, **kwargs: Any
    ) -> Iterator[List[Result]]:
        """:meth:`rerank_batch` of each batch in turn, yielded as each is done. With ``overlap`` (the
        default on a GPU) batch k+1 is tokenised on a second thread while batch k is read; on the
        CPU both would compete for the same cores."""
        if not self.overlap:
            for batch in batches:
                yield self.rerank_batch(batch, rank_start, rank_end, **kwargs)
            return
        check_rank_range(rank_start, rank_end, kwargs.get("shuffle_candidates", False))
        history = kwargs.get("populate_invocations_history", False)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = [pool.submit(self._planned, batch, rank_start, rank_end) for batch in batches[:1]]
            for k in range(len(batches)):
                planned = pending.pop().result()
                if k + 1 < len(batches):
                    pending.append(pool.submit(self._planned, batches[k + 1], rank_start, rank_end))
                yield self._placed(planned, rank_start, rank_end, history)

    def _planned(self, requests: Sequence[Any], rank_start: int, rank_end: int):
        """The CPU side of ``rerank_batch``: inputs checked, every prompt tokenised."""
        ours = [as_request(r) for r in requests]
        check_requests(ours, self.profile.prompt)
        windows = [r.candidates[rank_start:rank_end] for r in ours]
        plans = {i: self.plan(r.query.text, [c.text for c in windows[i]]) for i, r in enumerate(ours) if windows[i]}
        return ours, windows, plans

    def _placed(self, planned, rank_start: int, rank_end: int, history: bool) -> List[Result]:
        """The model side of ``rerank_batch``: read the planned prompts, place the candidates."""
        ours, windows, plans = planned
        results = [Result(r.query, list(r.candidates)) for r in ours]
        for i, reading in zip(plans, self.read_plans(list(plans.values()))):
            invocations = self.invocations(reading, [c.docid for c in windows[i]]) if history else []
            scores = fuse(self.profile.fusion, self.merged(reading), *first_stage(windows[i]))
            results[i] = place(ours[i], scores, rank_start, rank_end, invocations)
        return results

    def rerank(self, request: Any, rank_start: int = 0, rank_end: int = 100, **kwargs: Any) -> Result:
        """rank_llm's verb for one request: :meth:`rerank_batch` of one."""
        return self.rerank_batch([request], rank_start, rank_end, **kwargs)[0]

    def get_name(self) -> str:
        return f"headrank_{Path(self.name.rstrip('/')).name}"

    def get_output_filename(
        self, top_k_candidates: int, dataset_name: Optional[str], shuffle_candidates: bool = False, **kwargs: Any
    ) -> str:
        """rank_llm's run file name: model, profile, depth and dataset; no timestamp, so a rerun
        with the same settings names the same file."""
        parts = [self.get_name(), self.profile.label(), f"top{top_k_candidates}"]
        return "_".join(parts + ([dataset_name] if dataset_name else []))

    def _check_fits(self, layout: PromptLayout) -> None:
        if len(layout.input_ids) > self.context_tokens:
            raise ValueError(
                f"the prompt needs {len(layout.input_ids)} tokens but the context holds {self.context_tokens}"
            )


def place(
    request: Request, scores: Sequence[float], rank_start: int, rank_end: int, history: Sequence[Invocation] = ()
) -> Result:
    """The request's candidates with ``rank_start:rank_end`` reordered by ``scores`` (see
    ``HeadRanker.rerank_batch`` for how the others are rescored)."""
    before, window, after = (
        request.candidates[:rank_start],
        request.candidates[rank_start:rank_end],
        request.candidates[rank_end:],
    )
    reranked = best_first([Candidate(c.docid, s, c.doc) for c, s in zip(window, scores)])
    top = max(scores, default=0.0)
    bottom = min(scores, default=0.0)
    above = [Candidate(c.docid, top + len(before) - i, c.doc) for i, c in enumerate(before)]
    below = [Candidate(c.docid, bottom - 1 - i, c.doc) for i, c in enumerate(after)]
    return Result(request.query, above + reranked + below, list(history))


def first_stage(candidates: Sequence[Candidate]) -> Tuple[List[Any], List[str]]:
    """The candidates' first-stage scores and docids, what ``fuse`` combines with the reranker's."""
    return [c.score for c in candidates], [c.docid for c in candidates]


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


def passage_mass(rows: torch.Tensor, spans) -> torch.Tensor:
    """Sum of each row over each token span: ``(heads, T)`` → ``(heads, passages)``."""
    cumulative = torch.nn.functional.pad(rows.cumsum(dim=-1), (1, 0))
    starts = torch.tensor([s for s, _ in spans], device=rows.device)
    ends = torch.tensor([e for _, e in spans], device=rows.device)
    return cumulative[:, ends] - cumulative[:, starts]
