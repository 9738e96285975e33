"""Batched reading and prompts joined from per-passage tokens, against the one-query path and the
whole-prompt reference, on tiny random Llama/Qwen2/Qwen3 models (float32) with real tokenizers."""

from __future__ import annotations

import pytest
import torch
from conftest import SHARED_DATA, tiny_model
from test_engine import PASSAGES, QUERY, SELECTED, full_recompute_mass

from headrank_ir.engine.profile import HeadProfile, PromptSettings
from headrank_ir.engine.prompt import PromptPieces, build_layout, build_layouts, passage_pieces
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.engine.windows import batch_groups, plan_windows

# Different query lengths and passage counts in one batch; the long list needs two windows
# under the small context below.
QUERIES = [QUERY, "lobster", "which track judged passages on a four-level scale in 2019, and how?"]
LISTS = [PASSAGES, PASSAGES[1:3], PASSAGES[::-1] + PASSAGES[:2]]
# Llama 3 / Qwen2 / Qwen3 pre-tokenise with this regex (SmolLM2 with GPT-2's): punctuation takes
# following newlines, newlines merge.
QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def counted(ranker):
    """Count the truncated forwards the ranker makes."""
    calls = []
    forward = ranker.reader.truncated.forward
    ranker.reader.truncated.forward = lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs)
    return calls


def windowed_ranker(tokenizer, family, **prompt):
    model = tiny_model(family, len(tokenizer))
    whole = HeadProfile("tiny", SELECTED, PromptSettings(**prompt))
    overhead = len(build_layout(tokenizer, QUERIES[2], [], whole.prompt).input_ids)
    return HeadRanker(model, tokenizer, whole.with_prompt(max_context_tokens=overhead + 120), batch_tokens=10**6)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("calibrate", [True, False])
def test_batched_read_equals_one_query_at_a_time(tokenizer, family, calibrate):
    ranker = windowed_ranker(tokenizer, family, calibrate=calibrate)
    lengths = [len(job.real.input_ids) for q, p in zip(QUERIES, LISTS) for job in ranker.reader.plan(q, p)[1]]
    groups = batch_groups(lengths, ranker.reader.batch_tokens)
    # windows of different queries, of different lengths, share a forward
    assert any(len({lengths[i] for i in group}) > 1 for group in groups) and len(groups) < len(lengths)
    calls = counted(ranker)
    batched = ranker.reader.read_batch(QUERIES, LISTS)
    assert len(calls) == len(groups) * (2 if calibrate else 1)
    assert max(len(r.windows) for r in batched) > 1
    for query, passages, reading in zip(QUERIES, LISTS, batched):
        alone = ranker.reader.read_batch([query], [passages])[0]
        assert reading.windows == alone.windows
        for got, expected in zip(reading.head_scores, alone.head_scores):
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    for scores, query, passages in zip(ranker.score_batch(QUERIES, LISTS), QUERIES, LISTS):
        assert scores == pytest.approx(ranker.score(query, passages), abs=1e-6)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_batched_windows_equal_full_recomputation_of_each_prompt(tokenizer, family):
    """Independent of the cache, the padding and the calibration mask: every window's prompt and
    its N/A twin computed whole, from the whole-prompt tokenisation."""
    ranker = windowed_ranker(tokenizer, family)
    readings = ranker.reader.read_batch(QUERIES, LISTS)
    with torch.no_grad():
        for query, passages, reading in zip(QUERIES, LISTS, readings):
            for window, scores in zip(reading.windows, reading.head_scores):
                shown = [passages[i] for i in window]
                real, blank = build_layouts(tokenizer, [query, "N/A"], shown, ranker.profile.prompt)
                expected = full_recompute_mass(ranker, real) - full_recompute_mass(ranker, blank)
                torch.testing.assert_close(scores, expected, atol=1e-6, rtol=1e-5)


def test_batch_groups_bound_padded_tokens_and_padding():
    lengths = [100, 900, 1000, 950, 400, 5000]
    groups = batch_groups(lengths, budget=3000)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert groups[0] == [5]  # longer than the budget: alone
    assert [2, 3, 1] in groups  # 3 × 1000 padded tokens fit; 900 fills 0.9 of the longest
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert len(group) == 1 or (len(group) * longest <= 3000 and min(lengths[i] for i in group) >= 0.75 * longest)
    assert batch_groups(lengths, budget=1) == [[i] for i in sorted(range(6), key=lambda i: -lengths[i])]


