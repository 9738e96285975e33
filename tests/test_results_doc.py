"""The README's one Results table is read from the committed reports, never typed by hand: each
cell against ``runs/loco.smollm2-135m.json`` and ``runs/results.csv``."""

from __future__ import annotations

import csv
import json
import re

from pipeline_support import REPO

SETS = {"DL19": "dl19", "DL20": "dl20", "Cranfield": "cranfield", "Vaswani": "vaswani"}


def readme_rows() -> dict[str, list[str]]:
    section = (REPO / "README.md").read_text().split("## Results\n", 1)[1]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows if cells[0].strip() in SETS}


def number(cell: str) -> float:
    return float(re.match(r"[0-9.]+", cell).group())


def test_the_readme_results_table_is_the_committed_reports():
    loco = json.loads((REPO / "runs" / "loco.smollm2-135m.json").read_text())
    held_out = {fold["held_out"]: fold for fold in loco["held_out"]}
    with open(REPO / "runs" / "results.csv", newline="") as handle:
        cost = {
            r["dataset"]: float(r["s_per_query"]) for r in csv.DictReader(handle) if r["method"] == "headrank-default"
        }
    rows = readme_rows()
    assert list(rows) == list(SETS)
    for label, name in SETS.items():
        queries, bm25, default, nested, seconds = rows[label]
        shipped, fold = loco["shipped"]["per_set"][name], held_out[name]
        assert int(queries) == fold["queries"]
        assert number(bm25) == round(shipped["bm25"], 4)
        assert number(default) == round(shipped["loco"], 4)
        assert f"({shipped['loco'] - shipped['bm25']:+.3f})".replace("-", "−") in default
        system = fold["systems"]["recipe + fusion"]
        assert number(nested) == round(system["ndcg"], 4)
        assert f"({system['delta']:+.3f}, p {system['p']:.2f})".replace("-", "−") in nested
        assert float(seconds) == round(cost[name], 2)
    full = (REPO / "docs" / "results.md").read_text()
    assert "runs/loco.smollm2-135m.md" in full and "](../runs/quality_cost.png)" in full
