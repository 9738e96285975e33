"""Head profiles shipped with the package: one JSON file per model, named by the model's short
name (``smollm2-135m.json``), chosen and trained by leave-one-collection-out (``tools/loco.py``,
``runs/loco.smollm2-135m.md``). With no profile asked for, a model gets its shipped profile; ``"icr"`` asks
for ICR's all-heads profile; anything else is a profile file or folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

from headrank_ir.engine.profile import HeadProfile, model_key

logger = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent
ICR = "icr"  # the profile name that asks for every head, equal weights


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
