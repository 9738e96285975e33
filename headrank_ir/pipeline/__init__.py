"""Pipeline I/O around the engine, in the order data flows through a run.

- ``names``: Pyserini's names and our short aliases for indexes, topics and qrels.
- ``readers``: topics, qrels, TREC runs and corpora from files, validated line by line.
- ``firststage``: BM25 through Pyserini, or a given run and corpus, as ``Request`` records.
- ``jvm``: the Java 21 set-up Pyserini needs, before its first import.
- ``execution``: a run's pending queries in batches, ranked here or on Ray, written as they come.
- ``distributed``: batches ranked by a pool of Ray actors (``rerank --ray``).
- ``runfile``: every run file written — TREC and rank_llm JSONL, resumably; its header.
- ``journal``: the journal and lock beside a run file, and the checks that trust it.
- ``index``: a Lucene index built from a corpus (``python -m headrank_ir.index``).
"""
