"""HeadRank inside its peers' own code: rank_llm (``integrations.rank_llm``) and rerankers
(``integrations.rerankers_results``; the rerankers ``BaseRanker`` built on the engine is
``headrank_ir.rerankers_ranker``, above the engine, as this package sits below it).

One rule for both: a caller who passes a peer's own objects gets that peer's own objects back
(rank_llm's ``Result``, rerankers' ``RankedResults``), with the ids and types it gave, so the
peer's next stage and writers take them as they take their own. Plain inputs (strings, this
package's records) give this package's frozen records. Importing this package is free; each
module imports its peer only where it needs it.
"""
