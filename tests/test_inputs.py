"""Readers for topics, qrels, runs and corpora: what they accept, and the errors they give."""

from __future__ import annotations

import argparse
import gzip
import json

import pytest
from pipeline_support import DL19

from headrank_ir.command_helpers import add_first_stage_args, requests_from_args
from headrank_ir.errors import InputError
from headrank_ir.pipeline.firststage import requests_from_run
from headrank_ir.pipeline.names import read_topics, resolve_name
from headrank_ir.pipeline.readers import read_corpus, read_qrels_file, read_trec_run


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def first_stage(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_first_stage_args(parser)
    return parser.parse_args(argv)


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, kind, name",
    [
        ("dl19", "topics", "dl19-passage"),
        ("dl19", "qrels", "dl19-passage"),
        ("dl19", "index", "msmarco-v1-passage"),
        ("dl20", "topics", "dl20"),
        ("dl20", "qrels", "dl20-passage"),
        ("msmarco", "index", "msmarco-v1-passage"),
        ("scifact", "index", "beir-v1.0.0-scifact.flat"),
        ("scifact", "topics", "beir-v1.0.0-scifact-test"),
        ("cqadupstack-gis", "qrels", "beir-v1.0.0-cqadupstack-gis-test"),
        ("beir-v1.0.0-nfcorpus-test", "topics", "beir-v1.0.0-nfcorpus-test"),
    ],
)
def test_aliases_resolve_per_kind(alias, kind, name):
    assert resolve_name(alias, kind) == name


# -- topics --------------------------------------------------------------------------------------


def test_tsv_topics_keep_file_order_and_text(tmp_path):
    topics = read_topics(str(write(tmp_path / "t.tsv", "20\tsecond query \n3\tfirst query\n\n")))
    assert list(topics.queries.items()) == [
        ("20", "second query"),
        ("3", "first query"),
    ]


def test_real_dl19_topics():
    topics = read_topics(str(DL19 / "topics.tsv"))
    assert len(topics.queries) == 43
    assert topics.queries["264014"] == "how long is life cycle of flea"


def test_topic_formats_read_the_same_queries(tmp_path):
    jsonl = write(
        tmp_path / "q.jsonl",
        '{"_id": "1", "text": "alpha"}\n{"qid": 2, "query": "beta"}\n',
    )
    as_json = write(
        tmp_path / "q.json",
        json.dumps({"1": {"title": "alpha"}, "2": {"title": "beta"}}),
    )
    trec = write(
        tmp_path / "q.trec",
        "<top>\n<num> Number: 1\n<title> alpha\n<desc> Description:\nignored\n</top>\n"
        "<top>\n<num> Number: 2\n<title> Topic: beta\n</top>\n",
    )
    gz = tmp_path / "q.tsv.gz"
    gz.write_bytes(gzip.compress(b"1\talpha\n2\tbeta\n"))
    for path in (jsonl, as_json, trec, gz):
        assert read_topics(str(path)).queries == {"1": "alpha", "2": "beta"}, path


