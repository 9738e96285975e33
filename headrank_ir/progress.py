"""Progress for long loops: tqdm's bar on a terminal, plain periodic lines anywhere else, and
the :class:`Throughput` a run reports at its end.

A bar redraws itself with carriage returns, which turn a log file into one very long line; when
stderr is not a terminal (a log, a pipe, a batch job) the same calls print one line every
``every`` seconds and one at the end instead, each with the elapsed time and, once the total is
known and some work done, the estimated time left (``elapsed 1:02, ETA 4:10``).

``--quiet`` (:class:`QuietAction`, the commands' flag) silences both for the rest of the
process: :func:`set_quiet`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO


class PlainProgress:
    """The part of tqdm's interface the package uses (``update``, ``set_postfix_str``, iteration,
    ``with``), written as whole lines: ``desc: done/total unit [postfix]``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        every: float = 30.0,
        file: TextIO | None = None,
    ):
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.desc, self.unit, self.every = desc, unit, every
        self.n = initial
        self.postfix = ""
        self.file = file or sys.stderr
        self._started = self._last = time.monotonic()
        self._initial = initial  # done before this process (a resumed run): not in the rate
        self._printed: int | None = None

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every:
            self._print()

    def set_postfix_str(self, postfix: str) -> None:
        self.postfix = postfix

    def close(self) -> None:
        if self.n != self._printed:  # the final count, unless the last periodic line showed it
            self._print()

    def _print(self) -> None:
        total = f"/{self.total}" if self.total is not None else ""
        postfix = f" [{self.postfix}]" if self.postfix else ""
        print(f"{self.desc}: {self.n}{total} {self.unit}{postfix}, {self._times()}", file=self.file, flush=True)
        self._last, self._printed = time.monotonic(), self.n

    def _times(self) -> str:
        """``elapsed M:SS`` and, when it can be told, ``ETA M:SS`` from the rate so far."""
        elapsed = time.monotonic() - self._started
        done = self.n - self._initial
        times = f"elapsed {clock(elapsed)}"
        if self.total is not None and done > 0 and self.n < self.total:
            times += f", ETA {clock(elapsed / done * (self.total - self.n))}"
        return times

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update()
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def clock(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour (tqdm's layout)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _length(iterable: Iterable) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Silence every progress bar and line of this process (``--quiet``), or bring them back:
    ours, and transformers' ("Loading weights")."""
    global _quiet
    _quiet = quiet
    from transformers.utils import logging as transformers_logging

    (transformers_logging.disable_progress_bar if quiet else transformers_logging.enable_progress_bar)()


class QuietAction(argparse.Action):
    """``parser.add_argument("--quiet", action=QuietAction)``: a flag that, when given, sets
    ``args.quiet`` and silences the progress of the whole run (:func:`set_quiet`), so a command
    needs no more than the flag; absent, the process keeps its progress lines."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=False, help=help or "no progress bars or lines")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, True)
        set_quiet(True)


def progress(iterable: Iterable | None = None, *, every: float = 30.0, **options: Any) -> Any:
    """``tqdm(iterable, **options)`` when stderr is a terminal, else :class:`PlainProgress` with
    the options it knows (``total``, ``desc``, ``unit``, ``initial``), a line every ``every`` s.
    ``disable=True`` (tqdm's), or ``--quiet`` (:func:`set_quiet`), stays silent either way."""
    if _quiet:
        options["disable"] = True
    if sys.stderr.isatty() or options.get("disable"):
        from tqdm import tqdm

        return tqdm(iterable, file=sys.stderr, **options)
    known = {k: options[k] for k in ("total", "desc", "unit", "initial") if k in options}
    return PlainProgress(iterable, every=every, **known)


@dataclass
class Throughput:
    """Queries and passages ranked, and the seconds spent ranking them (waits for the writer and
    the bar excluded): what a run's closing line reports."""

    queries: int = 0
    passages: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.passages / self.seconds if self.seconds else 0.0
