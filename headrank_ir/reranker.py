"""``HeadRanker``: one query and its passages in, passages ranked by attention-head scores out.

Per window of passages (see ``plan_windows``) the engine makes one truncated forward:
the shared prefix (instructions and passages) once, then the query part, then, for
calibration, ICR's content-free query on the same cached prefix. A passage's score for one
head is the attention its tokens receive, summed over the passage and averaged over the query
tokens, minus the same with the content-free query; the profile's weights combine the heads.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple, Union

import torch

from .attention import RowRecorder, TruncatedModel, rewind
from .profile import HeadProfile
from .prompt import PromptLayout, build_layout, build_layouts, normalise, truncate_passages
from .records import Candidate, RankedPassage, Request, Result

logger = logging.getLogger(__name__)


class HeadRanker:
    """Rerank passages with the attention of a profile's heads, in one truncated forward.

    >>> ranker = HeadRanker.from_pretrained("smollm2-135m")
    >>> ranked = ranker.rerank("what is a lobster roll", ["passage one ...", "passage two ..."])
    >>> ranked[0].index, ranked[0].score
    """

    def __init__(self, model, tokenizer, profile: Optional[HeadProfile] = None, name: str = ""):
        config = model.config.get_text_config()
        self.name = name or getattr(config, "_name_or_path", "") or "model"
        self.profile = profile or HeadProfile.icr(self.name, config.num_hidden_layers, config.num_attention_heads)
        check_profile(self.profile, config.num_hidden_layers, config.num_attention_heads)
        if self.profile.adapter:
            from .adapter import apply_adapter

            apply_adapter(model, self.profile.adapter)
        self.model = model
        self.tokenizer = tokenizer
        self.truncated = TruncatedModel(model, self.profile.depth)
        self.context_tokens = self.profile.prompt.max_context_tokens or config.max_position_embeddings
        layers = self.profile.heads_by_layer()
        self._heads = {layer: heads for layer, heads, _ in layers}
        self._weights = torch.tensor([w for _, _, weights in layers for w in weights])

    @classmethod
    def from_pretrained(cls, model: str = "smollm2-135m", profile: Union[None, str, HeadProfile] = None):
        """Load ``model`` (short name, folder or Hugging Face id) and ``profile`` (path or object)."""
        from .models import load_model

        if isinstance(profile, str):
            profile = HeadProfile.load(profile)
        lm, tokenizer = load_model(model)
        return cls(lm, tokenizer, profile, name=model)

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

    def windowed_head_scores(
        self, query: str, passages: Sequence[str]
    ) -> Tuple[List[List[int]], List[torch.Tensor]]:
        """The passages split into windows that fit (``plan_windows``), and each window's
        ``head_scores``; what ``score`` merges, kept apart for callers that want every head."""
        texts, lengths = truncate_passages(self.tokenizer, passages, self.profile.prompt.max_passage_tokens)
        windows = plan_windows(self, query, lengths)
        with torch.inference_mode():
            per_window = [self.head_scores(query, [texts[i] for i in w], truncated=True) for w in windows]
        return windows, per_window

    def score(self, query: str, passages: Sequence[str]) -> List[float]:
        """One score per passage (larger is more relevant), windows merged by ``merge_windows``."""
        windows, per_window = self.windowed_head_scores(query, passages)
        with torch.inference_mode():
            scores = [self.combine(s).tolist() for s in per_window]
        return merge_windows(windows, scores, len(passages))

    def combine(self, head_scores: torch.Tensor) -> torch.Tensor:
        """Weighted sum over the profile's heads: ``(heads, passages)`` → ``(passages,)``."""
        return self._weights.to(head_scores.device) @ head_scores

    # -- public ranking API --------------------------------------------------------------------

    def rerank(
        self, query: str, passages: Sequence[str], docids: Optional[Sequence[str]] = None
    ) -> List[RankedPassage]:
        """Rank ``passages`` for ``query``; ties keep input order. An empty list gives ``[]``."""
        check_inputs(query, passages, docids)
        if not passages:
            return []
        scores = self.score(query, passages)
        order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))
        return [
            RankedPassage(rank, i, scores[i], passages[i], docids[i] if docids is not None else None)
            for rank, i in enumerate(order, start=1)
        ]

    def rerank_request(self, request: Request) -> Result:
        """rank_llm's shape: candidates come back reordered, each with its HeadRank score."""
        candidates = list(request.candidates)
        ranked = self.rerank(request.query.text, [c.text for c in candidates])
        reordered = [Candidate(candidates[p.index].docid, p.score, candidates[p.index].doc) for p in ranked]
        return Result(request.query, reordered)

    def rerank_batch(self, requests: Sequence[Request]) -> List[Result]:
        return [self.rerank_request(r) for r in requests]

    def _check_fits(self, layout: PromptLayout) -> None:
        if len(layout.input_ids) > self.context_tokens:
            raise ValueError(
                f"the prompt needs {len(layout.input_ids)} tokens but the context holds {self.context_tokens}"
            )


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


def check_inputs(query, passages, docids) -> None:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if not normalise(query):
        raise ValueError("query is empty")
    if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
        raise TypeError(f"passages must be a list of str, got {type(passages).__name__}")
    for i, passage in enumerate(passages):
        if not isinstance(passage, str):
            raise TypeError(f"passage {i} must be a str, got {type(passage).__name__}")
        if not normalise(passage):
            raise ValueError(f"passage {i} is empty or whitespace only")
    if docids is not None and len(docids) != len(passages):
        raise ValueError(f"{len(docids)} docids for {len(passages)} passages")


def check_profile(profile: HeadProfile, num_layers: int, num_heads: int) -> None:
    for layer, head, _ in profile.heads:
        if not 0 <= layer < num_layers or not 0 <= head < num_heads:
            raise ValueError(
                f"profile names layer {layer} head {head}, but the model has layers 0..{num_layers - 1} "
                f"and heads 0..{num_heads - 1}"
            )
