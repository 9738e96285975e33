"""The peers are optional: nothing imports them until their objects are seen or their modules are
asked for, and a missing one is an ImportError that says what to install."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_a_missing_rerankers_names_what_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "headrank_ir.rerankers_ranker", raising=False)
    monkeypatch.setitem(sys.modules, "rerankers", None)  # what an absent package looks like to import
    for name in [m for m in sys.modules if m.startswith("rerankers.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"pip install rerankers==0\.10\.0"):
        importlib.import_module("headrank_ir.rerankers_ranker")


def test_a_missing_rank_llm_names_what_to_install(monkeypatch):
    from headrank_ir.integrations import rank_llm

    for name in [m for m in sys.modules if m == "rank_llm" or m.startswith("rank_llm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rank_llm", None)
    with pytest.raises(ImportError, match=r"pip install rank_llm==0\.25\.7"):
        rank_llm.import_rank_llm()
    monkeypatch.setitem(sys.modules, "rank_llm.data", None)
    with pytest.raises(ImportError, match=r"pip install rank_llm==0\.25\.7"):
        rank_llm.to_rank_llm([])


def test_the_verbs_import_no_peer_until_its_objects_are_seen():
    code = (
        "import sys\n"
        "from headrank_ir.engine import ranker\n"
        "from headrank_ir.integrations.detect import is_rank_llm, is_rerankers_document\n"
        "assert not is_rank_llm(object()) and not is_rerankers_document('text')\n"
        "print(sorted(m for m in ('rank_llm', 'rerankers', 'vllm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
