"""The engine's only crossings between host and device memory on the read path.

A GPU runs ahead of the host only while the host never waits for it: every blocking copy
(``torch.tensor(list, device=cuda)``, ``.tolist()``, ``.item()``, ``if tensor:``) drains the
queue. So a group of prompts crosses once on the way in (``upload``: every index it needs, one
pinned buffer, copied without blocking) and a batch's scores cross once on the way out
(``download``, after every group of the batch is queued). Tests count the calls.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch


def upload(parts: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    """The host tensors ``parts`` (int64) on ``device``, in one copy of one buffer (on CUDA from pinned
    memory, without blocking)."""
    flat = torch.cat([part.reshape(-1) for part in parts.values()])
    if device.type == "cuda":
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=device.type == "cuda")  # the CPU's: the same tensor
    out, start = {}, 0
    for name, part in parts.items():
        out[name] = flat[start : start + part.numel()].view(part.shape)
        start += part.numel()
    return out


def download(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """``tensors`` (float) on the host, in one copy: the one wait for the device per call."""
    if not tensors:
        return []
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors]).cpu()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view(t.shape))
        start += t.numel()
    return out
