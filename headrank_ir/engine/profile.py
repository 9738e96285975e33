"""Head profiles: which attention heads score relevance, with what weight, under which prompt.

A profile is a small JSON file. Without a trained one, ``HeadProfile.icr(model_id, layers,
heads)`` is ICR's choice: every head of every layer, equal weights, N/A calibration.

The package ships one profile per model (``headrank_ir/profiles/<short name>.json``, data only),
chosen and trained by leave-one-collection-out; ``resolve_profile`` is the one place a profile
argument (omitted, ``"icr"``, a path or an object) becomes the profile to rank with.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

from headrank_ir.atomic import write_atomic
from headrank_ir.errors import InputError

PROFILE_VERSION = 1
SHIPPED = Path(__file__).resolve().parent.parent / "profiles"
ICR = "icr"  # the profile name that asks for every head, equal weights

logger = logging.getLogger(__name__)


def _whole(value: Any, what: str, minimum: int = 0) -> int:
    """``value`` as an int when it is a whole number of at least ``minimum``; never truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value!r}")
    return int(value)


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _of_type(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{what} must be a {kind.__name__}, got {value!r}")
    return value


def _only_known(data: dict, known: Any, where: str) -> None:
    names = [f.name for f in fields(known)]
    unknown = sorted(set(data) - set(names) - ({"version"} if known is HeadProfile else set()))
    if unknown:
        raise ValueError(f"unknown field {where + unknown[0]!r} (allowed: {', '.join(names)})")


def _settings(data: Any, kind: type, where: str) -> Any:
    """A nested settings object from its JSON object, unknown keys refused."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    _only_known(data, kind, where + ".")
    return kind(**data)


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
        _whole(self.max_passage_tokens, "prompt.max_passage_tokens", minimum=1)
        if self.passage_order not in ("reverse", "forward"):
            raise ValueError(f"prompt.passage_order must be 'reverse' or 'forward', got {self.passage_order!r}")
        _of_type(self.calibrate, bool, "prompt.calibrate")
        if not _of_type(self.calibration_query, str, "prompt.calibration_query").strip():
            raise ValueError("prompt.calibration_query is empty")
        _of_type(self.use_chat_template, bool, "prompt.use_chat_template")
        if self.max_context_tokens is not None:
            _whole(self.max_context_tokens, "prompt.max_context_tokens", minimum=1)


FUSION_METHODS = ("none", "interpolate", "rrf")
NORMALISATIONS = ("zscore", "minmax")


@dataclass(frozen=True)
class FusionSettings:
    """How the reranked window's scores are combined with its first-stage scores
    (``engine/fusion.py``); ``weight`` goes to the reranker, ``1 - weight`` to the first stage."""

    method: str = "none"  # "none": the reranker's scores alone
    weight: float = 1.0
    normalise: str = "zscore"  # interpolation only: how each list is put on one scale
    rrf_k: int = 60  # rrf only: Cormack et al.'s constant, pyserini's default

    def __post_init__(self):
        if self.method not in FUSION_METHODS:
            raise ValueError(f"fusion.method must be one of {', '.join(FUSION_METHODS)}, got {self.method!r}")
        weight = _finite(self.weight, "fusion.weight")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"fusion.weight must be between 0 and 1, got {self.weight!r}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"fusion.normalise must be one of {', '.join(NORMALISATIONS)}, got {self.normalise!r}")
        _whole(self.rrf_k, "fusion.rrf_k", minimum=1)


@dataclass(frozen=True)
class HeadProfile:
    """Selected heads as ``(layer, head, weight)``; layers count from 0."""

    model: str
    heads: Tuple[Tuple[int, int, float], ...]
    prompt: PromptSettings = field(default_factory=PromptSettings)
    adapter: Optional[str] = None  # safetensors file of trained LoRA weights, relative to the JSON
    fusion: FusionSettings = field(default_factory=FusionSettings)  # with the first stage's scores
    meta: dict = field(default_factory=dict)  # free-form: how it was made

    def __post_init__(self):
        _of_type(self.model, str, "model")
        if isinstance(self.heads, (str, bytes, dict)) or not isinstance(self.heads, (list, tuple)) or not self.heads:
            raise ValueError(f"heads must be a non-empty list of [layer, head, weight], got {self.heads!r}")
        object.__setattr__(self, "heads", tuple(_head(h, f"heads[{i}]") for i, h in enumerate(self.heads)))
        _of_type(self.prompt, PromptSettings, "prompt")
        _of_type(self.fusion, FusionSettings, "fusion")
        if self.adapter is not None:
            _of_type(self.adapter, str, "adapter")
        _of_type(self.meta, dict, "meta")
        note_negated(self)

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
    def from_json(cls, data: Any) -> HeadProfile:
        """A profile from its JSON form, every field checked: a ``ValueError`` names the field."""
        if not isinstance(data, dict):
            raise ValueError(f"the top level must be a JSON object, got {type(data).__name__}")
        _only_known(data, cls, "")
        for required in ("model", "heads"):
            if required not in data:
                raise ValueError(f"no {required!r} field")
        data = dict(data)
        version = data.pop("version", PROFILE_VERSION)
        if version != PROFILE_VERSION:
            raise ValueError(f"profile version {version!r} is not supported (this package reads {PROFILE_VERSION})")
        prompt = _settings(data.pop("prompt", {}), PromptSettings, "prompt")
        return cls(prompt=prompt, fusion=_settings(data.pop("fusion", {}), FusionSettings, "fusion"), **data)

    def save(self, path: Union[str, Path]) -> Path:
        return write_atomic(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Union[str, Path]) -> HeadProfile:
        """Read and validate a profile file (or a folder's ``profile.json``); every problem is
        one ``InputError`` line naming the file and the field."""
        path = Path(path)
        if path.is_dir():
            path = path / "profile.json"
        if not path.is_file():
            raise InputError(f"profile file {path} does not exist")
        try:
            profile = cls.from_json(json.loads(path.read_bytes().decode("utf-8-sig")))
        except UnicodeDecodeError as err:
            byte = err.object[err.start]
            raise InputError(f"profile is not UTF-8 text (byte {byte:#04x} at offset {err.start})", path) from None
        except json.JSONDecodeError as err:
            raise InputError(f"profile is not valid JSON: {err.msg}", path, err.lineno) from None
        except ValueError as err:
            raise InputError(f"invalid profile: {err}", path) from None
        if profile.adapter and not Path(profile.adapter).is_absolute():
            profile = replace(profile, adapter=str(path.parent / profile.adapter))
        if profile.adapter and not Path(profile.adapter).is_file():
            raise InputError(f"invalid profile: adapter file {profile.adapter} does not exist", path)
        return profile

    def heads_by_layer(self) -> List[Tuple[int, List[int], List[float]]]:
        """``[(layer, [heads], [weights])]`` in layer order."""
        layers: dict = {}
        for layer, head, weight in self.heads:
            layers.setdefault(layer, ([], []))
            layers[layer][0].append(head)
            layers[layer][1].append(weight)
        return [(layer, *layers[layer]) for layer in sorted(layers)]


_NOTED: set = set()  # the head tuples already said to be all negative: each is said once


def note_negated(profile: HeadProfile) -> None:
    """A profile whose head weights are all negative ranks a passage higher the less attention it
    gets: legitimate for signed trained weights, a sign slip otherwise; accepted, said once."""
    if all(weight < 0 for _, _, weight in profile.heads) and profile.heads not in _NOTED:
        _NOTED.add(profile.heads)
        logger.warning(
            "every head weight of the profile for %s is negative: passages that get less attention rank "
            "higher; right for trained signed weights, else flip the signs",
            profile.model,
        )


def head_label(layer: int, head: int) -> str:
    """A head as the bench's records and plots name it: ``"layer.head"``, e.g. ``"12.3"``."""
    return f"{layer}.{head}"


def parse_head_label(label: str) -> Tuple[int, int]:
    """``"12.3"`` → ``(12, 3)``; the inverse of :func:`head_label`."""
    layer, dot, head = label.partition(".")
    if not (dot and layer.isdigit() and head.isdigit()):
        raise ValueError(f"a head label is 'layer.head' with two whole numbers, got {label!r}")
    return int(layer), int(head)


def check_profile_model(profile: HeadProfile, names: Sequence[str]) -> None:
    """A profile's heads were chosen on one model: refuse one made for a model that is not among
    ``names`` (the loaded model's id, folder or short name; compared by last path part)."""
    known = {model_key(n) for n in names if n}
    if known and model_key(profile.model) not in known:
        raise ValueError(
            f"the profile was made for model {profile.model!r}, not {next(n for n in names if n)!r}: its heads "
            "mean nothing on another model; use a profile made for this model, or pass "
            "allow_profile_model_mismatch=True (--allow-profile-model-mismatch) to run it anyway"
        )


def model_key(name: str) -> str:
    return Path(str(name).rstrip("/")).name.lower()


def shipped_profile_path(model: Union[str, os.PathLike]) -> Optional[Path]:
    """The shipped profile of ``model`` (short name, Hugging Face id or folder: by its last part)."""
    path = SHIPPED / f"{model_key(os.fspath(model))}.json"
    return path if path.is_file() else None


def resolve_profile(
    model: Union[str, os.PathLike], profile: Union[None, str, os.PathLike, HeadProfile]
) -> Optional[HeadProfile]:
    """The profile to rank with; ``None`` means ICR's (the engine builds it for the model's shape).

    ``profile`` omitted: ``model``'s shipped profile, else ICR's, said in one log line;
    ``"icr"``: ICR's; a path: that profile file (validated); a ``HeadProfile``: itself.
    """
    if isinstance(profile, HeadProfile):
        return profile
    if profile is None:
        if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
            return None  # not a model name: loading it fails, with its own message
        path = shipped_profile_path(model)
        if path is None:
            logger.info("no shipped profile for model %s: using ICR's all-heads profile", os.fspath(model))
            return None
        return HeadProfile.load(path)
    if os.fspath(profile) == ICR:
        return None
    return HeadProfile.load(profile)


def _head(value: Any, what: str) -> Tuple[int, int, float]:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{what} must be [layer, head, weight], got {value!r}")
    return _whole(value[0], f"{what} layer"), _whole(value[1], f"{what} head"), _finite(value[2], f"{what} weight")
