"""Head profiles: which attention heads score relevance, with what weight, under which prompt.

A profile is a small JSON file. Without a trained one, ``HeadProfile.icr(model_id, layers,
heads)`` is ICR's choice: every head of every layer, equal weights, N/A calibration.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Tuple, Union

PROFILE_VERSION = 1


@dataclass(frozen=True)
class PromptSettings:
    """How passages and the query are laid out in the listwise prompt."""

    max_passage_tokens: int = 128  # each passage is cut to this many tokens
    passage_order: str = "reverse"  # "reverse": best first-stage passage next to the query
    calibrate: bool = True  # subtract the attention of ICR's content-free query
    calibration_query: str = "N/A"
    use_chat_template: bool = True  # plain template when the tokenizer has none
    max_context_tokens: Optional[int] = None  # None: the model's max_position_embeddings

    def __post_init__(self):
        if self.passage_order not in ("reverse", "forward"):
            raise ValueError(f"passage_order must be 'reverse' or 'forward', got {self.passage_order!r}")
        if self.max_passage_tokens < 1:
            raise ValueError(f"max_passage_tokens must be positive, got {self.max_passage_tokens}")


@dataclass(frozen=True)
class HeadProfile:
    """Selected heads as ``(layer, head, weight)``; layers count from 0."""

    model: str
    heads: Tuple[Tuple[int, int, float], ...]
    prompt: PromptSettings = field(default_factory=PromptSettings)
    adapter: Optional[str] = None  # safetensors file of trained LoRA weights, relative to the JSON
    meta: dict = field(default_factory=dict)  # free-form: how it was made

    def __post_init__(self):
        if not self.heads:
            raise ValueError("a head profile needs at least one (layer, head, weight)")
        object.__setattr__(self, "heads", tuple((int(l), int(h), float(w)) for l, h, w in self.heads))

    @property
    def depth(self) -> int:
        """Layers to run: up to and including the deepest selected layer."""
        return max(layer for layer, _, _ in self.heads) + 1

    def label(self) -> str:
        """A short name for file names: how it was made, head count and depth (``icr-270h-d30``)."""
        return f"{self.meta.get('method', 'profile')}-{len(self.heads)}h-d{self.depth}"

    @classmethod
    def icr(cls, model: str, num_layers: int, num_heads: int, **prompt) -> HeadProfile:
        weight = 1.0 / (num_layers * num_heads)
        heads = tuple((l, h, weight) for l in range(num_layers) for h in range(num_heads))
        return cls(model=model, heads=heads, prompt=PromptSettings(**prompt), meta={"method": "icr"})

    def with_prompt(self, **changes) -> HeadProfile:
        return replace(self, prompt=replace(self.prompt, **changes))

    def to_json(self) -> dict:
        data = asdict(self)
        data["heads"] = [list(h) for h in self.heads]
        data["version"] = PROFILE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict) -> HeadProfile:
        data = dict(data)
        version = data.pop("version", PROFILE_VERSION)
        if version != PROFILE_VERSION:
            raise ValueError(f"profile version {version} is not supported (this package reads {PROFILE_VERSION})")
        prompt = PromptSettings(**data.pop("prompt", {}))
        return cls(prompt=prompt, heads=tuple(tuple(h) for h in data.pop("heads")), **data)

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
            json.dump(self.to_json(), out, indent=1)
        os.replace(out.name, path)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> HeadProfile:
        path = Path(path)
        if path.is_dir():
            path = path / "profile.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"profile file {path} does not exist") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"profile file {path} is not valid JSON: {err}") from None
        profile = cls.from_json(data)
        if profile.adapter and not Path(profile.adapter).is_absolute():
            profile = replace(profile, adapter=str(path.parent / profile.adapter))
        return profile

    def heads_by_layer(self) -> List[Tuple[int, List[int], List[float]]]:
        """``[(layer, [heads], [weights])]`` in layer order."""
        layers: dict = {}
        for layer, head, weight in self.heads:
            layers.setdefault(layer, ([], []))
            layers[layer][0].append(head)
            layers[layer][1].append(weight)
        return [(layer, *layers[layer]) for layer in sorted(layers)]


def head_label(layer: int, head: int) -> str:
    """A head as the bench's records and plots name it: ``"layer.head"``, e.g. ``"12.3"``."""
    return f"{layer}.{head}"


def parse_head_label(label: str) -> Tuple[int, int]:
    """``"12.3"`` → ``(12, 3)``; the inverse of :func:`head_label`."""
    layer, dot, head = label.partition(".")
    if not (dot and layer.isdigit() and head.isdigit()):
        raise ValueError(f"a head label is 'layer.head' with two whole numbers, got {label!r}")
    return int(layer), int(head)
