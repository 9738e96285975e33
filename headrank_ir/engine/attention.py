"""Depth-truncated forward passes that read the query-span attention rows of selected heads.

The layers keep their fast SDPA attention. We register one attention implementation with
transformers that *is* SDPA and, while a ``RowRecorder`` is active, also computes the softmax
rows of the query-span tokens for the selected heads of that layer. It sees the exact query and
key states the layer uses (post-RoPE, post q/k-norm, with the cached keys), so the rows are the
layer's own; only ``heads × query tokens × T`` scores are formed, never a ``T × T`` map.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

IMPLEMENTATION = "headrank_sdpa"
_active = threading.local()


@dataclass
class RowRecorder:
    """Collects, per selected layer, the query-averaged attention of its selected heads.

    ``heads[layer]`` lists the head indices to read; ``query_span`` is the absolute token span
    of the query. After a pass, ``rows[layer]`` is a ``(len(heads[layer]), T)`` tensor: for each
    head, the attention each context token receives, averaged over the query tokens.
    """

    heads: Dict[int, List[int]]
    query_span: Tuple[int, int]
    rows: Optional[Dict[int, torch.Tensor]] = None

    def __post_init__(self):
        self.rows = {}

    def record(self, module, query: torch.Tensor, key: torch.Tensor) -> None:
        layer = module.layer_idx
        if layer not in self.heads:
            return
        offset = key.shape[2] - query.shape[2]  # absolute position of this chunk's first token
        start, end = self.query_span
        if start < offset or end > key.shape[2]:
            return  # the query is not in this chunk (e.g. the prefix pass)
        self.rows[layer] = query_rows(module, query, key, self.heads[layer], start - offset, end - offset)


def query_rows(module, query, key, heads: Sequence[int], start: int, end: int) -> torch.Tensor:
    """Query-averaged softmax rows of ``heads`` for chunk-local query tokens ``[start, end)``."""
    groups = query.shape[1] // key.shape[1]
    head_index = torch.as_tensor(heads, device=query.device)
    q = query[0, head_index, start:end].float()  # (h, n, d)
    k = key[0, head_index // groups].float()  # (h, T, d): GQA maps head h to kv head h // groups
    scores = torch.matmul(q, k.transpose(1, 2)) * module.scaling  # (h, n, T)
    positions = torch.arange(start, end, device=query.device) + (key.shape[2] - query.shape[2])
    future = torch.arange(key.shape[2], device=query.device)[None, :] > positions[:, None]
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1).mean(dim=1)


def _attention(module, query, key, value, attention_mask, **kwargs):
    recorder = getattr(_active, "recorder", None)
    if recorder is not None:
        recorder.record(module, query, key)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(IMPLEMENTATION, _attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)


@contextlib.contextmanager
def recording(recorder: RowRecorder):
    previous = getattr(_active, "recorder", None)
    _active.recorder = recorder
    try:
        yield recorder
    finally:
        _active.recorder = previous


class TruncatedModel:
    """The first ``depth`` decoder layers of a causal LM: no later layer, no LM head.

    Shares the parameters of ``model`` (no copy); the model's attention implementation is
    switched to ours, which behaves as plain SDPA outside ``recording``.
    """

    def __init__(self, model, depth: int):
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        total = len(base.layers)
        if not 1 <= depth <= total:
            raise ValueError(f"truncation depth {depth} is outside the model's 1..{total} layers")
        model.set_attn_implementation(IMPLEMENTATION)
        config = copy.deepcopy(base.config)
        config.num_hidden_layers = depth
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:depth]
        self.base = copy.copy(base)  # shallow: same modules, own config and layer list
        self.base._modules = dict(base._modules)  # else setting .layers would cut the model itself
        self.base.config = config
        self.base.layers = base.layers[:depth]
        self.depth = depth
        self.config = config

    def new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.config)

    def forward(self, input_ids: Sequence[int], cache=None, recorder: Optional[RowRecorder] = None):
        """Run ``input_ids`` on top of ``cache`` (extended in place; None: no cache kept)."""
        ids = torch.as_tensor([list(input_ids)], device=self.base.embed_tokens.weight.device)
        with recording(recorder):
            return self.base(input_ids=ids, cache=cache, use_cache=cache is not None).last_hidden_state


def rewind(cache, length: int) -> None:
    """Drop every cached token after the first ``length`` (to reuse a shared prefix)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)
    if cache.get_seq_length() != length:
        raise RuntimeError(f"cache rewind to {length} tokens left {cache.get_seq_length()}")