def test_beir_in_the_path_does_not_change_how_a_tsv_is_read(tmp_path):
    folder = tmp_path / "beir-cacm"
    folder.mkdir()
    assert read_topics(str(write(folder / "t.tsv", "q1\ttext\n"))).queries == {"q1": "text"}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("t.tsv", "1\tok\n2\ta\tb\n", "t.tsv:2: expected 'qid<TAB>query text', got 3"),
        ("t.tsv", "1\tok\n2\t   \n", "t.tsv:2: query '2' is empty"),
        ("t.tsv", "1\tok\n1\tagain\n", "t.tsv:2: query id '1' appears twice"),
        ("t.jsonl", '{"qid": "1"}\n', "t.jsonl:1: no query text field"),
        (
            "t.jsonl",
            '{"qid": "1", "query": "x"}\n[1]\n',
            "t.jsonl:2: expected a JSON object",
        ),
        ("t.csv", "1,x\n", "cannot tell the topics format"),
        ("t.tsv", "", "no queries in this file"),
    ],
)
def test_bad_topics_name_file_and_line(tmp_path, name, content, message):
    with pytest.raises(InputError) as error:
        read_topics(str(write(tmp_path / name, content)))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "name, content, rest",
    [
        (
            "t.tsv",
            "1\tok\n2\tbad\ufeffmark\n",
            ":2: a byte-order mark (U+FEFF) at column 6, inside the line: "
            "were two files joined without a newline between them? Remove it",
        ),
        ("t.jsonl", '{"qid": "1", "query": "x"}\n{"qid": "1", "query": "y"}\n', ":2: query id '1' appears twice"),
        (
            "t.json",
            '{"1": "a"}\n{"2": "b"}\n',
            ":2: not valid JSON: Extra data; it looks like JSON Lines (one object per line): name it .jsonl",
        ),
        ("t.json", '{"1": }', ":1: not valid JSON: Expecting value"),
        ("t.json", '["a"]', ": expected a JSON object mapping query ids to topics"),
        ("t.trec", "<top>\n<num> Number: 7\n<desc> no title\n</top>\n", ":2: topic '7' has no <title>"),
        ("t.trec", "\n<top>\n<num> Number: 7\n<desc> no title\n</top>\n", ":3: topic '7' has no <title>"),
        (
            "t.trec",
            "<top>\n<num> 1\n<title> a\n</top>\n<top>\n<num> 1\n<title> b\n</top>\n",
            ":6: query id '1' appears twice",
        ),
        ("t.trec", "nothing here\n", ": no <num>/<title> topics found in this TREC topics file"),
        ("t.tsv", "1\tok\n \tx\n", ":2: empty query id"),
        (
            "t.tsv",
            '{"qid": "1", "query": "x"}\n',
            ":1: expected 'qid<TAB>query text', got 1 tab-separated fields; "
            "the line is JSON: the file looks like JSON Lines, not 'qid<TAB>query text' text",
        ),
        (
            "t.json",
            '{"\\ud800": "x"}',
            ": query id holds a lone surrogate '\\ud800' at character 1; "
            "\\ud800-\\udfff escapes are only valid in pairs",
        ),
    ],
    ids=[
        "tsv mark",
        "jsonl twice",
        "json lines",
        "json broken",
        "json list",
        "trec no title",
        "trec no title after a blank first line",
        "trec twice",
        "trec none",
        "tsv no id",
        "tsv given jsonl",
        "json lone surrogate",
    ],
)
def test_topic_refusals_word_for_word(tmp_path, name, content, rest):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError) as error:
        read_topics(str(path))
    assert str(error.value) == f"{path}{rest}"


def test_a_trec_title_over_several_lines_is_one_line_of_words(tmp_path):
    path = write(tmp_path / "t.trec", "<top>\n<num> 9\n<title> two\n   words  here\n</top>\n")
    assert read_topics(str(path)).queries == {"9": "two words here"}


def test_non_utf8_topics_name_the_line(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"1\tfine\n2\tcaf\xe9\n")
    with pytest.raises(InputError, match=r"t\.tsv:2: bytes that are not UTF-8 at column 6"):
        read_topics(str(path))


def test_missing_topics_file(tmp_path):
    with pytest.raises(InputError, match="file not found: .*nope.tsv"):
        read_topics(str(tmp_path / "nope.tsv"))


# -- qrels and runs ------------------------------------------------------------------------------


def test_real_dl19_qrels():
    qrels = read_qrels_file(DL19 / "qrels.txt")
    assert len(qrels) == 43
    assert sum(len(judged) for judged in qrels.values()) == 9260
    assert set().union(*(set(j.values()) for j in qrels.values())) == {0, 1, 2, 3}


def test_bad_qrels(tmp_path):
    with pytest.raises(InputError, match=r"q\.txt:2: relevance grade 'high' is not an integer"):
        read_qrels_file(write(tmp_path / "q.txt", "1 0 d1 1\n1 0 d2 high\n"))


