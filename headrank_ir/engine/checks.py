"""Input checks shared by the verbs and the commands: what a bad query, passage, request or
profile gets instead of a deep traceback or a silently wrong ranking; :func:`preflight` runs
them all once before a run starts."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Sequence

from headrank_ir.engine.profile import HeadProfile, PromptSettings, check_profile_model
from headrank_ir.engine.prompt import normalise
from headrank_ir.records import Request

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(value: str, what: str) -> str:
    """``value``, unless it holds a lone surrogate (a ``\\ud800`` JSON escape without its pair),
    which no tokenizer or UTF-8 file can take."""
    found = _LONE_SURROGATE.search(value)
    if found:
        raise ValueError(
            f"{what} holds a lone surrogate {found.group()!r} at character {found.start() + 1}; "
            "\\ud800-\\udfff escapes are only valid in pairs"
        )
    return value


def check_rank_range(rank_start: int, rank_end: int, shuffle_candidates: bool) -> None:
    if shuffle_candidates:
        raise ValueError("shuffle_candidates is not supported: HeadRank reads the candidates in first-stage order")
    if not 0 <= rank_start < rank_end:
        raise ValueError(f"need 0 <= rank_start < rank_end, got rank_start={rank_start}, rank_end={rank_end}")


def checked_rank_end(rank_start: int, rank_end: int, shuffle_candidates: bool, top_k_retrieve: Any = None) -> int:
    """``rank_end`` capped by rank_llm's ``top_k_retrieve`` (as its coordinators cap it), the
    range checked."""
    if top_k_retrieve is not None:
        if not isinstance(top_k_retrieve, int) or top_k_retrieve <= rank_start:
            raise ValueError(
                f"top_k_retrieve caps rank_end, so it must be an int above rank_start={rank_start}, "
                f"got {top_k_retrieve!r}"
            )
        rank_end = min(rank_end, top_k_retrieve)
    check_rank_range(rank_start, rank_end, shuffle_candidates)
    return rank_end


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


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def check_score(query: Any, passages: Any, prompt: PromptSettings) -> None:
    """What ``score`` takes, checked as ``rank`` checks it: a non-empty query that is not the
    calibration query, and a list (not one string) of non-empty passages."""
    check_inputs(query, passages, None)
    check_not_calibration(query, prompt)


def check_score_batch(queries: Any, passage_lists: Any, prompt: PromptSettings) -> None:
    """``score_batch``'s arguments: a list of queries and as many passage lists (never one dropped
    silently by ``zip``), each pair checked as :func:`check_score`, naming the query."""
    if not _is_list(queries):
        raise TypeError(f"queries must be a list of str, got {type(queries).__name__}")
    if not _is_list(passage_lists) or not all(_is_list(p) for p in passage_lists):
        raise TypeError("passage_lists must be a list of lists of str, one per query")
    if len(queries) != len(passage_lists):
        raise ValueError(f"{len(queries)} queries for {len(passage_lists)} passage lists: give one list per query")
    for i, (query, passages) in enumerate(zip(queries, passage_lists)):
        try:
            check_score(query, passages, prompt)
        except (TypeError, ValueError) as error:
            raise type(error)(f"query {i}: {error}") from None


def check_metadata(metadata: Any) -> None:
    """``rank``'s ``metadata``: None, or one dict per document."""
    if metadata is None:
        return
    if not _is_list(metadata):
        raise TypeError(f"metadata must be a list of dicts, one per passage, got {type(metadata).__name__}")
    for i, item in enumerate(metadata):
        if not isinstance(item, Mapping):
            raise TypeError(f"metadata {i} must be a dict, got {type(item).__name__}; give {{}} for none")


