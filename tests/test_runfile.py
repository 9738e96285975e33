"""Run files: exact formats, atomic completion, and resuming after a crash at any point."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headrank_ir.errors import InputError
from headrank_ir.pipeline.runfile import RunWriter, format_jsonl, format_trec, read_results_jsonl
from headrank_ir.records import Candidate, Query, Result

HEADER = {"model": "m", "depth": 3}


def result(qid: str, *scored: tuple[str, float]) -> Result:
    return Result(
        Query(f"query {qid}", qid),
        [Candidate(d, s, {"contents": f"text of {d}"}) for d, s in scored],
    )


RESULTS = [
    result("1", ("a", 0.5), ("b", 2.0), ("c", 0.5)),
    result("2", ("d", -1.25)),
    result("3", ("e", 1e-7), ("f", 3.0)),
]


def test_trec_lines_are_pyserini_format_with_ties_by_docid():
    assert format_trec(RESULTS[0], "tag") == ("1 Q0 b 1 2.000000 tag\n1 Q0 a 2 0.500000 tag\n1 Q0 c 3 0.500000 tag\n")


def test_trec_rejects_whitespace_and_non_finite_scores():
    with pytest.raises(ValueError, match="docid 'a b'"):
        format_trec(result("1", ("a b", 1.0)), "tag")
    with pytest.raises(ValueError) as refused:
        format_trec(result("1 2", ("a", 1.0)), "tag")
    assert str(refused.value) == "query id '1 2' cannot be written to a TREC run: it is empty or has whitespace"
    with pytest.raises(ValueError, match="non-finite score"):
        format_trec(result("1", ("a", float("nan"))), "tag")


def test_jsonl_is_rank_llm_result_shape_best_first(tmp_path):
    line = json.loads(format_jsonl(RESULTS[0]))
    assert line["query"] == {"text": "query 1", "qid": "1"}
    assert [c["docid"] for c in line["candidates"]] == ["b", "a", "c"]
    assert line["candidates"][0] == {
        "docid": "b",
        "score": 2.0,
        "doc": {"contents": "text of b"},
    }
    path = tmp_path / "r.jsonl"
    path.write_text("".join(format_jsonl(r) for r in RESULTS), encoding="utf-8")
    read = read_results_jsonl(path)
    assert [[c.docid for c in r.candidates] for r in read] == [["b", "a", "c"], ["d"], ["f", "e"]]
    assert [(r.query.text, r.query.qid) for r in read] == [("query 1", "1"), ("query 2", "2"), ("query 3", "3")]
    assert read[0].candidates[0].doc == {"contents": "text of b"}


def test_jsonl_keeps_text_outside_ascii_as_it_is():
    """UTF-8 text as written (readable, as the TREC and corpus files are), not ``\\u`` escapes."""
    result = Result(Query("café ünïcödé", "1"), [Candidate("d", 1.0, {"contents": "naïve — “quoted”"})])
    line = format_jsonl(result)
    assert "café ünïcödé" in line and "naïve — “quoted”" in line and "\\u" not in line


def test_a_rank_llm_line_without_documents_reads_them_as_empty(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"query": {"text": "q", "qid": 4}, "candidates": [{"docid": 9, "score": "1.5"}]}\n')
    (read,) = read_results_jsonl(path)
    assert (read.query.qid, read.candidates[0].docid, read.candidates[0].score) == ("4", "9", 1.5)
    assert read.candidates[0].doc == {}


def test_bad_jsonl_result_names_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(format_jsonl(RESULTS[0]) + '{"query": {"text": "x"}}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"r\.jsonl:2: not a rank_llm Result line"):
        read_results_jsonl(path)


def write_all(path, results, **options) -> RunWriter:
    with RunWriter(path, HEADER, **options) as writer:
        for r in results:
            if not writer.is_done(r.query.qid):
                writer.write(r)
        writer.finish()
    return writer


@pytest.fixture()
def reference(tmp_path):
    path = write_all(tmp_path / "ref" / "run.txt", RESULTS).path
    return path.read_bytes()


def test_output_appears_only_when_complete(tmp_path):
    path = tmp_path / "run.txt"
    with RunWriter(path, HEADER) as writer:
        writer.write(RESULTS[0])
        assert not path.exists()
        assert writer.partial.read_text().startswith("1 Q0 b 1")
        writer.finish()
    assert path.exists() and not writer.partial.exists()
    journal = [json.loads(line) for line in writer.journal_path.read_text().splitlines()]
    assert journal[0]["header"] == {
        **HEADER,
        "output_format": "trec",
        "run_tag": "headrank",
    }
    first = format_trec(RESULTS[0], "headrank").encode()
    assert journal[1] == {"qid": "1", "end": len(first), "sha256": hashlib.sha256(first).hexdigest()}
    assert journal[-1]["complete"] is True


@pytest.mark.parametrize("output_format", ["trec", "jsonl"])
def test_the_writer_writes_the_format_it_is_given(tmp_path, output_format):
    expected = "".join(format_trec(r, "headrank") if output_format == "trec" else format_jsonl(r) for r in RESULTS)
    assert write_all(tmp_path / "run", RESULTS, output_format=output_format).path.read_text() == expected


@pytest.mark.parametrize("output_format", ["trec", "jsonl"])
def test_resume_after_a_crash_mid_query_is_byte_identical(tmp_path, output_format):
    uninterrupted = write_all(tmp_path / "a" / "run", RESULTS, output_format=output_format).path.read_bytes()
    path = tmp_path / "b" / "run"
    writer = RunWriter(path, HEADER, output_format=output_format)
    writer.write(RESULTS[0])
    writer.close()
    # A crash while writing query 2: half its lines reached the file, its journal line is torn.
    with writer.partial.open("ab") as data:
        data.write(b"2 Q0 d 1 -1.2")
    with writer.journal_path.open("ab") as journal:
        journal.write(b'{"end": 9')
    resumed = write_all(path, RESULTS, output_format=output_format)
    assert resumed.path.read_bytes() == uninterrupted
    journal = [json.loads(line) for line in resumed.journal_path.read_text().splitlines()]
    assert [entry.get("qid") for entry in journal[1:-1]] == ["1", "2", "3"]


def test_crash_between_completion_and_rename_is_settled(tmp_path, reference):
    path = tmp_path / "run.txt"
    writer = RunWriter(path, HEADER)
    for r in RESULTS:
        writer.write(r)
    writer.finish()
    path.rename(writer.partial)  # as if the process died just before the rename
    again = RunWriter(path, HEADER)
    assert again.complete and again.done == {"1", "2", "3"}
    assert path.read_bytes() == reference


def test_finished_run_with_same_header_has_nothing_to_do(tmp_path, reference):
    path = tmp_path / "run.txt"
    write_all(path, RESULTS)
    with RunWriter(path, HEADER) as writer:
        assert all(writer.is_done(r.query.qid) for r in RESULTS)
        with pytest.raises(ValueError, match="closed or already complete"):
            writer.write(RESULTS[0])
        writer.finish()
    assert path.read_bytes() == reference


def test_other_settings_refuse_to_resume_and_name_the_difference(tmp_path):
    path = tmp_path / "run.txt"
    write_all(path, RESULTS[:1])
    with pytest.raises(InputError, match=r"other settings \(depth: 3 → 5\).*--no-resume"):
        RunWriter(path, {**HEADER, "depth": 5})


def test_no_resume_starts_over(tmp_path):
    path = tmp_path / "run.txt"
    write_all(path, RESULTS)
    writer = RunWriter(path, {**HEADER, "depth": 5}, resume=False)
    assert not path.exists() and writer.done == set()
    writer.write(RESULTS[1])
    writer.finish()
    assert path.read_text() == format_trec(RESULTS[1], "headrank")


def test_output_not_written_by_us_is_not_overwritten(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("someone else's run\n")
    for resume in (True, False):
        with pytest.raises(InputError, match="has no journal run.txt.journal that shows.*missing.*left alone"):
            RunWriter(path, HEADER, resume=resume)
    assert path.read_text() == "someone else's run\n"


def test_a_query_is_written_once(tmp_path):
    with RunWriter(tmp_path / "run.txt", HEADER) as writer:
        writer.write(RESULTS[0])
        with pytest.raises(ValueError, match="already written"):
            writer.write(RESULTS[0])


def test_bad_run_tag_and_format(tmp_path):
    with pytest.raises(ValueError, match="run tag"):
        RunWriter(tmp_path / "r", HEADER, run_tag="two words")
    with pytest.raises(ValueError, match="output format 'csv'"):
        RunWriter(tmp_path / "r", HEADER, output_format="csv")


# -- one writer per output, outputs that cannot be corrupted silently ------------------------------

HOLD_OUTPUT = """
import sys, time
from headrank_ir.pipeline.runfile import RunWriter
writer = RunWriter(sys.argv[1], {"model": "m", "depth": 3})
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    path = tmp_path / "run.txt"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OUTPUT, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(InputError, match=rf"being written by another run \(pid {holder.pid} on .*started 20"):
            RunWriter(path, HEADER)
    finally:
        holder.kill()
        holder.wait()
    # A killed holder leaves its lock file, but not its lock: the next run goes ahead.
    assert write_all(path, RESULTS).path.read_text().count("\n") == 6