def test_run_orders_by_score_then_rank_then_docid(tmp_path):
    run = read_trec_run(
        write(
            tmp_path / "r.txt",
            "q Q0 b 2 1.0 x\nq Q0 a 3 1.0 x\nq Q0 c 1 1.0 x\nq Q0 d 4 2.5 x\n",
        )
    )
    assert [h.docid for h in run.hits["q"]] == ["d", "c", "b", "a"]


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "q Q0 a 1 1.0 x\nq Q0 b 2 1.0\n",
            "r.txt:2: expected 'qid Q0 docid rank score tag', got 5 fields",
        ),
        ("q Q0 a 1 one x\n", "r.txt:1: score 'one' is not a decimal number"),
        ("q Q0 a 1 nan x\n", "r.txt:1: score 'nan' is not finite"),
        ("q Q0 a 1 1e999 x\n", "r.txt:1: score '1e999' is not finite"),
        ("q Q0 a 1 15_7806 x\n", "r.txt:1: score '15_7806' is not a decimal number"),
        ("q Q0 a one 1 x\n", "r.txt:1: rank 'one' must be an integer"),
        ("q Q0 a 2.0 1 x\n", "r.txt:1: rank '2.0' must be an integer"),
        (
            "q Q0 a 1 2 x\nq Q0 a 2 1 x\n",
            "r.txt:2: docid 'a' appears twice for query 'q' (first on line 1)",
        ),
        ("\n", "no hits in this run file"),
    ],
)
def test_bad_runs_name_file_and_line(tmp_path, content, message):
    with pytest.raises(InputError) as error:
        read_trec_run(write(tmp_path / "r.txt", content))
    assert message in str(error.value)


# -- corpus --------------------------------------------------------------------------------------


def test_corpus_accepts_both_field_names_and_keeps_only_wanted(tmp_path):
    path = write(
        tmp_path / "c.jsonl",
        '{"id": "a", "contents": "A"}\n{"docid": "b", "text": "B"}\n{"id": 7, "contents": "C"}\n',
    )
    assert read_corpus(path) == {"a": "A", "b": "B", "7": "C"}
    assert read_corpus(path, wanted={"b"}) == {"b": "B"}


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"id": "a", "contents": "A"}\n{"id": "a", "contents": "B"}\n',
            "c.jsonl:2: docid 'a' appears twice (first on line 1)",
        ),
        (
            '{"id": "a", "contents": "A"}\n{"id": "b"}\n',
            "c.jsonl:2: no text field (looked for contents, text)",
        ),
        (
            '{"id": "a", "contents": "A"}\n{"id": "b", "contents": \n',
            "c.jsonl:2: not valid JSON",
        ),
        ('{"contents": "A"}\n', "c.jsonl:1: no docid field"),
        (
            '{"id": "a", "contents": "A"}\n{"id": "b", "title": ["T"], "text": "B"}\n',
            "c.jsonl:2: title field 'title' must be a string, got list",
        ),
    ],
)
def test_bad_corpus_names_file_and_line(tmp_path, content, message):
    with pytest.raises(InputError) as error:
        read_corpus(write(tmp_path / "c.jsonl", content))
    assert message in str(error.value)


def test_non_utf8_corpus_even_outside_the_wanted_docids(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "a", "contents": "A"}\n{"id": "b", "contents": "\xff"}\n')
    with pytest.raises(InputError, match=r"c\.jsonl:2: bytes that are not UTF-8"):
        read_corpus(path, wanted={"a"})


# -- requests ------------------------------------------------------------------------------------


