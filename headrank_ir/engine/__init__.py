"""The engine: one query and its passages in, per-head attention scores out.

- ``models``: loading a causal LM by short name, folder or Hugging Face id.
- ``profile``: which heads, with which weights, and the prompt settings (a small JSON file);
  ``resolve_profile``: a model's shipped profile (``headrank_ir/profiles/*.json``, data only), ICR's or a file.
- ``adapter``: the profile's optional LoRA adapter on the q/k projections.
- ``prompt``: the listwise prompt and every passage's token span in it.
- ``attention``: the forward truncated at the deepest selected layer, recording the query rows.
- ``windows``: passages split into windows that fit, merged back; prompts grouped into padded batches.
- ``reader``: ``HeadReader``, the engine core: plan, read (shared forwards), calibrate, merge.
- ``ranker``: ``HeadRanker``, a thin facade with the public verbs (``rank``, ``rerank_batch``) over the reader.
"""
