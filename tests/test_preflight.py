"""``preflight``: what stops a run before anything loads, on a tiny model folder (issue 28: only
the end-to-end commands reached it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Name other engineers may move: imported here only.
from headrank_ir.engine.checks import check_profile_argument, preflight
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.records import Candidate, Query, Request

PASSAGE = "The Eiffel Tower was built between 1887 and 1889 for the World's Fair in Paris. " * 4


def requests(query: str = "when was the eiffel tower built?") -> list[Request]:
    return [Request(Query(query, "q1"), [Candidate("d1", 1.0, {"contents": PASSAGE})])]


def other_models_profile(**prompt) -> HeadProfile:
    return HeadProfile("another-model", ((0, 0, 1.0),), prompt=PromptSettings(**prompt))


def test_good_inputs_pass_and_a_profile_of_another_model_is_refused_unless_allowed(tiny_model_dir):
    preflight(tiny_model_dir, None, requests())
    with pytest.raises(ValueError, match=r"^the profile was made for model 'another-model', not "):
        preflight(tiny_model_dir, other_models_profile(), requests())
    preflight(tiny_model_dir, other_models_profile(), requests(), allow_profile_model_mismatch=True)


def test_the_profile_prompt_decides_the_calibration_query(tiny_model_dir):
    profile = other_models_profile(calibration_query="what is this")
    with pytest.raises(ValueError, match=r"^query 'q1': the query 'what is this' is the calibration query"):
        preflight(tiny_model_dir, profile, requests("what is this"), allow_profile_model_mismatch=True)


def test_a_passage_that_cannot_fit_the_profile_context_is_named(tiny_model_dir):
    profile = other_models_profile(max_context_tokens=80)
    with pytest.raises(ValueError, match=r"^query 'q1': passage 0 needs \d+ tokens next to a \d+-token prompt"):
        preflight(tiny_model_dir, profile, requests(), allow_profile_model_mismatch=True)
    preflight(tiny_model_dir, profile, requests(), allow_profile_model_mismatch=True, depth=0)  # nothing to read


@pytest.mark.parametrize("profile", [None, "icr", "p.json", Path("p.json"), HeadProfile("m", ((0, 0, 1.0),))])
def test_a_profile_argument_may_be_a_name_a_path_or_a_profile(profile):
    check_profile_argument(profile)


def test_a_profile_argument_of_another_type_is_refused():
    with pytest.raises(TypeError, match=re.escape("profile must be a path, 'icr' or a HeadProfile, got int")):
        check_profile_argument(5)
