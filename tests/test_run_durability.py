"""Durable at batch granularity: ``RunWriter.sync`` fsyncs the data, then the journal lines that
record it — once per batch, not per query — and an interrupted run resumes byte-identical; a
partial run shorter than its journal is refused even where the journal has no checksum."""

from __future__ import annotations

import json
import os

import pytest
from test_runfile import HEADER, RESULTS, write_all

from headrank_ir.errors import InputError
from headrank_ir.pipeline import runfile
from headrank_ir.pipeline.runfile import RunWriter
from headrank_ir.records import Candidate, Query, Result

FIRST = Result(Query("query 1", "1"), [Candidate("a", 2.0), Candidate("b", 1.0)])
SECOND = Result(Query("query 2", "2"), [Candidate("c", 0.5)])


def fsynced_files(monkeypatch) -> list[str]:
    """The names of the files ``os.fsync`` is called on, in order."""
    names: list[str] = []
    real = os.fsync

    def recording(fd):
        names.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return real(fd)

    monkeypatch.setattr(runfile.os, "fsync", recording)
    monkeypatch.setattr("headrank_ir.pipeline.journal.os.fsync", recording)
    return names


def journal_qids(writer: RunWriter) -> list[str]:
    lines = [json.loads(line) for line in writer.journal_path.read_text().splitlines()[1:]]
    return [entry["qid"] for entry in lines if "qid" in entry]


def test_a_sync_makes_the_data_durable_before_the_journal_records_it(tmp_path, monkeypatch):
    writer = RunWriter(tmp_path / "run.txt", HEADER)
    synced = fsynced_files(monkeypatch)
    for result in RESULTS:
        writer.write(result)
    assert synced == [] and journal_qids(writer) == []  # written, not yet recorded
    writer.sync()
    assert synced == ["run.txt.partial", "run.txt.journal"]  # one pair for the whole batch, data first
    assert journal_qids(writer) == ["1", "2", "3"]
    writer.sync()  # nothing new: no fsync
    assert len(synced) == 2
    writer.close()


def test_queries_written_after_the_last_sync_are_redone_on_resume(tmp_path):
    uninterrupted = write_all(tmp_path / "a" / "run.txt", RESULTS).path.read_bytes()
    path = tmp_path / "b" / "run.txt"
    writer = RunWriter(path, HEADER)
    writer.write(RESULTS[0])
    writer.sync()
    writer.write(RESULTS[1])  # the process dies here: data in the file, no journal line for it
    writer._unsynced.clear()  # what a killed process loses
    writer._close_files()
    writer._lock.release()
    assert journal_qids(writer) == ["1"]
    resumed = RunWriter(path, HEADER)
    assert resumed.done == {"1"}
    for result in RESULTS[1:]:
        resumed.write(result)
    assert resumed.finish().read_bytes() == uninterrupted


def test_close_keeps_what_was_written(tmp_path):
    """Ctrl-C between batches closes the writer: the queries written so far are synced, not lost."""
    writer = RunWriter(tmp_path / "run.txt", HEADER)
    writer.write(RESULTS[0])
    writer.close()
    assert journal_qids(writer) == ["1"]
    assert RunWriter(tmp_path / "run.txt", HEADER).done == {"1"}


def test_close_when_the_disk_refuses_the_sync_says_so_and_still_releases_the_output(tmp_path, monkeypatch, caplog):
    """A full disk at Ctrl-C: the unsynced queries are lost (redone on resume), named in a warning."""
    writer = RunWriter(tmp_path / "run.txt", HEADER)
    writer.write(RESULTS[0])

    def full_disk(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runfile.os, "fsync", full_disk)
    with caplog.at_level("WARNING", logger=runfile.__name__):
        writer.close()
    assert caplog.messages == [f"could not sync {writer.partial} before closing it: [Errno 28] No space left on device"]
    monkeypatch.undo()
    assert RunWriter(tmp_path / "run.txt", HEADER).done == set()  # closed and unlocked; query 1 redone


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
