"""Depth-truncated forward passes that read the query-span attention rows of selected heads.

The layers keep their fast SDPA attention. We register one attention implementation with
transformers that *is* SDPA and, while a ``RowRecorder`` is active, also computes the softmax
rows of the query-span tokens for the selected heads of that layer. It sees the exact query and
key states the layer uses (post-RoPE, post q/k-norm, with the cached keys), so the rows are the
layer's own; only ``heads × query tokens × T`` scores are formed, never a ``T × T`` map. The
deepest layer of a recorded pass, whose output nothing reads, computes only its queries and keys
(``keyonly.KeyOnlyLayer``).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from headrank_ir.engine.keyonly import KEY_ONLY_FAMILIES, KeyOnlyLayer, cached_value_width

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

    ``spans`` (the query spans as a ``(rows, 2)`` tensor on the model's device) and
    ``selections`` (``head_selection`` per layer) let a caller hand over what it already has on
    the device, so that recording copies nothing from the host (``HeadReader`` does); left out,
    they are made from ``query_spans`` and ``heads`` on the first layer.
    """

    heads: Dict[int, List[int]]
    query_spans: Sequence[Tuple[int, int]]
    spans: Optional[torch.Tensor] = None
    selections: Optional[Dict[int, HeadSelection]] = None
    rows: Dict[int, torch.Tensor] = field(default_factory=dict)

    def record(self, module, query: torch.Tensor, key: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        layer = module.layer_idx
        if layer not in self.heads:
            return
        offset = key.shape[2] - query.shape[2]  # absolute position of this chunk's first token
        if any(start < offset or end > key.shape[2] for start, end in self.query_spans):
            return  # the query is not in this chunk (e.g. the prefix pass)
        if self.spans is None:
            self.spans = torch.tensor([list(span) for span in self.query_spans], device=key.device)
        if self.selections is None:
            self.selections = {}
        if layer not in self.selections:
            self.selections[layer] = head_selection(self.heads[layer], query.shape[1], key.shape[1], key.device)
        longest = max(end - start for start, end in self.query_spans)
        local = self.spans - offset
        step = max(1, FLOAT_KEYS_BYTES // (key[0].numel() * 4))  # rows whose float32 keys fit at once
        parts = []
        for i in range(0, len(self.query_spans), step):
            rows = slice(i, i + step)
            mask_rows = None if mask is None else mask[rows] if mask.shape[0] > 1 else mask
            selection = self.selections[layer]
            parts.append(query_rows(module, query[rows], key[rows], selection, local[rows], longest, mask_rows))
        self.rows[layer] = torch.cat(parts)


@dataclass(frozen=True)
class Recorders:
    """Several ``RowRecorder`` fed by one pass, each reading its own query spans of the same
    layers (the folded calibration: a row's query and its calibration query)."""

    parts: Sequence[RowRecorder]

    def record(self, module, query: torch.Tensor, key: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        for part in self.parts:
            part.record(module, query, key, mask)


FLOAT_KEYS_BYTES = 1 << 28  # bounds the float32 copy of the keys that the rows are computed from


@dataclass(frozen=True)
class HeadSelection:
    """Which query heads of a layer to read, as index tensors on the device: ``used`` the kv
    heads they read, ``pick`` each selected head's place among the heads of ``used``."""

    used: torch.Tensor
    pick: torch.Tensor


def head_selection(heads: Sequence[int], query_heads: int, kv_heads: int, device) -> HeadSelection:
    """GQA: query heads g * groups .. (g + 1) * groups - 1 read kv head g. Only the kv heads the
    selected heads read are used; their query heads are grouped with them for one matmul."""
    groups = query_heads // kv_heads
    used = sorted({h // groups for h in heads})
    pick = [used.index(h // groups) * groups + h % groups for h in heads]
    return HeadSelection(torch.tensor(used, device=device), torch.tensor(pick, device=device))


def query_rows(module, query, key, selection: HeadSelection, spans: torch.Tensor, longest: int, mask=None):
    """``(rows, selected heads, T)``: per batch row, the softmax rows of the selected heads
    averaged over its chunk-local query tokens ``spans[row]`` (a ``(rows, 2)`` tensor; the
    longest span is ``longest`` tokens). ``query``: rows × heads × chunk × d, ``key``: rows ×
    kv heads × T × d; ``mask``: the layer's 4D mask (True or 0 where allowed) over the chunk's
    last tokens (all of them, or the calibration tails of a folded pass), None for causal."""
    rows, heads_all, chunk, dim = query.shape
    kv, total = key.shape[1], key.shape[2]
    groups = heads_all // kv
    used = selection.used
    device = query.device
    steps = torch.arange(longest, device=device)
    starts, lengths = spans[:, 0], spans[:, 1] - spans[:, 0]
    # (rows, n) chunk positions of each row's query tokens; a shorter query repeats its last token
    index = torch.minimum(starts[:, None] + steps[None, :], (starts + lengths - 1)[:, None])
    q = query.gather(2, index[:, None, :, None].expand(-1, heads_all, -1, dim))
    q = q.view(rows, kv, -1, dim)[:, used].float()  # (rows, used kv heads, groups × n, d)
    scores = torch.matmul(q, key[:, used].float().transpose(2, 3)) * module.scaling
    scores = scores.view(rows, len(used) * groups, -1, total)[:, selection.pick]  # (rows, heads, n, T)
    allowed = torch.arange(total, device=device)[None, None, :] <= (index + (total - chunk))[:, :, None]
    if mask is not None:  # it covers the chunk's last mask rows; the tokens before them are causal
        mask = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0  # additive masks: 0 where allowed
        first = chunk - mask.shape[-2]
        row = (index - first).clamp(min=0)[:, :, None]
        given = mask.expand(rows, -1, -1).gather(1, row.expand(-1, -1, mask.shape[-1]))[..., :total]
        allowed = torch.where((index >= first)[:, :, None], given, allowed)
    probabilities = torch.softmax(scores.masked_fill(~allowed[:, None], float("-inf")), dim=-1)
    real = (steps[None, :] < lengths[:, None]).to(probabilities.dtype)  # (rows, n): 0 for the repeats
    return torch.einsum("rhnt,rn->rht", probabilities, real) / lengths[:, None, None]


def record_active(module, query: torch.Tensor, key: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
    """Hands a layer's query and key states to the active recorder, if any (``recording``)."""
    recorder = getattr(_active, "recorder", None)
    if recorder is not None:
        recorder.record(module, query, key, mask)


def _attention(module, query, key, value, attention_mask, **kwargs):
    record_active(module, query, key, attention_mask)
    if attention_mask is not None and attention_mask.shape[-2] < query.shape[2]:
        return _folded_attention(module, query, key, value, attention_mask, **kwargs)
    return _sdpa(module, query, key, value, attention_mask, **kwargs)


def _folded_attention(module, query, key, value, tail_mask, **kwargs):
    """A 4-D mask over fewer tokens than the query covers its last tokens (calibration tails read
    in their prompts' forward); the tokens before them are causal among themselves. So the
    prompts keep the causal kernel (flash where the device has it) and no ``T × T`` mask exists:
    the tails attend in a second, small SDPA call under their own ``tails × T`` mask."""
    width = query.shape[2] - tail_mask.shape[-2]
    head, _ = _sdpa(module, query[:, :, :width], key[:, :, :width], value[:, :, :width], None, **kwargs)
    return torch.cat([head, _grouped_masked(query[:, :, width:], key, value, tail_mask, **kwargs)], dim=1), None


def _grouped_masked(query, key, value, mask, dropout: float = 0.0, scaling=None, **_):
    """``(rows, tokens, heads, d)`` SDPA under ``mask`` with each kv head's query heads packed
    into the query length (query head ``g × groups + j`` reads kv head ``g``), so K/V are read
    as they are, never repeated per query head as transformers does for a masked SDPA."""
    rows, heads, tokens, dim = query.shape
    groups = heads // key.shape[1]
    packed = query.reshape(rows, key.shape[1], groups * tokens, dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=mask.repeat(1, 1, groups, 1), dropout_p=dropout, scale=scaling
    )
    return out.reshape(rows, heads, tokens, dim).transpose(1, 2)


def _sdpa(module, query, key, value, attention_mask, **kwargs):
    if needs_ungrouped(query, key):
        groups = query.shape[1] // key.shape[1]
        module, key, value = _Ungrouped(module), repeat_kv(key, groups), repeat_kv(value, groups)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def needs_ungrouped(query: torch.Tensor, key: torch.Tensor) -> bool:
    """float32 on CUDA has no flash kernel, and the memory-efficient one takes no grouped K/V
    (``enable_gqa``): SDPA would fall to the math kernel, which builds rows × heads × T × T
    scores per layer (tens of GB at 100 passages). With K/V repeated to every query head the
    memory-efficient kernel serves the pass."""
    return query.is_cuda and query.dtype == torch.float32 and key.shape[1] != query.shape[1]


class _Ungrouped:
    """A layer's attention module as SDPA sees it once its K/V are repeated: no groups left."""

    num_key_value_groups = 1

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)


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
    switched to ours, which behaves as plain SDPA outside ``recording``. ``base`` runs those
    layers whole (the real hidden states); ``reading``, which recorded passes use, ends in a
    ``KeyOnlyLayer`` instead of the deepest layer, whose output no recorder reads (for families
    outside ``KEY_ONLY_FAMILIES`` it is ``base``).
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
        self.base = with_layers(base, base.layers[:depth])
        self.base.config = config
        self.reading = self.base
        if config.model_type in KEY_ONLY_FAMILIES:
            self.reading = with_layers(
                self.base, [*base.layers[: depth - 1], KeyOnlyLayer(base.layers[depth - 1], record_active)]
            )
            self.reading.norm = torch.nn.Identity()  # its input is the deepest layer's, which nothing reads
        self.depth = depth
        self.config = config

    def new_cache(self):
        """A cache whose every layer keeps every key. Not ``DynamicCache(config=...)``: that keeps
        a sliding-window layer's last ``window - 1`` keys only, and a second pass (the calibration
        tails) reads the whole prompt before it, which may be ``window`` tokens long."""
        from transformers import DynamicCache

        return DynamicCache()

    @property
    def device(self) -> torch.device:
        return self.base.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.embed_tokens.weight.dtype

    def forward(
        self,
        input_ids,
        cache=None,
        recorder: Optional[RowRecorder] = None,
        position_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> Optional[torch.Tensor]:
        """Run ``input_ids`` (one sequence, or a ``(rows, tokens)`` tensor) on top of ``cache``
        (extended in place; None: none kept after the pass). Without ``attention_mask`` the pass is causal,
        so right padding never reaches a real token.

        Without a recorder: the last hidden state of the full layers. With one: None, the rows
        are in ``recorder.rows``; the deepest layer computes only its queries and keys, unless
        ``cache`` already holds that layer's values (a full pass filled it), which it keeps whole.
        """
        ids = torch.as_tensor(input_ids, device=self.device)
        ids = ids[None] if ids.dim() == 1 else ids
        # A throwaway cache where none is kept: without one, transformers looks for packed
        # sequences in the position ids on the host, a device sync in every forward.
        cache = self.new_cache() if cache is None else cache
        width = cached_value_width(cache, self.depth - 1)
        if recorder is None and width == 0:
            raise ValueError(
                "this cache holds only keys at the deepest layer (a recorded pass filled it); "
                "only recorded passes can extend it"
            )
        decoder = self.base if recorder is None or width else self.reading
        with recording(recorder):
            output = decoder(
                input_ids=ids,
                cache=cache,
                use_cache=True,
                position_ids=position_ids,
                attention_mask=attention_mask,
            )
        return output.last_hidden_state if recorder is None else None


def attention_window(config, depth: int) -> Optional[int]:
    """The sliding window of the model's first ``depth`` layers when any of them has one (None:
    every one attends to the whole context), read as transformers reads a config: ``layer_types``
    where given (Qwen2's ``use_sliding_window``), else ``sliding_window`` is every layer's (Mistral)."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None) or ["sliding_attention"] * depth
    return window if window is not None and "sliding_attention" in types[:depth] else None


def with_layers(decoder, layers):
    """A shallow copy of ``decoder`` (same modules, same parameters) running ``layers`` instead
    of its own; ``decoder`` keeps its layer list."""
    twin = copy.copy(decoder)
    twin._modules = dict(decoder._modules)  # else setting .layers would cut the model itself
    twin.layers = torch.nn.ModuleList(layers)
    return twin
