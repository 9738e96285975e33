"""The profiles shipped with the package: resolved by model name when none is asked for, ICR's
one word away, ICR with a log line for a model without one."""

from __future__ import annotations

import json
import logging

import pytest

import headrank_ir.engine.profile as profiles
from headrank_ir.engine.checks import check_profile
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.errors import InputError


def shipped_files():
    return sorted(profiles.SHIPPED.glob("*.json"))


def test_a_profile_is_shipped_for_the_default_model():
    from headrank_ir.engine.models import DEFAULT_MODEL

    assert profiles.shipped_profile_path(DEFAULT_MODEL) == profiles.SHIPPED / f"{DEFAULT_MODEL}.json"


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.stem)
def test_every_shipped_profile_fits_its_model(path):
    from transformers import AutoConfig

    from headrank_ir.engine.models import resolve_model_folder

    profile = HeadProfile.load(path)
    assert profile.model == path.stem and profile.adapter is None
    config = AutoConfig.from_pretrained(resolve_model_folder(path.stem)).get_text_config()
    check_profile(profile, config.num_hidden_layers, config.num_attention_heads)  # raises on a head it lacks
    assert profile.meta["method"] == "headrank-loco" and set(profile.meta["trained_on"]) >= {"dl19", "dl20"}


def test_omitted_profile_is_the_shipped_one_by_last_path_part(tmp_path, monkeypatch):
    shipped = HeadProfile("tiny-model", ((0, 1, 1.0),))
    shipped.save(tmp_path / "tiny-model.json")
    monkeypatch.setattr(profiles, "SHIPPED", tmp_path)
    assert profiles.resolve_profile("tiny-model", None) == shipped
    assert profiles.resolve_profile("/models/Tiny-Model/", None) == shipped
    assert profiles.resolve_profile("tiny-model", "icr") is None


def test_no_shipped_profile_falls_back_to_icr_with_one_log_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(profiles, "SHIPPED", tmp_path)
    with caplog.at_level(logging.INFO, logger="headrank_ir.engine.profile"):
        assert profiles.resolve_profile("other-model", None) is None
    assert [r.getMessage() for r in caplog.records] == [
        "no shipped profile for model other-model: using ICR's all-heads profile"
    ]


def test_a_path_is_loaded_and_validated(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"model": "m", "heads": [[0, 0, 1.0]], "fusion": {"weight": 2}}))
    with pytest.raises(InputError, match="fusion.weight"):
        profiles.resolve_profile("m", tmp_path / "p.json")


def test_from_pretrained_resolves_icr_by_name(tiny_model_dir):
    ranker = HeadRanker.from_pretrained(tiny_model_dir, "icr")
    assert ranker.profile.meta["method"] == "icr" and len(ranker.profile.heads) == 3 * 4


def test_bench_method_skips_a_model_without_a_shipped_profile(tmp_path):
    from headrank_ir.bench.methods import Context, Skip, get_method

    ctx = Context("no-such-model", "dl19", 20, None, tmp_path, tmp_path)
    with pytest.raises(Skip, match="no profile is shipped for no-such-model"):
        get_method("headrank-default").build(ctx)


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.stem)
def test_install_sh_installs_the_weights_of_every_shipped_profile(path):
    """A fresh machine runs tools/install.sh and then this suite: a shipped profile whose offline
    model install.sh does not install would fail there (and pass only where a cache hides it)."""
    import re
    from pathlib import Path

    from headrank_ir.engine.models import OFFLINE_MODELS

    script = (Path(__file__).resolve().parents[1] / "tools" / "install.sh").read_text()
    installed = set()
    for line in script.splitlines():
        if "--no-deps" in line and not line.lstrip().startswith("#"):
            for word in line.split():
                match = re.fullmatch(r"([\w.-]+?)(?:\{([\d,]+)\})?([\w.-]*)==[\w.]+", word)
                if match:
                    head, parts, tail = match.groups()
                    installed |= {f"{head}{p}{tail}" for p in (parts or "").split(",")}
    spec = OFFLINE_MODELS[path.stem]
    wanted = {word.partition("==")[0] for word in spec.pip.split() if "==" in word}
    assert wanted and wanted <= installed, f"tools/install.sh lacks {sorted(wanted - installed)}"
