"""The fuzz harness (tests/fuzz_inputs.py) still starts as the script README.md names: it imports
the suite's cases from beside it, so a move or a renamed case breaks it before anyone runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline_support import REPO


def test_the_fuzz_harness_runs_as_a_script():
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's package, not another one installed
    argv = [sys.executable, str(REPO / "tests" / "fuzz_inputs.py"), "--help"]
    shown = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "--out" in shown.stdout
