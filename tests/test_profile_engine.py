"""tools/profile_engine.py (the operator profile the README's dtype paragraph cites) still runs."""

from __future__ import annotations

import subprocess
import sys

from conftest import SHARED_DATA
from pipeline_support import REPO


def test_the_profile_has_a_table_per_dtype_and_the_kernel_timings(tmp_path):
    output = tmp_path / "profile.md"
    argv = [sys.executable, str(REPO / "tools" / "profile_engine.py"), "--dtypes", "float32", "bfloat16"]
    argv += ["--passages", "2", "--rows", "4", "--data", str(SHARED_DATA / "msmarco-passage" / "dl19")]
    subprocess.run(argv + ["--output", str(output)], cwd=REPO, check=True, capture_output=True, timeout=300)
    text = output.read_text()
    assert text.count("`rank`") == 2 and "## float32" in text and "## bfloat16" in text
    assert "aten::mm" in text  # the operator tables, by self CPU time
    kernels = text.split("seconds by kernel", 1)[1]
    assert "| float32 |" in kernels and "| bfloat16 |" in kernels and kernels.count(" | ") >= 6
