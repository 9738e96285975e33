"""The deepest layer of a recorded pass, cut to what the recorder reads: its queries and keys.

Nothing reads the deepest layer's output: the recorder takes the attention rows of its selected
heads, which depend on the layer's query and key states alone. So that layer runs its input norm,
its q/k projections (and Qwen3's q/k norms), RoPE and the cache update of its keys, hands them
to the recorder as the attention implementation would, and passes its input through: no value
or output projection, no attention over every head, no MLP. The projections are called as
modules, so LoRA factors injected into them (training) still receive gradients.

The values it caches are zero wide (``DynamicLayer`` concatenates them like any others): a
cache filled this way serves further recorded passes (the calibration pass reads the prefix's
keys), never a full one.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import torch

# Families whose decoder layer is exactly: input norm, attention (q/k_proj, optional per-head
# q/k norm, the module's own apply_rotary_pos_emb), residual, MLP. Others keep the full layer.
KEY_ONLY_FAMILIES = frozenset({"llama", "qwen2", "qwen3"})

Record = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], None]


class KeyOnlyLayer(torch.nn.Module):
    """Stands in for ``layer`` (a decoder layer) at the end of a truncated layer list; shares
    its parameters. ``record(attention, query, key, mask)`` receives what the layer's attention
    implementation would have been called with (keys after the cache update)."""

    def __init__(self, layer: torch.nn.Module, record: Record):
        super().__init__()
        self.layer = layer
        self._record = record
        self._rotary = sys.modules[type(layer.self_attn).__module__].apply_rotary_pos_emb

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, cache=None, **_):
        attention = self.layer.self_attn
        normed = self.layer.input_layernorm(hidden_states)
        query = head_states(attention.q_proj, getattr(attention, "q_norm", None), normed, attention.head_dim)
        key = head_states(attention.k_proj, getattr(attention, "k_norm", None), normed, attention.head_dim)
        query, key = self._rotary(query, key, *position_embeddings)
        if cache is not None:
            key, _ = cache.update(key, key.new_empty(*key.shape[:-1], 0), attention.layer_idx)
        self._record(attention, query, key, attention_mask)
        return hidden_states


def head_states(projection, norm, hidden_states: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(rows, heads, tokens, head_dim)`` as the attention module forms them before RoPE."""
    states = projection(hidden_states).view(*hidden_states.shape[:-1], -1, head_dim)
    return (states if norm is None else norm(states)).transpose(1, 2)


def cached_value_width(cache, layer: int) -> Optional[int]:
    """The width of the values ``cache`` holds for ``layer``: None when it holds nothing, 0 when
    a key-only layer filled it, the head size when a full layer did."""
    layers = getattr(cache, "layers", ())
    if layer >= len(layers) or not layers[layer].is_initialized or layers[layer].keys.numel() == 0:
        return None
    return layers[layer].values.shape[-1]
