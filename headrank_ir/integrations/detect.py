"""Whether an object is one of a peer's own: read from ``sys.modules``, importing nothing (an
object can only be rank_llm's or rerankers' if its caller has imported that module)."""

from __future__ import annotations

import sys
from typing import Any


def _of(module: str, names: tuple[str, ...], obj: Any) -> bool:
    found = sys.modules.get(module)
    return found is not None and isinstance(obj, tuple(getattr(found, name) for name in names))


def is_rank_llm(request: Any) -> bool:
    """One of rank_llm's own ``Request``/``Result`` objects (``rank_llm.data``)."""
    return _of("rank_llm.data", ("Request", "Result"), request)


def is_rerankers_document(doc: Any) -> bool:
    """One of rerankers' own ``Document`` objects (``rerankers.documents``)."""
    return _of("rerankers.documents", ("Document",), doc)