def test_requests_from_real_dl19_run_and_corpus():
    args = first_stage(
        [
            "--topics",
            str(DL19 / "topics.tsv"),
            "--run",
            str(DL19 / "run.bm25.txt"),
            "--corpus",
            str(DL19 / "corpus.jsonl"),
            "--hits",
            "5",
        ]
    )
    requests = requests_from_args(args)
    assert len(requests) == 43
    first = requests[0]
    assert (first.query.qid, first.query.text) == (
        "264014",
        "how long is life cycle of flea",
    )
    assert [c.docid for c in first.candidates] == [
        "5611210",
        "6641238",
        "4834547",
        "96852",
        "96854",
    ]
    assert first.candidates[0].score == pytest.approx(15.7806)
    assert first.candidates[0].text.startswith("5. Cancel. A flea can live up to a year")


def test_first_stage_defaults_match_pyserini():
    args = first_stage(["--topics", "t.tsv", "--index", "idx"])
    # k1/b unset: Pyserini chooses per index (0.82/0.68 on MS MARCO v1 passage), as its own search does
    assert (args.k1, args.b, args.hits, args.threads) == (None, None, 100, 1)


@pytest.fixture()
def small(tmp_path):
    topics = read_topics(str(write(tmp_path / "t.tsv", "1\tone\n2\ttwo\n")))
    corpus = write(
        tmp_path / "c.jsonl",
        '{"id": "a", "contents": "A"}\n{"id": "b", "contents": "B"}\n',
    )
    return tmp_path, topics, corpus


def test_topics_naming_a_subset_of_the_run_rerank_exactly_those(small, caplog):
    tmp_path, topics, corpus = small
    run = read_trec_run(write(tmp_path / "r.txt", "1 Q0 a 1 1 x\n2 Q0 a 1 1 x\n9 Q0 b 1 1 x\n"))
    with caplog.at_level("INFO", logger="headrank_ir"):
        requests = requests_from_run(topics, run, corpus, hits=10)
    assert [r.query.qid for r in requests] == ["1", "2"]
    assert "the topics name 2 of the run's 3 queries" in caplog.text


def test_topic_without_hits_is_left_out_with_a_line(small, caplog):
    tmp_path, topics, corpus = small
    run = read_trec_run(write(tmp_path / "r.txt", "1 Q0 a 1 1 x\n"))
    requests = requests_from_run(topics, run, corpus, hits=10)
    assert [r.query.qid for r in requests] == ["1"]
    assert "1 queries have no first-stage hits" in caplog.text and ": 2" in caplog.text


def test_topics_sharing_no_query_with_the_run_are_an_error(small):
    tmp_path, topics, corpus = small
    run = read_trec_run(write(tmp_path / "r.txt", "7 Q0 a 1 1 x\n"))
    with pytest.raises(InputError, match=r"no query of the topics .* has hits in the run"):
        requests_from_run(topics, run, corpus, hits=10)


def test_docid_missing_from_corpus_names_the_run_line(small):
    tmp_path, topics, corpus = small
    run = read_trec_run(write(tmp_path / "r.txt", "1 Q0 a 1 2 x\n1 Q0 zz 2 1 x\n2 Q0 b 1 1 x\n"))
    with pytest.raises(InputError, match=r"r\.txt:2: docid 'zz' is not in the corpus"):
        requests_from_run(topics, run, corpus, hits=10)


def test_hits_and_max_queries_cut_the_requests(small):
    tmp_path, topics, corpus = small
    run = read_trec_run(write(tmp_path / "r.txt", "1 Q0 a 1 2 x\n1 Q0 b 2 1 x\n2 Q0 b 1 1 x\n"))
    requests = requests_from_run(topics, run, corpus, hits=1, max_queries=1)
    assert [(r.query.qid, [c.docid for c in r.candidates]) for r in requests] == [("1", ["a"])]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--index", "idx", "--run", "r.txt", "--corpus", "c.jsonl"], "either --index"),
        (["--run", "r.txt"], "no first stage"),
    ],
)
def test_first_stage_flags_must_pick_one_route(argv, message):
    with pytest.raises(InputError, match=message):
        requests_from_args(first_stage(["--topics", str(DL19 / "topics.tsv"), *argv]))