def qwen_style(tokenizer):
    """SmolLM2's vocabulary under Qwen's pre-tokeniser: a second, stricter set of merge rules."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=tokenizer.chat_template)


def dl19_query(count: int):
    import json

    folder = SHARED_DATA / "msmarco-passage" / "dl19"
    qid, text = (folder / "topics.tsv").read_text().splitlines()[0].split("\t")
    docids = [line.split()[2] for line in (folder / "run.bm25.txt").read_text().splitlines() if line.split()[0] == qid]
    corpus = {}
    with open(folder / "corpus.jsonl") as lines:
        wanted = set(docids[:count])
        for line in lines:
            record = json.loads(line)
            if record["id"] in wanted:
                corpus[record["id"]] = record["contents"]
    return text, [corpus[d] for d in docids[:count]]


@pytest.mark.parametrize("style", ["gpt2", "qwen"])
@pytest.mark.parametrize("template", [True, False])
@pytest.mark.parametrize("order", ["reverse", "forward"])
def test_joined_prompts_equal_whole_prompt_tokenisation(tokenizer, style, template, order):
    tok = tokenizer if style == "gpt2" else qwen_style(tokenizer)
    settings = PromptSettings(use_chat_template=template, passage_order=order, max_passage_tokens=64)
    pieces = PromptPieces(tok, settings)
    assert pieces.exact
    query, passages = dl19_query(100)
    texts, passage_ids = passage_pieces(tok, passages + PASSAGES, settings.max_passage_tokens)
    windows = [list(range(0, 37)), list(range(37, 38)), list(range(38, len(texts)))]
    for window, joined in zip(windows, pieces.layouts(query, texts, passage_ids, windows)):
        whole = build_layouts(tok, [query, "N/A"], [texts[i] for i in window], settings, truncated=True)
        assert joined == whole  # ids, passage spans, query span, texts
        for (start, end), text in zip(joined[0].passage_spans, joined[0].passage_texts):
            assert tok.decode(joined[0].input_ids[start:end]).strip() == text
    assert any(len(t) < len(" ".join(p.split())) for t, p in zip(texts, passages))  # some were cut
    # a cut inside a character's bytes can re-tokenise one token longer (one DL19 passage at 64)
    assert max(p.length for p in passage_ids) <= settings.max_passage_tokens + 1


def test_pieces_that_do_not_join_fall_back_to_the_whole_prompt(tokenizer):
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # a space before every piece
    odd = PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=tokenizer.chat_template)
    settings = PromptSettings()
    pieces = PromptPieces(odd, settings)
    assert not pieces.exact
    texts, passage_ids = passage_pieces(odd, PASSAGES, 128)
    got = pieces.layouts(QUERY, texts, passage_ids, [[0, 1, 2, 3, 4]])[0]
    assert got == build_layouts(odd, [QUERY, "N/A"], texts, settings, truncated=True)


def test_windows_follow_the_tokens_of_the_prompt(tokenizer):
    """``plan_windows`` sees each passage's length in the prompt; every window fits the context."""
    ranker = windowed_ranker(tokenizer, "llama")
    windows, jobs = ranker.reader.plan(QUERIES[2], LISTS[2])
    texts, pieces = passage_pieces(tokenizer, LISTS[2], ranker.profile.prompt.max_passage_tokens)
    assert windows == plan_windows(
        [p.length for p in pieces],
        ranker.reader.planner.prompt_overhead(QUERIES[2]),
        ranker.reader.planner.context_tokens,
    )
    assert all(len(job.real.input_ids) <= ranker.reader.planner.context_tokens for job in jobs)


def requests(lists):
    from headrank_ir.records import Candidate, Query, Request

    return [
        Request(Query(q, f"q{n}"), [Candidate(f"d{i}", 0.0, {"contents": p}) for i, p in enumerate(passages)])
        for n, (q, passages) in enumerate(zip(QUERIES, lists))
    ]


def test_rerank_batches_with_overlap_equal_one_batch_at_a_time(tokenizer):
    ranker = windowed_ranker(tokenizer, "qwen3")
    batches = [requests(LISTS)[:2], requests(LISTS)[2:]]
    expected = [ranker.rerank_batch(batch, rank_end=6) for batch in batches]
    ranker.overlap = True  # the GPU default: batch 2 tokenised on a thread while batch 1 is read
    got = list(ranker.rerank_batches(batches, rank_end=6))
    assert [[[c.docid for c in r.candidates] for r in rs] for rs in got] == [
        [[c.docid for c in r.candidates] for r in rs] for rs in expected
    ]
    for results, reference in zip(got, expected):
        for result, ref in zip(results, reference):
            assert [c.score for c in result.candidates] == pytest.approx([c.score for c in ref.candidates], abs=1e-6)
    bad = [batches[0], requests([["fine"], ["  "], ["x"]])]
    reranked = ranker.rerank_batches(bad)
    assert len(next(reranked)) == 2  # the first batch is unaffected by the bad second one
    with pytest.raises(ValueError, match="candidate 0 .*is empty"):
        next(reranked)


@pytest.mark.parametrize("overlap", [False, True])
def test_rerank_batches_caps_rank_end_with_top_k_retrieve_on_both_paths(tokenizer, overlap):
    """rank_llm's ``top_k_retrieve`` caps ``rank_end`` in ``rerank_batches`` as in ``rerank_batch``."""
    ranker = windowed_ranker(tokenizer, "qwen3")
    batch = requests(LISTS)[2:]
    expected = ranker.rerank_batch(batch, rank_end=2)
    ranker.overlap = overlap
    got = next(ranker.rerank_batches([batch], rank_end=6, top_k_retrieve=2))
    assert [[(c.docid, c.score) for c in r.candidates] for r in got] == [
        [(c.docid, c.score) for c in r.candidates] for r in expected
    ]


def test_rows_read_in_chunks_equal_rows_read_at_once(tokenizer, monkeypatch):
    from headrank_ir.engine import attention

    ranker = windowed_ranker(tokenizer, "qwen2")
    whole = ranker.reader.read_batch(QUERIES, LISTS)
    monkeypatch.setattr(attention, "FLOAT_KEYS_BYTES", 1)  # one batch row at a time
    for got, expected in zip(ranker.reader.read_batch(QUERIES, LISTS), whole):
        for g, e in zip(got.head_scores, expected.head_scores):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-5)


def test_no_passages_read_nothing(tokenizer):
    ranker = windowed_ranker(tokenizer, "llama")
    calls = counted(ranker)
    assert ranker.score_batch([QUERY, "lobster"], [[], PASSAGES[:1]])[0] == []
    assert ranker.reader.head_scores(QUERY, []).shape == (len(SELECTED), 0)
    assert len(calls) == 2  # the one-passage query only: its prompt and its calibration
