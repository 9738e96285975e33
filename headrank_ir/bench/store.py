"""Where a cell's files live, and atomic writes so that an interrupted bench never leaves half a cell."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrank_ir.atomic import write_atomic


@dataclass(frozen=True)
class CellKey:
    """Everything a cell's numbers depend on besides the code: the folder names spell it out."""

    model: str
    dataset: str
    method: str
    depth: int
    max_queries: int | None  # None: every query
    dtype: str = "float32"  # the models' precision: bfloat16 moves scores (a float32 folder keeps its old name)

    def folder(self, bench_dir: Path) -> Path:
        queries = "all" if self.max_queries is None else f"q{self.max_queries}"
        precision = "" if self.dtype == "float32" else f".{self.dtype}"
        return bench_dir / model_label(self.model) / f"{self.dataset}.{queries}.d{self.depth}{precision}"

    def result(self, bench_dir: Path) -> Path:
        return self.folder(bench_dir) / f"{self.method}.json"

    def run(self, bench_dir: Path) -> Path:
        return self.folder(bench_dir) / f"{self.method}.trec"

    def skip_note(self, bench_dir: Path) -> Path:
        return self.folder(bench_dir) / f"{self.method}.skipped.json"


def model_label(model: str) -> str:
    """A folder-safe name: a short name as is, a path or hub id by its last part."""
    return Path(model.rstrip("/")).name or "model"


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
