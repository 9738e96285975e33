"""HeadRank: rerank first-stage results with the attention of a few heads of a causal LM.

Importing the package is cheap: torch, transformers and Pyserini load in the modules that use
them. ``from headrank_ir import HeadRanker`` loads the engine on first access.
"""

from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.records import Candidate, Document, Query, RankedResults, Request, Result, ScoredDocument

__version__ = "0.1.0"

__all__ = [
    "HeadRanker",
    "HeadProfile",
    "PromptSettings",
    "Candidate",
    "Query",
    "Request",
    "Result",
    "Document",
    "ScoredDocument",
    "RankedResults",
]


def __getattr__(name):
    if name == "HeadRanker":
        from headrank_ir.engine.ranker import HeadRanker

        return HeadRanker
    raise AttributeError(f"module 'headrank_ir' has no attribute {name!r}")
