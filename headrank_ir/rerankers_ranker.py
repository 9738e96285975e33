"""HeadRank as one of rerankers' own rankers: :class:`HeadRankRanker` is a rerankers
``BaseRanker`` whose ``rank`` returns rerankers' ``RankedResults`` of its ``Result`` and
``Document`` objects, so rerankers' code (``rank_async``, its LangChain compressor, whatever
reads its results, metadata keys as attributes included) takes it as it takes its own.

>>> from headrank_ir.rerankers_ranker import HeadRankRanker
>>> ranker = HeadRankRanker("smollm2-135m")  # or HeadRankRanker(an_existing_HeadRanker)
>>> ranker.rank("what is a lobster roll", ["passage one ...", "passage two ..."]).top_k(1)

This module imports rerankers (0.10.0 is what the tests run against); its results are made by
:func:`~headrank_ir.integrations.rerankers_results.to_rerankers`, as ``HeadRanker.rank``'s are
when it is given rerankers' ``Document`` objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Union

from headrank_ir.integrations.rerankers_results import to_rerankers

try:
    from rerankers.documents import Document
    from rerankers.models.ranker import BaseRanker
    from rerankers.results import RankedResults
except ImportError as error:  # only a missing rerankers is caught: its own bugs stay visible
    raise ImportError(f"rerankers is not installed ({error}): pip install rerankers==0.10.0") from error

if TYPE_CHECKING:
    from headrank_ir.engine.ranker import HeadRanker

__all__ = ["HeadRankRanker"]


class HeadRankRanker(BaseRanker):
    """A ``HeadRanker`` behind rerankers' ``BaseRanker`` interface.

    ``model_name_or_path`` is what ``HeadRanker.from_pretrained`` takes (a short name, a folder,
    a Hugging Face id), or a ``HeadRanker`` already loaded; ``profile``, ``device``, ``dtype`` and
    ``batch_tokens`` go to ``from_pretrained``. ``rank`` takes rerankers' input forms (one text, a
    list of texts, one ``Document`` or a list of them) and reads the documents in the given order
    as the first stage's, best first (see ``HeadRanker.rank``).
    """

    def __init__(
        self,
        model_name_or_path: Union[str, HeadRanker] = "smollm2-135m",
        verbose: int = 0,
        profile: Any = None,
        device: Optional[str] = None,
        dtype: Any = None,
        batch_tokens: Optional[int] = None,
    ):
        from headrank_ir.engine.ranker import HeadRanker

        if isinstance(model_name_or_path, HeadRanker):
            self.ranker = model_name_or_path
        else:
            self.ranker = HeadRanker.from_pretrained(
                model_name_or_path, profile=profile, device=device, dtype=dtype, batch_tokens=batch_tokens
            )
        self.verbose = verbose

    def rank(
        self,
        query: str,
        docs: Union[str, List[str], Document, List[Document]],
        doc_ids: Optional[Union[List[str], List[int]]] = None,
        metadata: Optional[List[dict]] = None,
    ) -> RankedResults:
        """``docs`` ranked for ``query`` in rerankers' ``RankedResults`` (best first, ranks from 1)."""
        return to_rerankers(self.ranker.rank(query, docs, doc_ids=doc_ids, metadata=metadata))

    def score(self, query: str, doc: str) -> float:
        """``doc``'s score read alone. HeadRank is listwise: a score compares with the others of one
        ``rank`` call, not with a score read in another call."""
        return self.ranker.score(query, [doc])[0]

    def as_langchain_compressor(self, k: int = 10):
        """rerankers' own LangChain compressor over this ranker; raises (rather than printing and
        returning ``None``, as ``BaseRanker`` does) when langchain is missing."""
        try:
            from rerankers.integrations.langchain import RerankerLangChainCompressor
        except ImportError as error:
            raise ImportError(
                f"rerankers' LangChain compressor needs langchain ({error}): pip install 'rerankers[langchain]'"
            ) from error
        return RerankerLangChainCompressor(model=self, k=k)

    def __repr__(self) -> str:
        return f"HeadRankRanker({self.ranker.get_name()!r}, profile={self.ranker.profile.label()!r})"
