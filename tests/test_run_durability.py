"""The run writer's durability: a query's bytes are synced before its journal line, and a partial
run shorter than its journal is refused even where the journal has no checksum (issue 28)."""

from __future__ import annotations

import json
import os

import pytest

from headrank_ir.errors import InputError
from headrank_ir.pipeline import runfile
from headrank_ir.pipeline.runfile import RunWriter
from headrank_ir.records import Candidate, Query, Result

HEADER = {"model": "m", "depth": 3}
FIRST = Result(Query("query 1", "1"), [Candidate("a", 2.0), Candidate("b", 1.0)])
SECOND = Result(Query("query 2", "2"), [Candidate("c", 0.5)])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names synced descriptors through /proc")
def test_a_query_is_synced_data_first_then_journal(tmp_path, monkeypatch):
    path = tmp_path / "run.txt"
    writer = RunWriter(path, HEADER)
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(runfile.os, "fsync", recording_fsync)
    writer.write(FIRST)
    assert synced == [str(writer.partial), str(writer.journal_path)]
    writer.write(SECOND)
    assert synced[2:] == [str(writer.partial), str(writer.journal_path)]
    writer.close()


def without_checksums(journal_path) -> None:
    """The journal as an older version wrote it: no sha256 on any line."""
    lines = [json.loads(line) for line in journal_path.read_text().splitlines()]
    for line in lines:
        line.pop("sha256", None)
    journal_path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_a_shortened_partial_is_refused_under_an_older_journal(tmp_path):
    path = tmp_path / "run.txt"
    writer = RunWriter(path, HEADER)
    writer.write(FIRST)
    writer.write(SECOND)
    writer.close()
    without_checksums(writer.journal_path)
    data = writer.partial.read_bytes()
    writer.partial.write_bytes(data[:-3])  # the last query's line lost its end
    with pytest.raises(InputError, match=r"run\.txt\.partial is missing or shorter than its journal says"):
        RunWriter(path, HEADER)
    assert writer.partial.read_bytes() == data[:-3]  # left as found


def test_an_older_journal_of_a_whole_partial_resumes(tmp_path):
    path = tmp_path / "run.txt"
    writer = RunWriter(path, HEADER)
    writer.write(FIRST)
    writer.close()
    without_checksums(writer.journal_path)
    with RunWriter(path, HEADER) as resumed:
        assert resumed.done == {"1"}
        resumed.write(SECOND)
        resumed.finish()
    assert path.read_text().splitlines() == [
        "1 Q0 a 1 2.000000 headrank",
        "1 Q0 b 2 1.000000 headrank",
        "2 Q0 c 1 0.500000 headrank",
    ]