# -- inputs read the way users write them ------------------------------------------------------------

BOM = "\ufeff"


@pytest.mark.parametrize(
    "name, content, read, expected",
    [
        ("q.txt", "1 0 a 1\n1 0 b 0\n", read_qrels_file, {"1": {"a": 1, "b": 0}}),
        ("t.tsv", "1\tone\n", lambda p: read_topics(str(p)).queries, {"1": "one"}),
        ("t.jsonl", '{"qid": "1", "query": "one"}\n', lambda p: read_topics(str(p)).queries, {"1": "one"}),
        ("t.json", '{"1": {"title": "one"}}', lambda p: read_topics(str(p)).queries, {"1": "one"}),
        ("t.trec", "<top><num> 1 <title> one </top>", lambda p: read_topics(str(p)).queries, {"1": "one"}),
        (
            "r.txt",
            "1 Q0 a 1 2.5 x\n",
            lambda p: {q: [h.docid for h in hs] for q, hs in read_trec_run(p).hits.items()},
            {"1": ["a"]},
        ),
        ("c.jsonl", '{"id": "a", "contents": "A"}\n', read_corpus, {"a": "A"}),
    ],
)
def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path, name, content, read, expected):
    assert read(write(tmp_path / name, BOM + content)) == expected
    gzipped = tmp_path / "gz" / (name + ".gz")
    gzipped.parent.mkdir()
    gzipped.write_bytes(gzip.compress((BOM + content).encode("utf-8")))
    assert read(gzipped) == expected


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "c.jsonl",
            '{"id": "a", "contents": "A"}\n{"id": "b", "contents": "x \\ud800 y"}\n',
            r"c\.jsonl:2: text field 'contents' holds a lone surrogate '\\ud800' at character 3",
        ),
        ("c.jsonl", '{"id": "\\udfff", "contents": "A"}\n', r"c\.jsonl:1: docid field 'id' holds a lone surrogate"),
        ("t.jsonl", '{"qid": "1", "query": "\\udc00"}\n', r"t\.jsonl:1: query text field 'query' holds a lone"),
        (
            "t.json",
            '{"1": {"title": "a\\ud83d"}}',
            r"t\.json: query '1' holds a lone surrogate '\\ud83d' at character 2",
        ),
    ],
)
def test_lone_surrogates_name_file_and_line(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError, match=message):
        read_corpus(path) if name.startswith("c") else read_topics(str(path))


def test_paired_surrogate_escapes_are_one_character(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"id": "a", "contents": "smile \\ud83d\\ude00"}\n')
    assert read_corpus(path) == {"a": "smile \U0001f600"}


def test_an_empty_passage_of_the_run_is_an_error_before_any_query(small):
    tmp_path, topics, _ = small
    corpus = write(tmp_path / "c2.jsonl", '{"id": "a", "contents": "A"}\n{"id": "b", "contents": "  "}\n')
    run = read_trec_run(write(tmp_path / "r.txt", "1 Q0 a 1 1 x\n2 Q0 b 1 1 x\n"))
    with pytest.raises(InputError, match=r"c2\.jsonl:2: the text of docid 'b' is empty, and the run ranks it"):
        requests_from_run(topics, run, corpus, hits=10)
    # An empty passage the run does not rank is no reason to stop.
    assert [r.query.qid for r in requests_from_run(topics, run, corpus, hits=10, max_queries=1)] == ["1"]


# -- one reader for every file (issue 26) ------------------------------------------------------


