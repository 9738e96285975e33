#!/usr/bin/env bash
# Fills .carry/ (ignored by git) with what tools/gpu_acceptance.py needs on a lent GPU machine
# that the machine's image lacks: the pinned transformers wheel (the image has an older one),
# regex at this checkout's version (transformers checks it at import), and the tokenizer folder
# (../shared and ~/.cache do not travel). Run it here, from the checkout root, then pass
# carry=[".carry"] with the command in tools/gpu_acceptance.py's docstring.
#
#   bash tools/gpu_acceptance_prepare.sh            # PYTHON=... to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/main/.venv/bin/python}
[ -x "$PY" ] || PY=python
CARRY=.carry
rm -rf "$CARRY/wheels" "$CARRY/tokenizer"
mkdir -p "$CARRY/wheels"
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
# pure python: one wheel for any platform
"$PY" -m pip download -q --no-deps -d "$CARRY/wheels" "transformers==$(version transformers)"
# compiled: the machine's Python 3.12 on x86-64 Linux
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels" "regex==$(version regex)"
"$PY" - "$CARRY/tokenizer" <<'PY'
import sys

from transformers import AutoTokenizer

from headrank_ir.engine.models import resolve_model_folder

AutoTokenizer.from_pretrained(resolve_model_folder("smollm2-135m")).save_pretrained(sys.argv[1])
PY
du -sh "$CARRY"/*
ls "$CARRY/wheels"
