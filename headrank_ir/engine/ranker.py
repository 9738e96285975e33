"""``HeadRanker``: the public face of the engine, one query and its passages in, passages ranked out.

A thin facade in rerankers' and rank_llm's shapes (``rank``, ``rerank_batch``, ``rerank``) over
``HeadReader`` (``engine/reader.py``), which plans, reads, calibrates and merges. The facade
checks the inputs, fuses with the first stage where the profile says so, and places the
candidates; it never reaches the model itself.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, Tuple, Union

from headrank_ir.engine.adapter import ensure_adapter
from headrank_ir.engine.checks import (
    check_batch_call,
    check_inputs,
    check_metadata,
    check_not_calibration,
    check_profile_argument,
    check_profile_fits,
    check_score,
    check_score_batch,
    checked_rank_end,
)
from headrank_ir.engine.fusion import fuse
from headrank_ir.engine.planning import OVERLAP_ROUTES, Ahead, Planner, Plans, close_all, failed
from headrank_ir.engine.profile import HeadProfile, check_profile_model, resolve_profile
from headrank_ir.engine.reader import HeadReader
from headrank_ir.integrations.detect import is_rank_llm, is_rerankers_document
from headrank_ir.integrations.rank_llm import as_rank_llm
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
    documents_given,
    tie_key,
)

if TYPE_CHECKING:
    import rank_llm.data
    import rerankers.results

logger = logging.getLogger(__name__)


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
        names = [name, getattr(config, "_name_or_path", "")]
        self.profile = profile or HeadProfile.icr(self.name, config.num_hidden_layers, config.num_attention_heads)
        check_profile_fits(self.profile, names, config, allow_profile_model_mismatch or profile is None)
        ensure_adapter(model, self.profile.adapter)
        self.reader = HeadReader(model, tokenizer, self.profile, batch_tokens)
        # How rerank_batches plans ahead: False (not at all) or "process" (True says the same).
        self.overlap: Union[bool, str] = "process" if self.reader.device.type == "cuda" else False
        # In this process planning goes through the reader (whose ``plan`` benches clock); a
        # planner process gets a copy of its planner.
        planning = {"off": self.reader, "process": self.reader.planner}
        self._planners = {route: Planner(planning[route], route) for route in OVERLAP_ROUTES}
        weakref.finalize(self, close_all, self._planners)  # a ranker dropped unclosed stops its planner

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

        check_profile_argument(profile)
        profile = resolve_profile(model, profile)
        if profile is not None and not allow_profile_model_mismatch:
            check_profile_model(profile, [str(model)])  # before the load: a mismatch costs no time
        depth = profile.depth if profile is not None else None  # None: ICR reads every layer
        lm, tokenizer = load_model(model, device=device, dtype=dtype, depth=depth)
        return cls(
            lm, tokenizer, profile, name=os.fspath(model), allow_profile_model_mismatch=True, batch_tokens=batch_tokens
        )

    def score(self, query: str, passages: Sequence[str]) -> List[float]:
        """One score per passage (larger is more relevant), windows merged by ``merge_windows``;
        the inputs are checked as ``rank`` checks them."""
        check_score(query, passages, self.profile.prompt)
        return self._scores([query], [passages])[0]

    def score_batch(self, queries: Sequence[str], passage_lists: Sequence[Sequence[str]]) -> List[List[float]]:
        """``score`` for several queries, each with its own passages, read in shared forwards;
        one passage list per query, each checked as ``rank`` checks its inputs."""
        check_score_batch(queries, passage_lists, self.profile.prompt)
        return self._scores(queries, passage_lists)

    def _scores(self, queries: Sequence[str], passage_lists: Sequence[Sequence[str]]) -> List[List[float]]:
        read = [i for i, passages in enumerate(passage_lists) if passages]  # no passages: no scores, no forward
        readings = self.reader.read_batch([queries[i] for i in read], [passage_lists[i] for i in read])
        scores: List[List[float]] = [[] for _ in passage_lists]
        for i, reading in zip(read, readings):
            scores[i] = self.reader.merged(reading)
        return scores

    # -- public verbs: rerankers' ``rank`` and rank_llm's coordinator surface ----------------------

    def rank(
        self,
        query: str,
        docs: Union[str, Sequence[str], Any],
        doc_ids: Optional[Sequence[DocId]] = None,
        metadata: Optional[Sequence[dict]] = None,
    ) -> Union[RankedResults, rerankers.results.RankedResults]:
        """rerankers' verb: ``docs`` ranked for ``query``, best first (ties by doc id).

        ``docs`` takes rerankers' forms: one text, a list of texts, one ``Document`` or a list of
        them (rerankers' or any object with ``.text`` and ``.doc_id``; their ids and metadata are
        used unless ``doc_ids``/``metadata`` are given). A document without an id has its position
        in ``docs`` as id; ``metadata`` (one dict per document) rides along. An empty list gives
        no results. Plain texts give this package's ``RankedResults``; rerankers' ``Document``
        objects give rerankers' own ``RankedResults`` (``integrations/rerankers_results.py``).

        Order matters, and is the caller's: HeadRank reads a list, and ``docs`` are read in the
        order given as the first stage's ranking, best first, as ``rerank_batch`` reads its
        candidates (the first is placed nearest the query). Pass the documents as your retriever
        ranked them; the same documents in another order can rank differently.
        """
        check_metadata(metadata)
        texts, doc_ids, metadata = documents_given(docs, doc_ids, metadata)
        check_inputs(query, texts, doc_ids)
        if metadata is not None and len(metadata) != len(texts):
            raise ValueError(f"{len(metadata)} metadata for {len(texts)} passages")
        check_not_calibration(query, self.profile.prompt)
        ids = list(range(len(texts))) if doc_ids is None else list(doc_ids)
        extra = [{} for _ in texts] if metadata is None else [dict(m) for m in metadata]
        scores = self.score(query, texts) if texts else []
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], tie_key(ids[i])))
        results = [
            ScoredDocument(Document(texts[i], ids[i], extra[i]), scores[i], rank)
            for rank, i in enumerate(order, start=1)
        ]
        ranked = RankedResults(results, query)
        listed = docs if isinstance(docs, Sequence) and not isinstance(docs, str) else [docs]
        if any(map(is_rerankers_document, listed)):
            from headrank_ir.integrations.rerankers_results import to_rerankers

            return to_rerankers(ranked)
        return ranked

    def rerank_batch(
        self,
        requests: Sequence[Any],
        rank_start: int = 0,
        rank_end: int = 100,
        shuffle_candidates: bool = False,
        logging: bool = False,
        populate_invocations_history: bool = False,
        **kwargs: Any,
    ) -> List[Union[Result, rank_llm.data.Result]]:
        """rank_llm's verb: in each request, the candidates from ``rank_start`` to ``rank_end``
        are reranked; those before keep their places above, those after theirs below.

        The reranked candidates carry their HeadRank scores; those above are rescored just above
        the best of them and those below just under the worst, counting by one in their given
        order, so that sorting by score (as run files do) keeps the order. ``requests`` may be
        rank_llm's own ``Request`` objects. ``populate_invocations_history`` (rank_llm's
        keyword) fills each result's ``invocations_history`` with one :class:`Invocation` per
        window: every profile head's scores. The profile's ``fusion`` combines the reranked
        candidates' scores with their first-stage scores (``engine/fusion.py``). ``logging`` and
        rank_llm's other keyword arguments change nothing here (there is no prompt to log and no window to slide),
        but ``top_k_retrieve`` caps ``rank_end``, as rank_llm's coordinators cap it.

        Requests in rank_llm's own classes (``rank_llm.data.Request`` or ``Result``) get rank_llm's
        ``Result`` objects back, with the qid and docids as given (an int stays an int), so that
        rank_llm's next stage can change them in place and its ``DataWriter`` writes what came in;
        this package's records (or other rank_llm-shaped objects) get this package's frozen ``Result``.
        """
        kwargs.update(shuffle_candidates=shuffle_candidates, populate_invocations_history=populate_invocations_history)
        return self._ahead(self._planners["off"], requests, rank_start, rank_end, **kwargs).read()

    def rerank_batches(
        self, batches: Sequence[Sequence[Any]], rank_start: int = 0, rank_end: int = 100, **kwargs: Any
    ) -> Iterator[List[Result]]:
        """:meth:`rerank_batch` of each batch in turn, yielded as each is done, each batch sent to
        be planned (:meth:`rerank_ahead`) while the one before it is read."""
        for batch in batches:
            check_batch_call(batch, rank_start, rank_end)
        ahead = [self.rerank_ahead(batch, rank_start, rank_end, **kwargs) for batch in batches[:1]]
        try:
            for k in range(len(batches)):
                if k + 1 < len(batches):
                    ahead.append(self.rerank_ahead(batches[k + 1], rank_start, rank_end, **kwargs))
                yield ahead.pop(0).read()
        finally:  # stopped early or by an error: the batch sent ahead is not wanted
            for batch in ahead:
                batch.cancel()

    def rerank_ahead(self, requests: Sequence[Any], rank_start: int = 0, rank_end: int = 100, **kwargs: Any) -> Ahead:
        """:meth:`rerank_batch` in two steps: the call is checked and ``requests`` sent to be
        planned now, as ``overlap`` says (in a planner process, the default on a GPU; on a
        False: not now but when read, in turn); ``read()`` on what comes back waits for
        the plans and reads them (a planning error is raised there, as ``rerank_batch`` raises
        it). Results are the same either way. A planner is started on its first batch and kept
        until :meth:`close`."""
        planner = self._planners[{False: "off", True: "process"}.get(self.overlap, self.overlap)]
        return self._ahead(planner, requests, rank_start, rank_end, **kwargs)

    def _ahead(self, planner: Planner, requests: Sequence[Any], rank_start: int, rank_end: int, **kwargs) -> Ahead:
        check_batch_call(requests, rank_start, rank_end)
        shuffle, history = kwargs.get("shuffle_candidates", False), kwargs.get("populate_invocations_history", False)
        rank_end = checked_rank_end(rank_start, rank_end, shuffle, kwargs.get("top_k_retrieve"))
        try:
            ours = [as_request(r) for r in requests]
            plans = planner.submit(ours, rank_start, rank_end)
        except TypeError as error:  # raised when read, as rerank_batch raises it
            ours, plans = [], failed(error)
        return Ahead(plans, lambda planned: self._placed(requests, ours, planned, rank_start, rank_end, history))

    def close(self) -> None:
        """Stop the planner process :meth:`rerank_ahead` started; a later call starts
        another. Also on leaving ``with ranker:``, and when the ranker is garbage-collected."""
        close_all(self._planners)

    def __enter__(self) -> HeadRanker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _placed(
        self, given: Sequence[Any], ours: List[Request], plans: Plans, rank_start: int, rank_end: int, history: bool
    ) -> List[Result]:
        """The model side of ``rerank_batch``: read the planned prompts, place the candidates, in
        the caller's types (rank_llm's ``Result`` for rank_llm's requests)."""
        windows = [r.candidates[rank_start:rank_end] for r in ours]
        results = [Result(r.query, list(r.candidates)) for r in ours]
        for i, reading in zip(plans, self.reader.read_plans(list(plans.values()))):
            invocations = self.reader.invocations(reading, [c.docid for c in windows[i]]) if history else []
            scores = fuse(self.profile.fusion, self.reader.merged(reading), *first_stage(windows[i]))
            results[i] = place(ours[i], scores, rank_start, rank_end, invocations)
        return [
            as_rank_llm(request, result) if is_rank_llm(request) else result for request, result in zip(given, results)
        ]

    def rerank(
        self, request: Any, rank_start: int = 0, rank_end: int = 100, **kwargs: Any
    ) -> Union[Result, rank_llm.data.Result]:
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
