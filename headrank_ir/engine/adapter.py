"""Low-rank adapters on the query/key projections: add (for training), save, load, merge.

Training injects peft's LoRA into ``q_proj``/``k_proj`` of chosen layers. The trained low-rank
factors are saved as one safetensors file (peft's key names, with the LoRA settings in the file's
metadata). Applying an adapter merges ``W += (alpha / rank) · B @ A`` into each projection, so a
profile with an adapter runs exactly as fast as one without, and needs no peft at inference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

TARGETS = ("q_proj", "k_proj")
FORMAT = "headrank-lora-1"
_APPLIED = "_headrank_adapter"  # attribute marking a model whose weights already hold a merged adapter


@dataclass(frozen=True)
class AdapterSpec:
    """What the low-rank factors mean: ``delta W = (alpha / rank) · B @ A`` on ``TARGETS`` of ``layers``."""

    rank: int
    alpha: float
    layers: tuple[int, ...]

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be positive, got {self.rank}")
        if not self.layers:
            raise ValueError("a LoRA adapter needs at least one layer")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def lora_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=0.0,  # dropout would make a step depend on RNG state; the data is tiny anyway
            target_modules=list(TARGETS),
            layers_to_transform=list(self.layers),
            bias="none",
        )


def add_lora(model: torch.nn.Module, spec: AdapterSpec) -> None:
    """Inject trainable LoRA factors in place (B starts at zero: scores are unchanged); freeze the rest."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(spec.lora_config(), model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA factors of a model that went through ``add_lora``, under peft's key names."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def load_lora_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved factors back into a model that went through ``add_lora`` (resuming training)."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    if result.unexpected_keys:
        raise ValueError(f"adapter keys do not fit the model: {sorted(result.unexpected_keys)[:3]} …")


def save_adapter(state: dict[str, torch.Tensor], spec: AdapterSpec, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "rank": str(spec.rank),
        "alpha": str(spec.alpha),
        "layers": json.dumps(list(spec.layers)),
    }
    save_file(state, str(path), metadata=metadata)
    return path


def load_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], AdapterSpec]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"adapter file {path} does not exist (the profile names it)")
    from headrank_ir.engine.models import safetensors_problem

    problem = safetensors_problem(path)  # safetensors' own errors name neither the file nor the fix
    if problem:
        raise ValueError(f"adapter file {path} (the profile names it) is {problem}; train it again or restore it")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(
                f"{path} is not a HeadRank LoRA adapter (format {metadata.get('format')!r}, expected {FORMAT!r})"
            )
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
    try:
        spec = AdapterSpec(int(metadata["rank"]), float(metadata["alpha"]), tuple(json.loads(metadata["layers"])))
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"adapter file {path} has unusable LoRA settings in its metadata ({error!r})") from None
    return state, spec


def apply_adapter(model: torch.nn.Module, path: str | Path) -> None:
    """Merge the adapter at ``path`` into ``model``'s projection weights, in place.

    Applying the same file twice is a no-op; applying a second, different adapter raises, since
    the weights no longer are the base model's.
    """
    applied = getattr(model, _APPLIED, None)
    if applied is not None:
        if applied == str(Path(path).resolve()):
            return
        raise ValueError(f"the model already holds the merged adapter {applied}; load a fresh model for {path}")
    state, spec = load_adapter(path)
    with torch.no_grad():
        for module_name, (down, up) in _factor_pairs(state, path).items():
            weight = _projection(model, module_name, path).weight
            if up.shape[0] != weight.shape[0] or down.shape[1] != weight.shape[1]:
                raise ValueError(
                    f"{path}: {module_name} factors {tuple(up.shape)}·{tuple(down.shape)} "
                    f"do not fit weight {tuple(weight.shape)}"
                )
            weight += spec.scaling * (up.to(weight.dtype) @ down.to(weight.dtype))
    setattr(model, _APPLIED, str(Path(path).resolve()))


def ensure_adapter(model: torch.nn.Module, path: str | Path | None) -> None:
    """Make ``model`` hold exactly the adapter a profile asks for (``None``: none).

    Merging changes the caller's weights, so what was merged is tracked on the model: a second
    ranker on the same model object with another adapter, or with none, is refused rather than
    silently scoring with the first one's weights.
    """
    if path is not None:
        apply_adapter(model, path)
        return
    applied = getattr(model, _APPLIED, None)
    if applied is not None:
        raise ValueError(
            f"the model already holds the merged LoRA adapter {applied} (from an earlier HeadRanker), "
            "but this profile has no adapter; load a fresh model for it"
        )


def _factor_pairs(state: dict[str, torch.Tensor], path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module name: (A, B)}`` from peft keys ``<module>.lora_A.weight`` / ``<module>.lora_B.weight``."""
    pairs = {}
    for key, down in state.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            up = state.get(f"{module}.lora_B.weight")
            if up is None:
                raise ValueError(f"{path}: {module} has lora_A but no lora_B")
            pairs[module] = (down, up)
    if not pairs:
        raise ValueError(f"{path} holds no LoRA factors")
    return pairs


def _projection(model: torch.nn.Module, name: str, path) -> torch.nn.Linear:
    if getattr(model, "base_model", None) is model:  # loaded without its LM head (``load_model``'s depth)
        name = name.removeprefix(f"{model.base_model_prefix}.")
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(
            f"{path}: the model has no module {name!r}; was the adapter trained on another architecture?"
        ) from None
