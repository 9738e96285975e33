"""The process's handlers of the fatal signals, put back after a library that takes them.

Ray's driver installs its own crash reporter for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP
and SIGTERM in ``ray.init`` and resets them all to the default in ``ray.shutdown``. A JVM in the
same process — Pyserini's first stage — raises SIGSEGV on purpose (implicit null checks in compiled
code, safepoint polls) and needs its own handler to turn it into a Java exception: without it the
process dies at random, with a bare "Segmentation fault" once Ray has shut down. So every
``ray.init`` and ``ray.shutdown`` here runs inside :func:`kept_signal_handlers`.

The handlers are read and written at the C level (``sigaction``): Python's ``signal`` module only
knows the handlers it installed itself, and the JVM's and faulthandler's are not among them.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

# Ray's crash reporter (absl's failure signal handler) takes exactly these.
FATAL_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT", "SIGTRAP", "SIGTERM")
    if hasattr(signal, name)
)
# Room for a ``struct sigaction`` on every POSIX C library (152 bytes on glibc x86-64, 16 on
# macOS), read and written back whole without knowing its layout; its handler comes first.
_SIGACTION_SIZE = 512


def _libc() -> ctypes.CDLL | None:
    """The C library, where it has ``sigaction`` (not on Windows, where Ray installs no handlers)."""
    libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None
    return libc if libc is not None and hasattr(libc, "sigaction") else None


def _sigaction(libc: ctypes.CDLL, number: int, new: ctypes.Array | None) -> ctypes.Array:
    """Install ``new`` (when given) for signal ``number``; the action it had before, whole."""
    old = ctypes.create_string_buffer(_SIGACTION_SIZE)
    if libc.sigaction(number, new, old) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"sigaction({signal.Signals(number).name}): {os.strerror(code)}")
    return old


def signal_handler(number: int) -> int:
    """The address of the C handler now installed for signal ``number`` (0 is the default)."""
    libc = _libc()
    if libc is None:
        return 0
    return ctypes.c_void_p.from_buffer(_sigaction(libc, number, None)).value or 0


@contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """Run the block, then put the handlers of :data:`FATAL_SIGNALS` back as they were before it."""
    libc = _libc()
    saved = {number: _sigaction(libc, number, None) for number in FATAL_SIGNALS} if libc else {}
    try:
        yield
    finally:
        for number, action in saved.items():
            _sigaction(libc, number, action)
