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
from dataclasses import dataclass, field
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

    ``heads[layer]`` lists the head indices to read; ``query_spans[b]`` is the absolute token
    span of the query in batch row ``b``. After a pass, ``rows[layer]`` is a ``(rows,
    len(heads[layer]), T)`` tensor: for each row and head, the attention each context token
    receives, averaged over that row's query tokens, under the layer's own mask (causal, or the
    4D mask the pass was given).
    """

    heads: Dict[int, List[int]]
    query_spans: Sequence[Tuple[int, int]]
    rows: Dict[int, torch.Tensor] = field(default_factory=dict)

    def record(self, module, query: torch.Tensor, key: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        layer = module.layer_idx
        if layer not in self.heads:
            return
        offset = key.shape[2] - query.shape[2]  # absolute position of this chunk's first token
        if any(start < offset or end > key.shape[2] for start, end in self.query_spans):
            return  # the query is not in this chunk (e.g. the prefix pass)
        heads = self.heads[layer]
        self.rows[layer] = torch.stack(
            [
                query_rows(module, query[b], key[b], heads, start - offset, end - offset, _row_mask(mask, b))
                for b, (start, end) in enumerate(self.query_spans)
            ]
        )


def _row_mask(mask: Optional[torch.Tensor], row: int) -> Optional[torch.Tensor]:
    """Batch row ``row`` of a layer's 4D mask as ``(queries, keys)`` booleans, True = may attend."""
    if mask is None:
        return None
    mask = mask[row if mask.shape[0] > 1 else 0, 0]
    return mask if mask.dtype == torch.bool else mask == 0  # additive masks: 0 where allowed


def query_rows(module, query, key, heads: Sequence[int], start: int, end: int, allowed=None) -> torch.Tensor:
    """Query-averaged softmax rows of ``heads`` for chunk-local query tokens ``[start, end)`` of one
    batch row (``query``: heads × chunk × d, ``key``: kv heads × T × d). ``allowed``: the layer's
    ``(chunk, T)`` mask; None means causal."""
    groups = query.shape[0] // key.shape[0]
    head_index = torch.as_tensor(heads, device=query.device)
    q = query[head_index, start:end].float()  # (h, n, d)
    k = key[head_index // groups].float()  # (h, T, d): GQA maps head h to kv head h // groups
    scores = torch.matmul(q, k.transpose(1, 2)) * module.scaling  # (h, n, T)
    if allowed is None:
        positions = torch.arange(start, end, device=query.device) + (key.shape[1] - query.shape[1])
        blocked = torch.arange(key.shape[1], device=query.device)[None, :] > positions[:, None]
    else:
        blocked = ~allowed[start:end, : key.shape[1]]
    scores = scores.masked_fill(blocked, float("-inf"))
    return torch.softmax(scores, dim=-1).mean(dim=1)


def _attention(module, query, key, value, attention_mask, **kwargs):
    recorder = getattr(_active, "recorder", None)
    if recorder is not None:
        recorder.record(module, query, key, attention_mask)
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

    @property
    def device(self) -> torch.device:
        return self.base.embed_tokens.weight.device

    def forward(
        self,
        input_ids,
        cache=None,
        recorder: Optional[RowRecorder] = None,
        position_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
    ):
        """Run ``input_ids`` (one sequence, or a ``(rows, tokens)`` tensor) on top of ``cache``
        (extended in place; None: no cache kept). Without ``attention_mask`` the pass is causal,
        so right padding never reaches a real token."""
        ids = torch.as_tensor(input_ids, device=self.device)
        ids = ids[None] if ids.dim() == 1 else ids
        with recording(recorder):
            return self.base(
                input_ids=ids,
                cache=cache,
                use_cache=cache is not None,
                position_ids=position_ids,
                attention_mask=attention_mask,
            ).last_hidden_state
