"""Run files: exact formats, atomic completion, and resuming after a crash at any point."""

from __future__ import annotations

import json

import pytest

from headrank_ir.pipeline.errors import InputError
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
    assert [[c.docid for c in r.candidates] for r in read_results_jsonl(path)] == [
        ["b", "a", "c"],
        ["d"],
        ["f", "e"],
    ]


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
    assert journal[1] == {"qid": "1", "end": len(format_trec(RESULTS[0], "headrank"))}
    assert journal[-1]["complete"] is True


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
    with pytest.raises(InputError, match="has no journal.*--no-resume"):
        RunWriter(path, HEADER)
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
