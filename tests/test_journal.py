"""The run journal by hand: what a journal file reads back as, its refusals word for word, the
header difference a refused resume names, the prefix digest and the output lock (issue 28)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os

import pytest

from headrank_ir.errors import InputError

# Name other engineers may move: imported here only.
from headrank_ir.pipeline.journal import (
    JOURNAL_VERSION,
    OutputLock,
    check_finished_run,
    hash_prefix,
    header_differences,
    read_journal,
)


def test_header_differences_name_every_key_either_side_changed_or_lacks():
    old = {"model": "m", "depth": 3, "same": 1, "gone": True}
    new = {"model": "m", "depth": 5, "same": 1, "added": "x"}
    assert header_differences(old, new) == "added: None → 'x', depth: 3 → 5, gone: True → None"
    assert header_differences(old, dict(old)) == ""


@pytest.mark.parametrize("size", [0, 1, 1 << 20, (1 << 20) + 5, 3 << 20])
def test_prefix_digest_is_sha256_of_the_first_bytes(tmp_path, size):
    data = bytes(range(256)) * ((5 << 20) // 256)  # 5 MiB: more than one read of 1 MiB
    path = tmp_path / "run.txt"
    path.write_bytes(data)
    assert hash_prefix(path, size).hexdigest() == hashlib.sha256(data[:size]).hexdigest()


def test_prefix_digest_stops_at_the_end_of_a_shorter_file(tmp_path):
    path = tmp_path / "run.txt"
    path.write_bytes(b"abc")
    assert hash_prefix(path, 10).hexdigest() == hashlib.sha256(b"abc").hexdigest()


def journal_file(tmp_path, *entries, tail: bytes = b""):
    path = tmp_path / "run.txt.journal"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in entries) + tail)
    return path


HEAD = {"journal": JOURNAL_VERSION, "header": {"model": "m"}}
START_OVER = "pass --no-resume to start over"


def test_a_journal_reads_back_its_queries_and_end_and_a_torn_line_is_not_committed(tmp_path):
    first = {"qid": "1", "end": 10, "sha256": "aa"}
    second = {"qid": "2", "end": 25, "sha256": "bb"}
    path = journal_file(tmp_path, HEAD, first, second, tail=b'{"qid": "3", "en')
    journal = read_journal(path)
    assert (journal.header, journal.done, journal.end, journal.sha256) == ({"model": "m"}, ["1", "2"], 25, "bb")
    assert not journal.complete
    assert journal.valid_bytes == len(path.read_bytes()) - len(b'{"qid": "3", "en')


def test_a_finished_journal_records_the_whole_file(tmp_path):
    path = journal_file(tmp_path, HEAD, {"qid": "1", "end": 10}, {"complete": True, "bytes": 10, "sha256": "cc"})
    journal = read_journal(path)
    assert (journal.complete, journal.end, journal.sha256, journal.done) == (True, 10, "cc", ["1"])
    older = read_journal(journal_file(tmp_path, HEAD, {"qid": "1", "end": 7}))  # no checksum: an older journal
    assert (older.end, older.sha256) == (7, None)


def test_no_journal_is_none(tmp_path):
    assert read_journal(tmp_path / "absent.journal") is None


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"journal": "other/1", "header": {}}], f"not a {JOURNAL_VERSION} run journal; {START_OVER}"),
        ([HEAD, {"end": 3}], f"run journal is corrupt; {START_OVER}"),
        ([["a list"]], f"run journal is corrupt; {START_OVER}"),
    ],
    ids=["other version", "entry without qid", "not an object"],
)
def test_a_foreign_or_corrupt_journal_is_refused_whole(tmp_path, entries, message):
    path = journal_file(tmp_path, *entries)
    with pytest.raises(InputError) as refused:
        read_journal(path)
    assert str(refused.value) == f"{path}: {message}"


def test_an_unfinished_run_of_ours_is_refused_and_a_run_without_journal_is_taken_as_it_is(tmp_path):
    run = tmp_path / "run.txt"
    run.write_text("1 Q0 a 1 2.0 t\n")
    check_finished_run(run)  # no journal beside it: someone else's run
    journal_file(tmp_path, HEAD, {"qid": "1", "end": 15})
    with pytest.raises(InputError) as refused:
        check_finished_run(run)
    assert str(refused.value) == (
        f"{run}: its journal says the run is not finished; run the same command again to finish it"
    )


def test_a_lock_whose_file_names_nobody_says_another_process(tmp_path):
    output = tmp_path / "run.txt"
    held = os.open(output.with_name("run.txt.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, with an empty file
    try:
        with pytest.raises(InputError) as refused:
            OutputLock(output).acquire()
        assert str(refused.value) == (
            f"{output} is being written by another run (another process); "
            "wait for it to finish or choose another --output"
        )
    finally:
        os.close(held)
    lock = OutputLock(output)
    lock.acquire()
    assert output.with_name("run.txt.lock").read_text().startswith(f"pid {os.getpid()} on ")
    lock.release()
    lock.release()  # twice: nothing left to release
    assert not output.with_name("run.txt.lock").exists()