def test_two_writers_in_one_process_and_the_lock_goes_with_the_writer(tmp_path):
    path = tmp_path / "run.txt"
    first = RunWriter(path, HEADER)
    with pytest.raises(InputError, match="being written by another run"):
        RunWriter(path, HEADER)
    first.write(RESULTS[0])
    first.close()
    assert not (tmp_path / "run.txt.lock").exists()
    assert write_all(path, RESULTS).path.read_text().count("\n") == 6


@pytest.mark.parametrize(
    "tamper, problem",
    [
        (lambda data: data[:-10], lambda n: f"it holds {n - 10} bytes where the finished run had {n}"),
        (lambda data: data.replace(b"2.000000", b"9.000000"), lambda n: "its SHA-256 differs"),
        (lambda data: data + data, lambda n: f"it holds {2 * n} bytes"),
    ],
    ids=["truncated", "edited", "appended"],
)
def test_a_finished_output_changed_later_is_not_trusted(tmp_path, reference, tamper, problem):
    path = tmp_path / "run.txt"
    write_all(path, RESULTS)
    path.write_bytes(tamper(reference))
    refusal = rf"changed after the run finished \({problem(len(reference))}.*with --no-resume to rewrite it$"
    with pytest.raises(InputError, match=refusal):
        RunWriter(path, HEADER)
    assert write_all(path, RESULTS, resume=False).path.read_bytes() == reference


