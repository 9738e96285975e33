"""Run the bench grid one cell per command, each under a shared CPU lock (how runs/ was made).

    .venv/bin/python tools/bench_grid.py --depth 20 --max-queries cranfield=50 vaswani=50

On a shared machine every heavy job takes ``flock LOCK``; one bench command per cell releases
the lock between cells, so that other jobs are not starved for hours, and each timing runs
alone. Cells go cheapest and most needed first: the ICR cells feed the QRHead fallback and the
head map, the DL cells come before the Cranfield/Vaswani ones, and the small Vaswani (93
queries of short abstracts) before Cranfield (225). Finished cells are skipped by the bench
itself, so the script can be stopped and started again at will.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# The data beside this checkout (the project's layout), unless $HEADRANK_DATA or --data says otherwise.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

ORDER = [
    ("bm25", ("dl19", "dl20", "cranfield", "vaswani")),
    ("icr", ("dl19", "dl20")),
    ("minilm", ("dl19", "dl20", "cranfield", "vaswani")),
    ("minilm-dense", ("cranfield", "vaswani")),
    ("qrhead", ("dl19", "dl20")),
    ("headrank-select", ("dl19", "dl20")),
    ("headrank", ("dl19", "dl20")),
    ("rankgpt", ("dl19", "dl20")),
    ("icr", ("vaswani", "cranfield")),
    ("qrhead", ("vaswani", "cranfield")),
    ("headrank-select", ("vaswani", "cranfield")),
    ("headrank", ("vaswani", "cranfield")),
    ("rankgpt", ("vaswani", "cranfield")),
    ("headrank-default", ("dl19", "dl20", "cranfield", "vaswani")),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lock",
        default="/tmp/headrank-cpu.lock",
        help="flock file shared by heavy jobs",
    )
    parser.add_argument("--methods", nargs="+", help="only these methods (in the order above)")
    args, bench_args = parser.parse_known_args(argv)
    env = {"HEADRANK_DATA": str(SHARED_DATA), **os.environ}
    failed = 0
    for method, datasets in ORDER:
        if args.methods and method not in args.methods:
            continue
        for dataset in datasets:
            command = [
                "flock",
                args.lock,
                sys.executable,
                "-m",
                "headrank_ir.bench",
                "--methods",
                method,
                "--datasets",
                dataset,
                *bench_args,
            ]
            print("+", " ".join(command), flush=True)
            # one failed cell must not stop the rest
            failed += subprocess.run(command, check=False, env=env).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
