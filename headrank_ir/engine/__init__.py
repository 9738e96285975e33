"""The engine: one query and its passages in, per-head attention scores out.

- ``models``: loading a causal LM by short name, folder or Hugging Face id.
- ``profile``: which heads, with which weights, and the prompt settings (a small JSON file).
- ``adapter``: the profile's optional LoRA adapter on the q/k projections.
- ``prompt``: the listwise prompt and every passage's token span in it.
- ``attention``: the forward truncated at the deepest selected layer, recording the query rows.
- ``ranker``: ``HeadRanker``, the public verbs (``rank``, ``rerank_batch``) on top of the above.
"""
