"""Text files as the readers see them: lines decoded strictly (gzip by content, a byte-order
mark at a line's start dropped, one inside refused), fields split on ASCII whitespace and
numbers parsed as trec_eval parses them — one place every input file is read through, so a
bad byte, mark or number is reported with its file and line.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from headrank_ir.engine.checks import check_text
from headrank_ir.errors import InputError

# ---------------------------------------------------------------------------------------------
# Lines of text files, decoded strictly so that bad bytes are reported with their line.


def require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"file not found: {path}" if not path.exists() else f"not a file: {path}")


_GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip: the name and the content must agree, so
    that plain text named ``.gz`` (or a ``.gz`` file renamed) is reported as such, by name."""
    require_file(path)
    with path.open("rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    if path.name.lower().endswith(".gz") != gzipped:
        raise InputError(
            "is named .gz but is not gzip-compressed; rename it without .gz or compress it (gzip)"
            if not gzipped
            else "is gzip-compressed but not named .gz; add .gz to its name or decompress it (gzip -d)",
            path,
        )
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes; a truncated or corrupt ``.gz`` is an error naming the file."""
    with _open_binary(path) as handle:
        try:
            yield from handle
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise InputError(
                f"the gzip data is truncated or corrupt ({error}); re-download or re-compress it", path
            ) from None


def iter_lines(path: os.PathLike | str) -> Iterator[tuple[int, str]]:
    """``(line number, text without the newline)`` for each line; non-UTF-8 bytes are an error.

    A UTF-8 byte-order mark (what some Windows editors put first) is dropped at the start of
    *every* line, as trec_eval drops it at the start of the file: ``cat a b`` of two such files
    puts the second one's mark at the start of a line in the middle. A mark anywhere else is
    refused by the readers of id-and-number formats (:func:`no_mark_inside`) and named in a
    JSON line that does not parse; inside a JSON string it is text.
    """
    path = Path(path)
    for number, raw in enumerate(_raw_lines(path), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"bytes that are not UTF-8 at column {error.start + 1} ({raw[error.start : error.end]!r})",
                path,
                number,
            ) from None
        yield number, text.rstrip("\r\n").removeprefix(BOM)


_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def split_fields(line: str) -> list[str]:
    """The whitespace-separated fields of a run or qrels line, split where trec_eval splits
    (ASCII whitespace only: Python's ``str.split()`` would also split at a no-break space)."""
    return [field for field in _ASCII_SPACE.split(line) if field]


def no_mark_inside(line: str, path: Path, number: int) -> None:
    """In a text format whose fields are ids and numbers, a byte-order mark left inside a line
    (two files joined without a newline between them) is an error naming its column, never part
    of an id or a number. (Inside a JSON string it is text, and kept.)"""
    if BOM in line:
        raise InputError(
            f"a byte-order mark (U+FEFF) at column {line.index(BOM) + 1}, inside the line: were two files "
            "joined without a newline between them? Remove it",
            path,
            number,
        )


def check_field(value: str, what: str, path: os.PathLike | str | None = None, number: int | None = None) -> str:
    """A field read from a file: :func:`headrank_ir.engine.checks.check_text`'s refusal (a lone
    surrogate) reported with the file and line."""
    try:
        return check_text(value, what)
    except ValueError as error:
        raise InputError(str(error), path, number) from None


def json_line(path: Path, number: int, line: str) -> dict:
    """One line of a JSON Lines file as an object; a whole JSON document (one array, or an object
    spread over lines) is reported as what it is, with the one-liner that converts it."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        stripped = line.strip()
        if number == 1 and stripped.startswith("["):
            raise InputError(_NOT_JSONL.format(what="one JSON array"), path, number) from None
        if number == 1 and stripped == "{":
            raise InputError(_NOT_JSONL.format(what="one JSON object over many lines"), path, number) from None
        if BOM in line:
            no_mark_inside(line, path, number)
        raise InputError(f"not valid JSON: {error.msg} at column {error.colno}", path, number) from None
    if isinstance(value, list) and number == 1:
        raise InputError(_NOT_JSONL.format(what="one JSON array"), path, number)
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {type(value).__name__}", path, number)
    return value


_NOT_JSONL = (
    "the file is {what}, not JSON Lines: give one JSON object per line (convert with: jq -c '.[]' FILE > FILE.jsonl)"
)


# ---------------------------------------------------------------------------------------------
# Numbers, read as trec_eval reads them (C's strtod/atol on plain decimal text), but strictly:
# Python's float() and int() also take '1_000', '１' (full-width digits), 'infinity' and
# surrounding whitespace, which trec_eval would read differently or not at all.

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# A relevance grade is an integer, written as one: '1.5' is refused (trec_eval's atol would
# silently read 1), and so is '1.0', as ir_measures' own qrels reader (int()) refuses it.
_GRADE = re.compile(r"[+-]?[0-9]+")
# TREC grades are small (-2 … 4 in practice); a grade beyond this is a corrupt line, and one
# beyond 32 bits overflows pytrec_eval and zeroes every metric.
MAX_GRADE = 1000


def parse_score(text: str, what: str, path: Path | None = None, number: int | None = None) -> float:
    """A finite decimal number (``12``, ``-3.5``, ``1e-4``), else :class:`InputError`."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not math.isfinite(value):  # nan, inf, 1e999
        raise InputError(f"{what} {text!r} is not finite", path, number)
    if not _DECIMAL.fullmatch(text):
        raise InputError(f"{what} {text!r} is not a decimal number (like 12.5 or -3e-2)", path, number)
    return value


def parse_integer(text: str, what: str, path: Path | None = None, number: int | None = None) -> int:
    """A whole number in plain ASCII digits (``3``, ``-1``), else :class:`InputError`."""
    if not _INTEGER.fullmatch(text):
        raise InputError(f"{what} {text!r} must be an integer", path, number)
    return int(text)


def parse_grade(text: str, path: Path | None = None, number: int | None = None) -> int:
    if not _GRADE.fullmatch(text):
        raise InputError(f"relevance grade {text!r} is not an integer (trec_eval reads whole grades)", path, number)
    grade = int(text)
    if abs(grade) > MAX_GRADE:
        raise InputError(
            f"relevance grade {text!r} is out of range (-{MAX_GRADE} to {MAX_GRADE}); TREC grades are small integers",
            path,
            number,
        )
    return grade


def first_key(record: Mapping, keys: tuple[str, ...], what: str, path: Path, number: int) -> str:
    for key in keys:
        if key in record:
            value = record[key]
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise InputError(
                    f"{what} field {key!r} must be a string, got {type(value).__name__}",
                    path,
                    number,
                )
            return check_field(str(value), f"{what} field {key!r}", path, number)
    raise InputError(f"no {what} field (looked for {', '.join(keys)})", path, number)