@pytest.mark.parametrize(
    "name, first, second, read",
    [
        ("q.txt", "1 0 a 1\n", "2 0 b 2\n", read_qrels_file),
        ("t.tsv", "1\tone\n", "2\ttwo\n", lambda p: read_topics(str(p)).queries),
        (
            "t.jsonl",
            '{"qid": "1", "query": "one"}\n',
            '{"qid": "2", "query": "two"}\n',
            lambda p: read_topics(str(p)).queries,
        ),
        (
            "r.txt",
            "1 Q0 a 1 2.5 x\n",
            "1 Q0 b 2 2.0 x\n",
            lambda p: {q: [(h.docid, h.score) for h in hs] for q, hs in read_trec_run(p).hits.items()},
        ),
        ("c.jsonl", '{"id": "a", "contents": "A"}\n', '{"id": "b", "contents": "B"}\n', read_corpus),
    ],
)
def test_two_marked_files_joined_read_as_both(tmp_path, name, first, second, read):
    """What ``cat a b`` makes of two files that start with a byte-order mark, plain and gzipped."""
    expected = read(write(tmp_path / name, first + second))
    joined = write(tmp_path / ("joined-" + name), BOM + first + BOM + second)
    assert read(joined) == expected
    gzipped = tmp_path / ("joined-" + name + ".gz")
    gzipped.write_bytes(gzip.compress(joined.read_bytes()))
    assert read(gzipped) == expected


@pytest.mark.parametrize(
    "content, message",
    [
        ("1 Q0 a 1 2.5 x" + BOM + "1 Q0 b 2 2.0 x\n", r"r\.txt:1: a byte-order mark \(U\+FEFF\) at column 15"),
        ("1 Q0 a\ufeff 1 2.5 x\n", r"r\.txt:1: .* at column 7"),
    ],
)
def test_a_mark_inside_a_line_is_refused_with_its_column(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        read_trec_run(write(tmp_path / "r.txt", content))


@pytest.mark.parametrize("score, value", [("12", 12.0), ("-3.5", -3.5), ("1e-3", 1e-3), ("+.5", 0.5), ("3.", 3.0)])
def test_scores_trec_eval_reads_are_read_alike(tmp_path, score, value):
    assert read_trec_run(write(tmp_path / "r.txt", f"1 Q0 a 1 {score} x\n")).hits["1"][0].score == value


@pytest.mark.parametrize("grade, value", [("0", 0), ("3", 3), ("-1", -1), ("+2", 2)])
def test_grades_read_as_trec_eval_reads_them(tmp_path, grade, value):
    """Whole numbers only: ``1.0`` and ``1.5`` are refused (tests/test_qrels_grades.py)."""
    assert read_qrels_file(write(tmp_path / "q.txt", f"1 0 a {grade}\n")) == {"1": {"a": value}}


@pytest.mark.parametrize(
    "content, message",
    [
        ("1 0 a 3\n1 0 a 0\n", r"q\.txt:2: query '1' judges docid 'a' 0, but 3 on line 1; keep one judgement$"),
        ("1 0 a 1.5\n", r"q\.txt:1: relevance grade '1.5' is not an integer"),
        ("1 0 a 99999999999\n", r"q\.txt:1: relevance grade '99999999999' is out of range"),
        ("1 0 a 1001\n", r"out of range \(-1000 to 1000\)"),
        ("1 0 a .5\n", r"'\.5' is not an integer"),
    ],
)
def test_bad_grades_and_conflicts(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        read_qrels_file(write(tmp_path / "q.txt", content))


def test_a_judgement_repeated_with_its_grade_is_kept_once(tmp_path):
    assert read_qrels_file(write(tmp_path / "q.txt", "1 0 a 2\n1 0 b 0\n1 0 a 2\n")) == {"1": {"a": 2, "b": 0}}
    assert read_qrels_file(write(tmp_path / "q2.txt", "1 0 a 1000\n2 0 a -1000\n")) == {
        "1": {"a": 1000},
        "2": {"a": -1000},
    }


@pytest.mark.parametrize(
    "record, text",
    [
        ({"_id": "a", "title": "Lobster", "text": "A sandwich."}, "Lobster A sandwich."),
        ({"_id": "a", "title": "", "text": "A sandwich."}, "A sandwich."),
        ({"_id": "a", "text": "A sandwich."}, "A sandwich."),
        ({"id": "a", "title": "Lobster", "contents": "Lobster roll."}, "Lobster roll."),
    ],
)
def test_a_beir_title_is_joined_as_pyserini_joins_it(tmp_path, record, text):
    """``--corpus`` and ``--index`` read one document alike (``firststage.passage_text`` reads
    the raw document an index stores)."""
    from headrank_ir.pipeline.firststage import passage_text

    assert read_corpus(write(tmp_path / "c.jsonl", json.dumps(record) + "\n")) == {"a": text}
    assert passage_text(json.dumps(record), "a") == text


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("c.jsonl.gz", b'{"id": "a", "contents": "A"}\n', r"c\.jsonl\.gz: is named \.gz but is not gzip"),
        (
            "c.jsonl.gz",
            gzip.compress(b'{"id": "a", "contents": "A"}\n' * 200)[:-30],
            r"c\.jsonl\.gz: the gzip data is truncated",
        ),
        (
            "c.jsonl.gz",
            gzip.compress(b'{"id": "a", "contents": "A"}\n')[:10],
            r"c\.jsonl\.gz: the gzip data is truncated",
        ),
        (
            "c.jsonl",
            gzip.compress(b'{"id": "a", "contents": "A"}\n'),
            r"c\.jsonl: is gzip-compressed but not named \.gz",
        ),
        ("c.jsonl", b'[{"id": "a", "contents": "A"}]\n', r"c\.jsonl:1: the file is one JSON array"),
        ("c.jsonl", b'[\n {"id": "a", "contents": "A"}\n]\n', r"c\.jsonl:1: the file is one JSON array"),
        ("c.jsonl", b'{\n "id": "a"\n}\n', r"c\.jsonl:1: the file is one JSON object over many lines"),
        ("c.jsonl", b'{"id": "a", "contents": "A"}\n[1]\n', r"c\.jsonl:2: expected a JSON object, got list"),
    ],
)
def test_the_file_as_a_whole_is_named_for_what_it_is(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match=message):
        read_corpus(path)


