"""``python -m headrank_ir.java MODULE [ARGS…]``: run a Pyserini command with Java 21 set up
(``pyserini.index.lucene``, ``pyserini.search.lucene`` …), for runtimes where the plain command
would abort. The set-up itself is :mod:`headrank_ir.pipeline.jvm`."""

from __future__ import annotations

import sys

from headrank_ir.pipeline.jvm import main

if __name__ == "__main__":
    sys.exit(main())
