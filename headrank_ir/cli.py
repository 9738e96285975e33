"""What every long-running command does around its work: logging, one-line errors, Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from .inputs import USER_ERRORS, error_line


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace, resume_hint: str) -> int:
    """Call ``run(args)``; bad input becomes one ``error:`` line and exit 1, Ctrl-C exit 130."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("headrank_ir").setLevel(logging.INFO)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume {resume_hint}", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(error_line(error), file=sys.stderr)
        return 1
