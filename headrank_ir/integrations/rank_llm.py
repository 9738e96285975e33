"""rank_llm's own records in and out of ``HeadRanker.rerank_batch``, and rank_llm's reranker
module importable where vllm is not installed.

rank_llm's records are mutable dataclasses that its stages change in place (``receive_permutation``
and ``shuffle_and_rescore`` assign ``candidate.score``); this package's are frozen. So a request
in rank_llm's classes gets its result in rank_llm's classes (:func:`as_rank_llm`): new objects,
the caller's ``qid`` and docids as given (an int stays an int), the caller's ``doc`` dicts copied,
as rank_llm's own coordinators copy them. :func:`to_rank_llm` converts this package's results for
a rank_llm stage that comes next.

Nothing here imports rank_llm at module level; an object can only be rank_llm's if the caller
has imported ``rank_llm.data``, so detection reads ``sys.modules`` and imports nothing.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from headrank_ir.integrations.detect import is_rank_llm
from headrank_ir.records import Result

__all__ = ["as_rank_llm", "import_rank_llm", "is_rank_llm", "to_rank_llm"]

INSTALL = "pip install rank_llm==0.25.7 --no-deps (and dacite; tools/install.sh shows the set the tests use)"


def _data() -> types.ModuleType:
    try:
        return importlib.import_module("rank_llm.data")
    except ImportError as error:
        raise ImportError(f"rank_llm is not installed ({error}): {INSTALL}") from error


def as_rank_llm(given: Any, ours: Result) -> Any:
    """``ours``, the result of rank_llm's request ``given``, in rank_llm's classes: ``given``'s
    query and candidates (ids and ``doc`` as given, copied) in ``ours``' order with its scores."""
    data = _data()
    pool: dict[str, list[Any]] = {}
    for candidate in given.candidates:
        pool.setdefault(str(candidate.docid), []).append(candidate)
    candidates = []
    for candidate in ours.candidates:
        same = pool[str(candidate.docid)]  # more than one only when a docid repeats: match the doc too
        index = next((i for i, c in enumerate(same) if len(same) == 1 or dict(c.doc) == candidate.doc), 0)
        original = same.pop(index)
        candidates.append(data.Candidate(original.docid, candidate.score, copy.deepcopy(original.doc)))
    return data.Result(copy.deepcopy(given.query), candidates, list(ours.invocations_history))


def to_rank_llm(results: Sequence[Result]) -> list[Any]:
    """This package's results (or requests) as rank_llm's ``Result`` objects, for a rank_llm stage
    or writer that changes them in place."""
    data = _data()
    return [
        data.Result(
            data.Query(r.query.text, r.query.qid),
            [data.Candidate(c.docid, c.score, copy.deepcopy(c.doc)) for c in r.candidates],
            list(getattr(r, "invocations_history", [])),
        )
        for r in results
    ]


def _stubs() -> dict[str, types.ModuleType]:
    """The two modules rank_llm 0.25.7's reranker module imports that a machine without vllm, or
    with transformers 5, cannot: ``vllm`` (its GPU engine) and ``rank_llm.rerank.listwise.rank_fid``
    (LiT5's T5 code imports ``find_pruneable_heads_and_indices``, which transformers 5 removed)."""
    stubs: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("vllm") is None:
        vllm = types.ModuleType("vllm")
        vllm.__path__ = []  # a package: rank_llm also imports vllm.outputs
        outputs = types.ModuleType("vllm.outputs")
        vllm.outputs = outputs
        vllm.LLM = type("LLM", (), {})
        vllm.RequestOutput = outputs.RequestOutput = type("RequestOutput", (), {})
        stubs.update({"vllm": vllm, "vllm.outputs": outputs})
    import transformers.modeling_utils as modeling_utils

    if not hasattr(modeling_utils, "find_pruneable_heads_and_indices"):
        fid = types.ModuleType("rank_llm.rerank.listwise.rank_fid")
        fid.RankFiDDistill = type("RankFiDDistill", (), {})
        fid.RankFiDScore = type("RankFiDScore", (), {})
        stubs["rank_llm.rerank.listwise.rank_fid"] = fid
    return stubs


@contextmanager
def _present(stubs: dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_rank_llm() -> types.ModuleType:
    """``rank_llm.rerank`` (its ``Reranker``, ``IdentityReranker``, the listwise coordinators),
    imported where vllm is missing or transformers is 5.x: the two modules those break are stubbed
    for the import only and removed from ``sys.modules`` after it, so nothing else sees them. What
    they stand for stays unusable (vLLM-backed coordinators, LiT5/FiD); everything else is
    rank_llm's own code. Where both import for real, this is a plain import."""
    if "rank_llm.rerank" in sys.modules:
        return sys.modules["rank_llm.rerank"]
    if importlib.util.find_spec("rank_llm") is None:
        raise ImportError(f"rank_llm is not installed: {INSTALL}")
    with _present(_stubs()):
        return importlib.import_module("rank_llm.rerank")
