"""``HeadRanker``: one query and its passages in, passages ranked by attention-head scores out.

Per window of passages (see ``plan_windows``) the engine makes one truncated forward:
the shared prefix (instructions and passages) once, then the query part, then, for
calibration, ICR's content-free query on the same cached prefix. A passage's score for one
head is the attention its tokens receive, summed over the passage and averaged over the query
tokens, minus the same with the content-free query; the profile's weights combine the heads.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch

from headrank_ir.engine.attention import RowRecorder, TruncatedModel, rewind
from headrank_ir.engine.fusion import fuse
from headrank_ir.engine.profile import HeadProfile, PromptSettings, check_profile_model
from headrank_ir.engine.prompt import (
    PromptLayout,
    build_layout,
    build_layouts,
    normalise,
    prompt_positions,
    truncate_passages,
)
from headrank_ir.pipeline.readers import check_text
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
        from headrank_ir.engine.adapter import ensure_adapter

        ensure_adapter(model, self.profile.adapter)
        self.model = model
        self.tokenizer = tokenizer
        self.truncated = TruncatedModel(model, self.profile.depth)
        self.context_tokens = self.profile.prompt.max_context_tokens or config.max_position_embeddings
        layers = self.profile.heads_by_layer()
        self._heads = {layer: heads for layer, heads, _ in layers}
        self._weights = torch.tensor([w for _, _, weights in layers for w in weights])

    @classmethod
    def from_pretrained(
        cls,
        model: str = "smollm2-135m",
        profile: Union[None, str, os.PathLike, HeadProfile] = None,
        allow_profile_model_mismatch: bool = False,
    ):
        """Load ``model`` (short name, folder or Hugging Face id) and ``profile`` (path or object;
        omitted: the model's shipped profile, else ICR's; ``"icr"``: ICR's all heads).

        A profile made for another model is refused unless ``allow_profile_model_mismatch``.
        """
        from headrank_ir.engine.models import load_model
        from headrank_ir.profiles import resolve_profile

        profile = resolve_profile(model, profile)
        if profile is not None and not allow_profile_model_mismatch:
            check_profile_model(profile, [str(model)])  # before the load: a mismatch costs no time
        lm, tokenizer = load_model(model)
        return cls(lm, tokenizer, profile, name=os.fspath(model), allow_profile_model_mismatch=True)

    # -- scoring -------------------------------------------------------------------------------

    def head_scores(self, query: str, passages: Sequence[str], truncated: bool = False) -> torch.Tensor:
        """Calibrated per-head scores, ``(selected heads, passages)``, for one window.

        Heads come in ``profile.heads_by_layer()`` order. Gradients flow when enabled (training).
        """
        real, blank = self.head_masses(query, passages, truncated)
        return real if blank is None else real - blank

    def head_masses(
        self, query: str, passages: Sequence[str], truncated: bool = False
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Uncalibrated ``(heads, passages)`` attention mass for the query and for the calibration
        query (``None`` when calibration is off), from the same cached prefix."""
        prompt = self.profile.prompt
        if not truncated:
            passages = truncate_passages(self.tokenizer, passages, prompt.max_passage_tokens)[0]
        queries = [query, prompt.calibration_query] if prompt.calibrate else [query]
        layout, *calibration = build_layouts(self.tokenizer, queries, passages, prompt, truncated=True)
        self._check_fits(layout)
        if not prompt.calibrate:
            return self._read(layout, None, 0), None
        # The whole prompt once, keeping its cache; then only the content-free query's tokens
        # on the shared prefix (passages included), so calibration costs a few dozen tokens.
        blank = calibration[0]
        prefix = shared_prefix(layout, blank)
        cache = self.truncated.new_cache()
        real = self._read(layout, cache, 0)
        rewind(cache, prefix)
        return real, self._read(blank, cache, prefix)

    def _read(self, layout: PromptLayout, cache, start: int) -> torch.Tensor:
        """Run ``layout``'s tokens from ``start`` on top of ``cache``; per-head passage mass."""
        recorder = RowRecorder(self._heads, layout.query_span)
        self.truncated.forward(layout.input_ids[start:], cache, recorder)
        rows = torch.cat([recorder.rows[layer] for layer in self._heads])  # (heads, T)
        return passage_mass(rows, layout.passage_spans)

    def windowed_head_scores(self, query: str, passages: Sequence[str]) -> Tuple[List[List[int]], List[torch.Tensor]]:
        """The passages split into windows that fit (``plan_windows``), and each window's
        ``head_scores``; what ``score`` merges, kept apart for callers that want every head."""
        texts, lengths = truncate_passages(self.tokenizer, passages, self.profile.prompt.max_passage_tokens)
        windows = plan_windows(self, query, lengths)
        with torch.inference_mode():
            per_window = [self.head_scores(query, [texts[i] for i in w], truncated=True) for w in windows]
        return windows, per_window

    def score(self, query: str, passages: Sequence[str]) -> List[float]:
        """One score per passage (larger is more relevant), windows merged by ``merge_windows``."""
        return self.score_batch([query], [passages])[0]

    def combine(self, head_scores: torch.Tensor) -> torch.Tensor:
        """Weighted sum over the profile's heads: ``(heads, passages)`` → ``(passages,)``."""
        return self._weights.to(head_scores.device) @ head_scores

    def read_batch(self, queries: Sequence[str], passage_lists: Sequence[Sequence[str]]) -> List[Reading]:
        """Every window's per-head scores for several queries, each with its own passages: the one
        place the verbs below reach the model."""
        return [Reading(*self.windowed_head_scores(q, passages)) for q, passages in zip(queries, passage_lists)]

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
        if shuffle_candidates:
            raise ValueError("shuffle_candidates is not supported: HeadRank reads the candidates in first-stage order")
        if not 0 <= rank_start < rank_end:
            raise ValueError(f"need 0 <= rank_start < rank_end, got rank_start={rank_start}, rank_end={rank_end}")
        ours = [as_request(r) for r in requests]
        check_requests(ours, self.profile.prompt)
        windows = [r.candidates[rank_start:rank_end] for r in ours]
        todo = [i for i, window in enumerate(windows) if window]
        readings = self.read_batch([ours[i].query.text for i in todo], [[c.text for c in windows[i]] for i in todo])
        results = [Result(r.query, list(r.candidates)) for r in ours]
        for i, reading in zip(todo, readings):
            history = self.invocations(reading, [c.docid for c in windows[i]]) if populate_invocations_history else []
            scores = fuse(self.profile.fusion, self.merged(reading), *first_stage(windows[i]))
            results[i] = place(ours[i], scores, rank_start, rank_end, history)
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


def passage_mass(rows: torch.Tensor, spans) -> torch.Tensor:
    """Sum of each row over each token span: ``(heads, T)`` → ``(heads, passages)``."""
    cumulative = torch.nn.functional.pad(rows.cumsum(dim=-1), (1, 0))
    starts = torch.tensor([s for s, _ in spans], device=rows.device)
    ends = torch.tensor([e for _, e in spans], device=rows.device)
    return cumulative[:, ends] - cumulative[:, starts]


# -- windows -------------------------------------------------------------------------------------

PASSAGE_MARGIN = 8  # label "[n] ", newline and tokenizer merges at the edges


def plan_windows(ranker: HeadRanker, query: str, lengths: Sequence[int]) -> List[List[int]]:
    """Split passages (their token counts), in input order, into consecutive windows that fit."""
    prompt = ranker.profile.prompt
    overhead = max(
        len(build_layout(ranker.tokenizer, q, [], prompt).input_ids) for q in (query, prompt.calibration_query)
    )
    budget = ranker.context_tokens - overhead
    windows: List[List[int]] = [[]]
    used = 0
    for i, length in enumerate(lengths):
        cost = length + PASSAGE_MARGIN
        if cost > budget:
            raise ValueError(
                f"passage {i} needs {cost} tokens next to a {overhead}-token prompt, but the context holds "
                f"{ranker.context_tokens}; lower max_passage_tokens or shorten the query"
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


# -- input checks --------------------------------------------------------------------------------


def check_inputs(query, passages, doc_ids, what: str = "passage") -> None:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if not normalise(check_text(query, "the query")):
        raise ValueError("query is empty")
    if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
        raise TypeError(f"{what}s must be a list of str, got {type(passages).__name__}")
    if doc_ids is not None:
        if isinstance(doc_ids, (str, bytes)) or not isinstance(doc_ids, Sequence):
            raise TypeError(f"doc_ids must be a list of str or int, got {type(doc_ids).__name__}")
        if len(doc_ids) != len(passages):
            raise ValueError(f"{len(doc_ids)} doc_ids for {len(passages)} {what}s")
    for i, passage in enumerate(passages):
        item = f"{what} {i}" + (f" (docid {doc_ids[i]!r})" if doc_ids is not None else "")
        if not isinstance(passage, str):
            raise TypeError(f"{item} must be a str, got {type(passage).__name__}")
        if not normalise(check_text(passage, item)):
            raise ValueError(f"{item} is empty or whitespace only")


def check_not_calibration(query: str, prompt: PromptSettings) -> None:
    """The calibration query scored against itself gives 0.0 for every passage: refuse it."""
    if prompt.calibrate and normalise(query) == normalise(prompt.calibration_query):
        raise ValueError(
            f"the query {query!r} is the calibration query, whose attention calibration subtracts, so every "
            "passage would score 0.0; rephrase it, or use a profile with another prompt.calibration_query "
            "or with calibrate false"
        )


def check_requests(requests: Sequence[Request], prompt: PromptSettings = PromptSettings()) -> None:
    """Every query and candidate of ``requests`` checked before any is read, naming the query;
    a command calls it before writing a run, so that bad input stops it before the first query."""
    for request in requests:
        try:
            texts = [c.text for c in request.candidates]
            check_inputs(request.query.text, texts, [c.docid for c in request.candidates], what="candidate")
            check_not_calibration(request.query.text, prompt)
        except KeyError as error:  # a candidate without a text field
            raise ValueError(f"query {request.query.qid!r}: {error.args[0]}") from None
        except (TypeError, ValueError) as error:
            raise type(error)(f"query {request.query.qid!r}: {error}") from None


def check_profile(profile: HeadProfile, num_layers: int, num_heads: int) -> None:
    for layer, head, _ in profile.heads:
        if not 0 <= layer < num_layers or not 0 <= head < num_heads:
            raise ValueError(
                f"profile names layer {layer} head {head}, but the model has layers 0..{num_layers - 1} "
                f"and heads 0..{num_heads - 1}"
            )