def check_batch_call(requests: Any, rank_start: Any, rank_end: Any) -> None:
    """``rerank_batch``'s arguments before any is used: a list of requests (one request alone is
    ``rerank``'s), and whole-number bounds."""
    if not _is_list(requests):
        raise TypeError(
            f"requests must be a list of Request, got {type(requests).__name__}; "
            "for one request call rerank(request) or rerank_batch([request])"
        )
    for name, value in (("rank_start", rank_start), ("rank_end", rank_end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a whole number, got {value!r}")


def check_profile_argument(profile: Any) -> None:
    """``from_pretrained``'s ``profile``: None (the shipped one), ``'icr'``, a path or a
    ``HeadProfile``; a dict or an empty name is refused in one line."""
    if profile is None or isinstance(profile, HeadProfile):
        return
    if isinstance(profile, Mapping):
        raise TypeError("profile must be a path, 'icr' or a HeadProfile, got a dict: pass HeadProfile.from_json(it)")
    if not isinstance(profile, (str, os.PathLike)):
        raise TypeError(f"profile must be a path, 'icr' or a HeadProfile, got {type(profile).__name__}")
    if not os.fspath(profile).strip():
        raise ValueError("profile '' names no file: omit it for the model's shipped profile, or give 'icr' or a path")


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


def check_profile_fits(profile: HeadProfile, names: Sequence[str], config, allow_profile_model_mismatch: bool) -> None:
    """``profile`` made for the model called ``names`` (unless allowed otherwise) and within its
    layers and heads (``config``, the text config): what ``HeadRanker`` and ``preflight`` check."""
    if not allow_profile_model_mismatch:
        check_profile_model(profile, names)
    check_profile(profile, config.num_hidden_layers, config.num_attention_heads)


def check_prompts_fit(tokenizer, profile: HeadProfile, context_tokens: int, requests, depth=None) -> None:
    """Every query's prompts planned as the engine plans them (``reader.PromptPlanner``: the
    tokenizer only, no model): a query or passage that cannot fit the context is named now, not
    after the queries before it were written.

    A query whose longest passage fits beside its prompt even at one token per byte is passed
    without tokenising its passages (``_fits_by_bytes``): planning them here cost as much host time
    as the engine's own planning (42 ms a 100-passage query), serially, before the first forward.
    """
    from headrank_ir.engine.reader import PromptPlanner

    planner = PromptPlanner(tokenizer, profile, context_tokens)
    normalizer = _byte_level_normalizer(tokenizer)
    for request in requests:
        passages = [c.text for c in request.candidates[:depth]]
        try:
            if normalizer is None or not _fits_by_bytes(planner, normalizer, request.query.text, passages):
                planner.plan(request.query.text, passages)
        except ValueError as error:
            raise ValueError(f"query {request.query.qid!r}: {error}") from None


def _byte_level_normalizer(tokenizer):
    """For a byte-level BPE tokenizer (GPT-2's family: Qwen, Llama 3, SmolLM2), whose every token
    holds at least one byte of the text it reads, the text as it reads it (after its own
    normaliser, which may lengthen it: NFC decomposes U+0958); None for any other tokenizer,
    which ``check_prompts_fit`` always plans."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "BPE" or "ByteLevel" not in repr(backend.pre_tokenizer):
        return None
    return backend.normalizer.normalize_str if backend.normalizer is not None else str


def _fits_by_bytes(planner, normalizer, query: str, passages: Sequence[str]) -> bool:
    """Whether every passage of ``query`` fits the context next to its prompt when each is
    counted at its bytes: a passage's piece (``prompt.passage_pieces``) is at most the bytes of
    `` " " + text + "\n"``, so ``plan_windows`` then gives each its window and cannot fail."""
    from headrank_ir.engine.windows import PASSAGE_MARGIN

    longest = max((len(normalizer(f" {normalise(p)}\n").encode()) for p in passages), default=0)
    return planner.prompt_overhead(query) + longest + PASSAGE_MARGIN <= planner.context_tokens


def preflight(
    model: str,
    profile: HeadProfile | None,
    requests: Sequence[Request],
    allow_profile_model_mismatch: bool = False,
    depth: int | None = None,
) -> None:
    """What would stop a run part-way, checked once before anything is loaded or written: the
    profile against ``model`` (its name, its layers and heads), that ``model`` resolves, every
    query and passage of ``requests``, and that every query's prompts (its top ``depth``
    candidates) fit the context, planned with the model's tokenizer (cheap: no weights load).
    ``profile`` None is ICR's, which fits every model."""
    from headrank_ir.engine.models import resolve_model_folder

    if profile is not None and not allow_profile_model_mismatch:
        check_profile_model(profile, [model])  # before resolving: a mismatch costs no time
    folder = resolve_model_folder(model)  # before the heavy import below: a wrong name fails at once
    from transformers import AutoConfig, AutoTokenizer

    from headrank_ir.engine.reader import context_tokens

    config = AutoConfig.from_pretrained(folder).get_text_config()
    if profile is not None:
        check_profile_fits(profile, [model], config, True)
    check_requests(requests, profile.prompt if profile else PromptSettings())
    planned = profile or HeadProfile.icr(model, config.num_hidden_layers, config.num_attention_heads)
    context = context_tokens(planned, config)
    check_prompts_fit(AutoTokenizer.from_pretrained(folder), planned, context, requests, depth)