def test_an_edited_partial_run_is_not_resumed(tmp_path):
    path = tmp_path / "run.txt"
    writer = RunWriter(path, HEADER)
    writer.write(RESULTS[0])
    writer.close()
    writer.partial.write_bytes(writer.partial.read_bytes().replace(b"b 1", b"x 1"))
    with pytest.raises(InputError, match=r"run\.txt\.partial was changed since its journal"):
        RunWriter(path, HEADER)


def test_a_run_that_wrote_no_query_does_not_block_other_settings(tmp_path):
    path = tmp_path / "run.txt"
    RunWriter(path, {**HEADER, "model": "typo"}).close()
    resumed = write_all(path, RESULTS)
    assert json.loads(resumed.journal_path.read_text().splitlines()[0])["header"]["model"] == "m"


def test_no_resume_replaces_only_a_regular_file_this_command_wrote(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    pipe = tmp_path / "pipe"  # stands for any device; never the real /dev/null, which a regression would replace
    os.mkfifo(pipe)
    for path, kind in ((link, "a symbolic link"), (pipe, "a device, pipe or socket"), (tmp_path, "a folder")):
        with pytest.raises(InputError, match=f"is {kind}.*choose another --output"):
            RunWriter(path, HEADER, resume=False)
    assert target.read_text() == "keep me\n" and link.is_symlink()
    journal = tmp_path / "ours.txt.journal"
    journal.write_text("not a journal\n")
    (tmp_path / "ours.txt").write_text("whose?\n")
    with pytest.raises(InputError, match="the journal does not show that this command wrote it"):
        RunWriter(tmp_path / "ours.txt", HEADER, resume=False)
    assert (tmp_path / "ours.txt").read_text() == "whose?\n"


def test_output_whose_folder_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"cannot be written: .*file is a file, not a folder"):
        RunWriter(tmp_path / "file" / "sub" / "run.txt", HEADER)


def test_evaluating_a_run_of_ours_checks_it_against_its_journal(tmp_path, reference):
    from headrank_ir.evaluation.measures import read_run_scores

    path = tmp_path / "run.txt"
    write_all(path, RESULTS)
    assert read_run_scores(str(path))  # finished and unchanged: read as it is
    path.write_bytes(reference.replace(b"2.000000", b"9.000000"))
    with pytest.raises(InputError, match="changed after the run finished .*SHA-256"):
        read_run_scores(str(path))
    foreign = tmp_path / "foreign.txt"
    foreign.write_bytes(reference)  # no journal: someone else's run, taken as it is
    assert read_run_scores(str(foreign))


def test_evaluating_an_unfinished_run_of_ours_is_refused(tmp_path):
    path = tmp_path / "run.txt"
    with RunWriter(path, HEADER) as writer:
        writer.write(RESULTS[0])
    path.write_bytes(path.with_name("run.txt.partial").read_bytes())  # someone copies the partial file into place
    from headrank_ir.evaluation.measures import read_run_scores

    with pytest.raises(InputError, match="not finished"):
        read_run_scores(str(path))