def test_a_jsonl_run_given_as_trec_says_so(tmp_path):
    line = json.dumps({"query": {"text": "a", "qid": "1"}, "candidates": [{"docid": "d", "score": 1.0}] * 40})
    with pytest.raises(
        InputError, match=r"r\.txt:1: expected 'qid Q0 docid rank score tag', got \d+ fields; the line is JSON"
    ):
        read_trec_run(write(tmp_path / "r.txt", line + "\n"))
    with pytest.raises(InputError, match=r"got 3 fields$"):
        read_trec_run(write(tmp_path / "r2.txt", "1 Q0 a\n"))


def test_a_mark_inside_a_json_string_is_text(tmp_path):
    """Neighbour of the refused mark: U+FEFF inside a passage (escaped or raw) is kept as text."""
    path = write(tmp_path / "c.jsonl", '{"id": "a", "contents": "x\\ufeffy"}\n{"id": "b", "contents": "p\ufeffq"}\n')
    assert read_corpus(path) == {"a": "x\ufeffy", "b": "p\ufeffq"}
    with pytest.raises(InputError, match=r"c2\.jsonl:1: a byte-order mark \(U\+FEFF\) at column 29"):
        read_corpus(write(tmp_path / "c2.jsonl", '{"id": "a", "contents": "A"}\ufeff{"id": "b", "contents": "B"}\n'))


def test_fields_split_where_trec_eval_splits(tmp_path):
    """A no-break space is part of a docid (trec_eval splits at ASCII whitespace), tabs split."""
    run = read_trec_run(write(tmp_path / "r.txt", "1\tQ0  d\u00a01 1\t2.5 x\r\n1 Q0 d2 2 1 x\n"))
    assert [h.docid for h in run.hits["1"]] == ["d\u00a01", "d2"]
    assert read_qrels_file(write(tmp_path / "q.txt", "1 0 d\u20031 1\n")) == {"1": {"d\u20031": 1}}
