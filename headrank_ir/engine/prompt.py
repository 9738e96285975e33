"""The listwise prompt: passages first, the query last (ICR's layout), with exact token spans.

Two ways to the same ids. ``build_layout`` renders the whole prompt and takes every span from
the tokenizer's character offsets over it: the reference. ``PromptPieces`` tokenises each
passage once per query and joins ids: every piece boundary sits just before a single space
that precedes a word (``"[2]" | " passage…"``, ``"…Query:" | " query"``), where byte-level
BPE pre-tokenisers (GPT-2's, Llama 3's, Qwen's) always split, so the joined ids equal the
whole prompt's. A passage's piece carries its newline (``" passage\n"``), since Llama 3/Qwen
merge punctuation with a following newline; the last passage shown in a window carries the
instruction too (``"\n\nPlease…Query:"``), since they merge newlines. A tokenizer whose pieces do
not join to the reference ids on a probe prompt (e.g. a SentencePiece one adding a prefix
space) falls back to ``build_layout``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from headrank_ir.engine.profile import PromptSettings

INTRO = "Here are some passages:\n\n"
INSTRUCTION = "\nPlease find information that is relevant to the following query in the passages above.\n\nQuery: "
PLAIN_TEMPLATE = "{content}\n"  # for tokenizers without a chat template
TAIL = "\n" + INSTRUCTION.removesuffix(" ")  # after the last passage shown; the query brings the space
MARK = "HEADRANK_PROMPT_CONTENT"  # stands for the content when splitting a chat template in two

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


@dataclass(frozen=True)
class Piece:
    """Token ids of ``" " + text + after``; ``span`` the tokens overlapping ``text``."""

    ids: List[int]
    span: Span

    @property
    def length(self) -> int:
        return self.span[1] - self.span[0]


def encode_pieces(tokenizer, texts: Sequence[str], after: str = "\n") -> List[Piece]:
    """``" " + text + after`` for each text, in one batched tokenizer call."""
    return [piece for piece, _ in _encode(tokenizer, texts, after)]


def _encode(tokenizer, texts: Sequence[str], after: str):
    if not texts:
        return []
    encoded = tokenizer([f" {t}{after}" for t in texts], add_special_tokens=False, return_offsets_mapping=True)
    return [
        (Piece(list(ids), _span_locator(offsets)(1, 1 + len(text))), offsets)
        for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"])
    ]


def passage_pieces(tokenizer, passages: Sequence[str], max_tokens: int) -> Tuple[List[str], List[Piece]]:
    """Whitespace-normalise each passage and cut it after ``max_tokens`` of its tokens in the
    prompt; returns the texts and their pieces. One tokenizer call, a second for the cut ones."""
    texts = [normalise(p) for p in passages]
    encoded = _encode(tokenizer, texts, "\n")
    cut = [i for i, (piece, _) in enumerate(encoded) if piece.length > max_tokens]
    for i in cut:
        piece, offsets = encoded[i]
        texts[i] = texts[i][: offsets[piece.span[0] + max_tokens - 1][1] - 1].rstrip()  # - 1: the leading space
    pieces = [piece for piece, _ in encoded]
    for i, piece in zip(cut, encode_pieces(tokenizer, [texts[i] for i in cut])):
        pieces[i] = piece
    return texts, pieces


def truncate_passages(tokenizer, passages: Sequence[str], max_tokens: int) -> Tuple[List[str], List[int]]:
    """The texts ``passage_pieces`` shows and their token counts in the prompt."""
    texts, pieces = passage_pieces(tokenizer, passages, max_tokens)
    return texts, [piece.length for piece in pieces]


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


class PromptPieces:
    """A tokenizer's fixed prompt parts, tokenised once; joins a query's prompts from the pieces
    of its passages (see the module docstring). ``exact`` says whether the joined ids matched
    ``build_layouts`` on a probe; where not, ``layouts`` uses ``build_layouts`` itself."""

    def __init__(self, tokenizer, settings: PromptSettings):
        self.tokenizer, self.settings = tokenizer, settings
        before, self._after, special = _template_ends(tokenizer, settings)
        ends = _special_ends(tokenizer) if special else ([], [])
        self._head: List[int] = []
        self._trail: List[int] = []
        self._labels: Dict[int, List[int]] = {}
        self.exact = ends is not None
        if self.exact:
            self._head = ends[0] + self._ids(before + INTRO + "[1]")
            self._trail = ends[1]
            self.exact = self._matches_reference()

    def layouts(self, query: str, texts: Sequence[str], pieces: Sequence[Piece], windows) -> List[List[PromptLayout]]:
        """Per window (indices into ``texts``), the prompt for ``query`` and, when calibrating,
        for the calibration query; ``texts`` and ``pieces`` from ``passage_pieces``."""
        queries = [query, self.settings.calibration_query] if self.settings.calibrate else [query]
        if not self.exact:
            return [build_layouts(self.tokenizer, queries, [texts[i] for i in w], self.settings, True) for w in windows]
        ends = encode_pieces(self.tokenizer, [normalise(q) for q in queries], self._after)
        last = [w[display_order(len(w), self.settings)[-1]] for w in windows]
        tails = encode_pieces(self.tokenizer, [texts[i] for i in last], TAIL)
        return [
            [self.join([texts[i] for i in w], [pieces[i] for i in w], tail, end) for end in ends]
            for w, tail in zip(windows, tails)
        ]

    def join(self, texts: Sequence[str], pieces: Sequence[Piece], tail: Piece, query: Piece) -> PromptLayout:
        """The prompt over ``texts`` (input order) from their pieces; ``tail`` is the piece with the
        instruction of the passage shown last, ``query`` the query's piece."""
        ids = list(self._head)
        spans: List[Optional[Span]] = [None] * len(texts)
        order = display_order(len(texts), self.settings)
        for shown, index in enumerate(order, start=1):
            if shown > 1:
                ids += self._label(shown)
            piece = tail if shown == len(order) else pieces[index]
            spans[index] = (len(ids) + piece.span[0], len(ids) + piece.span[1])
            ids += piece.ids
        query_span = (len(ids) + query.span[0], len(ids) + query.span[1])
        return PromptLayout(ids + query.ids + self._trail, spans, query_span, list(texts))

    def _label(self, shown: int) -> List[int]:
        if shown not in self._labels:
            self._labels[shown] = self._ids(f"[{shown}]")
        return self._labels[shown]

    def _ids(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _matches_reference(self) -> bool:
        """Whether joined prompts equal the whole-prompt tokenisation on passages and queries that
        end and start the ways real ones do (a word, a digit, punctuation, a quote)."""
        texts, pieces = passage_pieces(self.tokenizer, PROBE_PASSAGES, self.settings.max_passage_tokens)
        queries = [PROBE_QUERY, self.settings.calibration_query]
        for count in (1, len(texts)):
            joined = self.layouts(PROBE_QUERY, texts[:count], pieces[:count], [list(range(count))])[0]
            whole = build_layouts(self.tokenizer, queries, texts[:count], self.settings, truncated=True)
            if joined != whole[: len(joined)]:
                return False
        return True


PROBE_PASSAGES = (
    "1889: the Eiffel Tower opens (Paris).",
    "“Quoted” start, and a question?",
    "Ünïcödé — dashes – and digits 3.14",
    "it ends with a word",
)
PROBE_QUERY = "what's 2 + 2?"


def _template_ends(tokenizer, settings: PromptSettings) -> Tuple[str, str, bool]:
    """The rendered prompt's text before and after the content, and whether the tokenizer adds
    its special tokens (see ``_render``)."""
    rendered, special = _render(tokenizer, MARK, settings)
    before, _, after = rendered.partition(MARK)
    return before, after, special


def _special_ends(tokenizer) -> Optional[Tuple[List[int], List[int]]]:
    """The special tokens the tokenizer puts before and after a text; None when it changes the text's own tokens."""
    bare = list(tokenizer(MARK, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(MARK, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return None


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
