"""Every example in docs/pipeline.md runs (tiny model, two queries, a scratch checkout)."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from pipeline_support import REPO, doc_blocks, doc_lines, run_doc_line

from headrank_ir import rerank

DOC = REPO / "docs" / "pipeline.md"
# Keep the examples quick: the tiny model, two queries, ten hits, five reranked.
QUICK = ["--max-queries", "2", "--hits", "10", "--depth", "5"]


def blocks(language: str, online: bool = False) -> list[str]:
    return doc_blocks(DOC, language, online)


def lines(online: bool = False) -> list[str]:
    return doc_lines(DOC, online)


def commands(online: bool = False) -> list[list[str]]:
    return [shlex.split(line) for line in lines(online)]


def run_line(line: str, model: str) -> tuple[int, str]:
    return run_doc_line(line, model, QUICK)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, tiny_model_dir, monkeypatch_module) -> list[tuple[list[str], int, str]]:
    """Run the documented commands in order from a scratch folder laid out like the repository."""
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").symlink_to(SHARED_DATA.parent)
    work = root / "main"
    work.mkdir()
    monkeypatch_module.chdir(work)
    return [(shlex.split(line), *run_line(line, tiny_model_dir)) for line in lines()]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_doc_has_each_kind_of_example():
    programs = [argv[2] if argv[0] == "python" else argv[0] for argv in commands()]
    assert programs.count("headrank_ir.rerank") == 2 and "headrank_ir.evaluate" in programs
    assert "headrank_ir.java" in programs and len(blocks("python")) == 3


def test_shell_examples_run(checkout):
    for argv, code, output in checkout:
        assert code == 0, (argv, output)
    outputs = {argv[2]: output for argv, _, output in checkout if argv[0] == "python"}
    assert re.search(r"^nDCG@10 +\d\.\d{4}$", outputs["headrank_ir.evaluate"], re.MULTILINE)
    assert Path("runs/run.dl19.headrank.txt").exists() and Path("runs/run.cranfield.headrank.txt").exists()
    assert "first stage" in outputs["headrank_ir.rerank"]


def test_online_examples_parse():
    (argv,) = commands(online=True)
    args = rerank.build_parser().parse_args(argv[3:])
    assert (args.index, args.topics, args.qrels) == ("msmarco", "dl19", "dl19")


def test_python_examples_run(checkout, tiny_model_dir, capsys):
    source = "\n".join(blocks("python")).replace('"smollm2-135m"', repr(tiny_model_dir))
    namespace: dict = {}
    exec(compile(source, str(DOC), "exec"), namespace)  # noqa: S102 -- running the documented examples is the point
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5
    assert namespace["result"].candidates[0].docid == printed[0].split()[0]
    assert sorted(ast.literal_eval(printed[3])) == ["d1", "d2"]
    assert printed[4].split()[0] == ast.literal_eval(printed[3])[0]  # rank and rerank_batch agree
