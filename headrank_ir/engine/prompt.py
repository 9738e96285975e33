"""The listwise prompt: passages first, the query last (ICR's layout), with exact token spans.

Spans come from the tokenizer's character offsets over the whole rendered prompt, never from
tokenising pieces separately, so they are exact whatever the tokenizer merges at boundaries.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from headrank_ir.engine.profile import PromptSettings

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


def truncate_passages(tokenizer, passages: Sequence[str], max_tokens: int) -> Tuple[List[str], List[int]]:
    """Whitespace-normalise each passage and cut it after ``max_tokens`` tokens.

    Returns the texts and their token counts (one batched tokenizer call for all passages).
    """
    texts = [normalise(p) for p in passages]
    if not texts:
        return [], []
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    cut = [t if len(o) <= max_tokens else t[: o[max_tokens - 1][1]].rstrip() for t, o in zip(texts, encoded)]
    return cut, [min(len(o), max_tokens) for o in encoded]


def display_order(count: int, settings: PromptSettings) -> List[int]:
    """Input indices in the order the prompt shows them."""
    order = list(range(count))
    return order[::-1] if settings.passage_order == "reverse" else order


def prompt_positions(count: int, settings: PromptSettings) -> List[int]:
    """For each input index, its place in the prompt (0 = shown first): ``display_order`` inverted."""
    positions = [0] * count
    for position, index in enumerate(display_order(count, settings)):
        positions[index] = position
    return positions


def build_layout(
    tokenizer, query: str, passages: Sequence[str], settings: PromptSettings, truncated: bool = False
) -> PromptLayout:
    """Render the prompt for ``query`` over ``passages`` and locate every span in tokens.

    ``truncated=True`` says the passages already went through ``truncate_passages``.
    """
    return build_layouts(tokenizer, [query], passages, settings, truncated)[0]


def build_layouts(
    tokenizer, queries: Sequence[str], passages: Sequence[str], settings: PromptSettings, truncated: bool = False
) -> List[PromptLayout]:
    """``build_layout`` for several queries over the same passages, in one batched tokenizer call."""
    texts = list(passages) if truncated else truncate_passages(tokenizer, passages, settings.max_passage_tokens)[0]
    contents = [_content(normalise(query), texts, settings) for query in queries]
    rendered = [_render(tokenizer, content, settings) for content, _, _ in contents]
    special = rendered[0][1]
    encoded = tokenizer([text for text, _ in rendered], add_special_tokens=special, return_offsets_mapping=True)
    layouts = []
    for (content, char_spans, query_chars), (text, _), ids, offsets in zip(
        contents, rendered, encoded["input_ids"], encoded["offset_mapping"]
    ):
        base = text.index(content)
        locate = _span_locator(offsets)
        spans = [locate(base + start, base + end) for start, end in char_spans]
        query_span = locate(base + query_chars[0], base + query_chars[1])
        layouts.append(PromptLayout(list(ids), spans, query_span, texts))
    return layouts


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


def _span_locator(offsets):
    """A function from a character span ``[start, end)`` to the tokens overlapping it.

    Offsets of a fast tokenizer never go backwards, so two binary searches find the span.
    """
    token_starts = [s for s, _ in offsets]
    token_ends = [e for _, e in offsets]
    if token_starts != sorted(token_starts) or token_ends != sorted(token_ends):
        raise ValueError("the tokenizer's character offsets are not monotone; use a fast tokenizer")

    def locate(start: int, end: int) -> Span:
        first = bisect.bisect_right(token_ends, start)  # first token ending after ``start``
        stop = bisect.bisect_left(token_starts, end)  # first token starting at or after ``end``
        if first >= stop:
            raise ValueError(f"characters {start}:{end} map to no token; the tokenizer gives no offsets there")
        return first, stop

    return locate
