"""The listwise prompt: passages first, the query last (ICR's layout), with exact token spans.

Spans come from the tokenizer's character offsets over the whole rendered prompt, never from
tokenising pieces separately, so they are exact whatever the tokenizer merges at boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

from .profile import PromptSettings

INTRO = "Here are some passages:\n\n"
INSTRUCTION = "\nPlease find information that is relevant to the following query in the passages above.\n\nQuery: "
PLAIN_TEMPLATE = "{content}\n"  # for tokenizers without a chat template

Span = Tuple[int, int]


@dataclass(frozen=True)
class PromptLayout:
    """One rendered prompt.

    ``passage_spans[i]`` is the token span ``[start, end)`` of input passage ``i`` (in input
    order, whatever order the prompt shows them in); ``query_span`` that of the query text.
    """

    input_ids: List[int]
    passage_spans: List[Span]
    query_span: Span
    passage_texts: List[str]  # what was shown: whitespace-normalised, cut to the token budget


def normalise(text: str) -> str:
    return " ".join(text.split())


def truncate_passage(tokenizer, text: str, max_tokens: int) -> str:
    """Cut ``text`` (whitespace-normalised) after its first ``max_tokens`` tokens."""
    text = normalise(text)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    return text[: offsets[max_tokens - 1][1]].rstrip()


def display_order(count: int, settings: PromptSettings) -> List[int]:
    """Input indices in the order the prompt shows them."""
    order = list(range(count))
    return order[::-1] if settings.passage_order == "reverse" else order


def build_layout(tokenizer, query: str, passages: Sequence[str], settings: PromptSettings) -> PromptLayout:
    """Render the prompt for ``query`` over ``passages`` and locate every span in tokens."""
    texts = [truncate_passage(tokenizer, p, settings.max_passage_tokens) for p in passages]
    content, char_spans, query_chars = _content(normalise(query), texts, settings)
    rendered, special = _render(tokenizer, content, settings)
    base = rendered.index(content)
    encoded = tokenizer(rendered, add_special_tokens=special, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    spans = [_token_span(offsets, base + start, base + end) for start, end in char_spans]
    query_span = _token_span(offsets, base + query_chars[0], base + query_chars[1])
    return PromptLayout(list(encoded["input_ids"]), spans, query_span, texts)


def _content(query: str, texts: List[str], settings: PromptSettings):
    parts, char_spans, cursor = [INTRO], [None] * len(texts), len(INTRO)
    for shown, index in enumerate(display_order(len(texts), settings), start=1):
        label = f"[{shown}] "
        char_spans[index] = (cursor + len(label), cursor + len(label) + len(texts[index]))
        line = f"{label}{texts[index]}\n"
        parts.append(line)
        cursor += len(line)
    parts.append(INSTRUCTION)
    cursor += len(INSTRUCTION)
    parts.append(query)
    return "".join(parts), char_spans, (cursor, cursor + len(query))


def _render(tokenizer, content: str, settings: PromptSettings):
    """Return the full prompt text and whether the tokenizer should add its special tokens."""
    if settings.use_chat_template and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": content}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return rendered, False  # the template writes its own special tokens
    return PLAIN_TEMPLATE.format(content=content), True


def _token_span(offsets, start: int, end: int) -> Span:
    """Tokens overlapping the characters ``[start, end)``."""
    inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    if not inside:
        raise ValueError(f"characters {start}:{end} map to no token; the tokenizer gives no offsets there")
    return inside[0], inside[-1] + 1
