"""Qrels grades are whole numbers as written: ``1.5`` and ``1.0`` are refused, not truncated
(issue 28: ``int(float(x))`` went through)."""

from __future__ import annotations

import pytest

from headrank_ir.errors import InputError
from headrank_ir.pipeline.readers import read_qrels_file


def test_integer_grades_including_negative_ones_are_read(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1 2\nq1 0 d2 0\n\nq2 Q0 d3 -1\n")
    assert read_qrels_file(path) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": -1}}


@pytest.mark.parametrize("grade", ["1.5", "1.0", "2e0", "one"])
def test_a_grade_that_is_not_an_integer_is_refused_naming_the_line(tmp_path, grade):
    path = tmp_path / "qrels.txt"
    path.write_text(f"q1 0 d1 1\nq1 0 d2 {grade}\n")
    with pytest.raises(InputError, match=rf"relevance grade '{grade}' is not an integer") as error:
        read_qrels_file(path)
    assert ":2" in str(error.value)  # the second line


def test_a_line_without_four_fields_is_refused(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1\n")
    with pytest.raises(InputError, match="expected 'qid 0 docid grade', got 3 fields"):
        read_qrels_file(path)
