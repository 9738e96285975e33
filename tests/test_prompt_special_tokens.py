"""The prompt's frame: the chat template where the tokenizer has one, else the plain template with
the tokenizer's own start token, once, in the joined prompts as in the whole-prompt reference."""

from __future__ import annotations

import pytest
from tokenizers import processors
from transformers import AutoTokenizer

from headrank_ir.engine.models import resolve_model_folder
from headrank_ir.engine.profile import PromptSettings
from headrank_ir.engine.prompt import PromptPieces, build_layout, build_layouts, passage_pieces

QUERY = "who opened the tower?"
PASSAGES = ["The tower opened in 1889.", "Paris has a tower, and more."]
PLAIN = PromptSettings(use_chat_template=False)


@pytest.fixture(scope="module")
def start_token_tokenizer():
    """SmolLM2's tokenizer made to put ``<|endoftext|>`` before every text, as Llama's puts its BOS."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_folder("smollm2-135m"))
    start = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A $B", special_tokens=[("<|endoftext|>", start)]
    )
    return tokenizer, start


def test_the_chat_template_frames_the_prompt_when_the_tokenizer_has_one(tokenizer):
    framed = tokenizer.decode(build_layout(tokenizer, QUERY, PASSAGES, PromptSettings()).input_ids)
    assert framed.startswith("<|im_start|>system\n") and framed.endswith("<|im_end|>\n<|im_start|>assistant\n")
    plain = tokenizer.decode(build_layout(tokenizer, QUERY, PASSAGES, PLAIN).input_ids)
    assert plain.startswith("Here are some passages:\n\n") and "<|im_start|>" not in plain


def test_the_plain_prompt_starts_with_the_tokenizers_start_token_once(start_token_tokenizer):
    tokenizer, start = start_token_tokenizer
    ids = build_layout(tokenizer, QUERY, PASSAGES, PLAIN).input_ids
    assert ids[0] == start and ids.count(start) == 1


@pytest.mark.parametrize("settings, starts", [(PLAIN, 1), (PromptSettings(), 0)], ids=["plain", "chat"])
def test_joined_prompts_equal_the_whole_prompts_with_a_start_token(start_token_tokenizer, settings, starts):
    """Plain: the start token is found and joined, not a reason to fall back. Chat: the template
    writes its own special tokens, so the start token is added to neither the joined nor the whole
    prompts, and the pieces still join exactly."""
    tokenizer, start = start_token_tokenizer
    pieces = PromptPieces(tokenizer, settings)
    assert pieces.exact
    texts, parts = passage_pieces(tokenizer, PASSAGES, settings.max_passage_tokens)
    joined = pieces.layouts(QUERY, texts, parts, [[0, 1]])[0]  # the query's prompt and the calibration one
    whole = build_layouts(tokenizer, [QUERY, settings.calibration_query], texts, settings, truncated=True)
    assert joined == whole and [layout.input_ids.count(start) for layout in joined] == [starts, starts]
