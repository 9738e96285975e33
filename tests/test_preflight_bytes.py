"""The preflight's shortcut (issue 24: host time before the first forward): a query whose longest
passage fits beside its prompt at one token per byte is passed without tokenising its passages;
every verdict stays that of planning it as the engine does."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from conftest import SHARED_DATA
from pipeline_support import REPO
from tokenizers import Tokenizer, normalizers
from tokenizers.models import WordPiece
from transformers import PreTrainedTokenizerFast

# Names other engineers may move: imported here only.
from headrank_ir.engine import checks
from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.prompt import encode_pieces, normalise
from headrank_ir.engine.reader import PromptPlanner
from headrank_ir.records import Candidate, Query, Request

PASSAGE = "The Eiffel Tower was built between 1887 and 1889 for the World's Fair in Paris. " * 4  # 324 bytes
QUERY = "when was the eiffel tower built?"
# text whose bytes are few for its tokens or that a normaliser lengthens: the bound's edge cases
AWKWARD = ["\u0958\u0959 क़ख़", "🦞🦞 lobster 🦞", "日本語の文章です。", "e\u0301\u0301\u0301", "<|im_start|>user"]
AWKWARD += ["a" * 300]


def requests(passages=(PASSAGE,)) -> list[Request]:
    candidates = [Candidate(f"d{i}", 1.0, {"contents": text}) for i, text in enumerate(passages)]
    return [Request(Query(QUERY, "q1"), candidates)]


def profile(context: int) -> HeadProfile:
    return HeadProfile("m", ((0, 0, 1.0),), prompt=PromptSettings(max_context_tokens=context))


def verdict(call) -> str | None:
    try:
        call()
    except ValueError as error:
        return str(error)
    return None


def counting_plans(monkeypatch) -> list:
    calls = []
    plan = PromptPlanner.plan
    monkeypatch.setattr(PromptPlanner, "plan", lambda self, *args: calls.append(args) or plan(self, *args))
    return calls


def overhead(tokenizer) -> int:
    return PromptPlanner(tokenizer, profile(8192), 8192).prompt_overhead(QUERY)


def test_a_query_that_fits_by_its_bytes_is_not_tokenised(tokenizer, monkeypatch):
    calls = counting_plans(monkeypatch)
    checks.check_prompts_fit(tokenizer, profile(8192), 8192, requests([PASSAGE] * 20))
    assert calls == []
    # fits in tokens (104 + 8) but not at a token a byte (324 + 2 + 8): planned for real, and passes
    context = overhead(tokenizer) + 150
    checks.check_prompts_fit(tokenizer, profile(context), context, requests())
    assert len(calls) == 1


@pytest.mark.parametrize("extra", [0, 20, 60, 80, 100, 200, 330, 340, 1000])
@pytest.mark.parametrize("passages", [[PASSAGE], [PASSAGE, "short"] * 3, AWKWARD])
def test_every_verdict_is_that_of_planning_every_query(tokenizer, extra, passages):
    context = overhead(tokenizer) + extra
    planner = PromptPlanner(tokenizer, profile(context), context)
    expected = verdict(lambda: planner.plan(QUERY, passages))
    got = verdict(lambda: checks.check_prompts_fit(tokenizer, profile(context), context, requests(passages)))
    assert got == (None if expected is None else f"query 'q1': {expected}")


def test_no_piece_has_more_tokens_than_bytes(tokenizer):
    """The bound's premise, on real passages (DL19's first 3,000) and awkward text."""
    texts = []
    with open(SHARED_DATA / "msmarco-passage" / "dl19" / "corpus.jsonl", encoding="utf-8") as corpus:
        for line, _ in zip(corpus, range(3000)):
            texts.append(normalise(json.loads(line)["contents"]))
    texts += [normalise(t) for t in AWKWARD]
    for text, piece in zip(texts, encode_pieces(tokenizer, texts)):
        assert piece.length <= len(f" {text}\n".encode()), text


def test_only_a_byte_level_bpe_tokenizer_takes_the_shortcut_and_its_normaliser_is_applied(tokenizer):
    assert checks._byte_level_normalizer(tokenizer)("\u0958") == "\u0958"  # SmolLM2's has no normaliser
    nfc = copy.deepcopy(tokenizer)
    nfc.backend_tokenizer.normalizer = normalizers.NFC()
    assert len(checks._byte_level_normalizer(nfc)("\u0958").encode()) == 6  # NFC lengthens it: 3 bytes to 6
    wordpiece = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")))
    assert checks._byte_level_normalizer(wordpiece) is None


def test_any_other_tokenizer_plans_every_query(tokenizer, monkeypatch):
    monkeypatch.setattr(checks, "_byte_level_normalizer", lambda tokenizer: None)
    calls = counting_plans(monkeypatch)
    checks.check_prompts_fit(tokenizer, profile(8192), 8192, requests() * 3)
    assert len(calls) == 3


def test_the_preflight_bench_times_both_routes():
    argv = [sys.executable, str(REPO / "tools" / "bench_preflight.py"), "--depths", "3", "--repeats", "1"]
    argv += ["--data", str(SHARED_DATA / "msmarco-passage" / "dl19")]
    output = subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True, timeout=300).stdout
    row = json.loads(output)
    assert row["depth"] == 3 and row["queries"] == 43
    assert row["shortcut s"] > 0 and row["plan every query s"] > 0
