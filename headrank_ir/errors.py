"""Errors a command reports as one line instead of a traceback; every layer raises them."""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input; the message starts with ``file:line:`` when a file and line are known."""

    def __init__(
        self,
        message: str,
        path: os.PathLike | str | None = None,
        line: int | None = None,
    ):
        if path is not None and line is not None:
            where = f"{path}:{line}: "
        else:
            where = f"{path}: " if path is not None else ""
        super().__init__(where + message)
        self.path = path
        self.line = line


class JavaNotFoundError(RuntimeError):
    """No Java runtime recent enough for Pyserini was found."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


# Errors a command reports as one line (bad input, missing files, no Java) rather than a traceback.
USER_ERRORS = (ValueError, OSError, JavaNotFoundError, MissingExtra)


def error_line(error: BaseException) -> str:
    """``error: …`` on one line, for the command line."""
    return "error: " + (" ".join(str(error).splitlines()) or type(error).__name__)
