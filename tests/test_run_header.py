"""What a run's header records, worked out by hand: the inputs' digest, the weights files' cheap
digest, the header's fields, and a whole first-stage run written at once (issue 28: only the
end-to-end commands reached these)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import huggingface_hub.constants
import pytest
from conftest import whole_message

from headrank_ir import __version__
from headrank_ir.errors import InputError

# Name other engineers may move: imported here only.
from headrank_ir.outputs import locked
from headrank_ir.pipeline.runfile import file_digest, inputs_digest, run_header, weights_digest, write_trec_run
from headrank_ir.records import Candidate, Query, Request

REQUESTS = [
    Request(
        Query("first query", "q1"), [Candidate("d1", 2.5, {"title": "T", "contents": "é text"}), Candidate("d2", 1.0)]
    ),
    Request(Query("second", "q2"), []),
]


def test_inputs_digest_is_sha256_of_each_request_as_sorted_json():
    expected = hashlib.sha256()
    expected.update(
        '["q1", "first query", [["d1", 2.5, {"contents": "é text", "title": "T"}], ["d2", 1.0, {}]]]'.encode()
    )
    expected.update(b'["q2", "second", []]')
    assert inputs_digest(REQUESTS) == expected.hexdigest()


def sampled_digest(path: Path) -> str:
    """The documented scheme: name, size and mtime, then 64 KiB at the head and the tail and
    4 KiB at each sixteenth of the file between."""
    data, info = path.read_bytes(), path.stat()
    digest = hashlib.sha256(f"{path.name} {len(data)} {info.st_mtime_ns}".encode())
    tail = max(0, len(data) - 65536)
    for offset in sorted({0, tail} | {len(data) * k // 16 for k in range(1, 16)}):
        digest.update(data[offset : offset + (65536 if offset in (0, tail) else 4096)])
    return digest.hexdigest()


def test_file_digest_reads_the_head_the_tail_and_sixteen_samples(tmp_path):
    for size in (1000, 300_000):
        path = tmp_path / f"w{size}.safetensors"
        path.write_bytes(bytes((i * 7 + i // 251) % 256 for i in range(size)))
        assert file_digest(path) == sampled_digest(path)


def test_the_header_names_model_weights_depth_queries_and_inputs(tiny_model_dir):
    folder = Path(tiny_model_dir)
    weights = sorted(p for p in folder.iterdir() if p.suffix == ".safetensors")
    assert weights
    expected_weights = hashlib.sha256("".join(f"{p.name}:{sampled_digest(p)}\n" for p in weights).encode())
    header = run_header(tiny_model_dir, None, 7, REQUESTS)
    assert header == {
        "headrank_ir": __version__,
        "model": tiny_model_dir,
        "weights": expected_weights.hexdigest(),
        "profile": None,
        "depth": 7,
        "queries": 2,
        "inputs_sha256": inputs_digest(REQUESTS),
    }
    assert run_header(tiny_model_dir, None, 7, REQUESTS, "bfloat16") == {**header, "dtype": "bfloat16"}


def test_a_whole_run_is_written_as_trec_lines(tmp_path):
    path = write_trec_run(tmp_path / "out" / "first.txt", REQUESTS, "bm25")
    assert path.read_text() == "q1 Q0 d1 1 2.500000 bm25\nq1 Q0 d2 2 1.000000 bm25\n"
    assert path == tmp_path / "out" / "first.txt"


def test_a_whole_run_is_never_written_over_one_of_its_inputs(tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\tfirst query\n")
    message = f"--output {topics} is an input of this command ({topics}); writing it would destroy it"
    with pytest.raises(InputError, match=whole_message(message)):
        write_trec_run(topics, REQUESTS, "bm25", inputs=[topics])
    assert topics.read_text() == "q1\tfirst query\n"


def test_a_whole_run_another_writer_holds_is_refused_by_its_option(tmp_path):
    path = tmp_path / "run.txt"
    message = (
        f"--output {path} is being written by another process (lock {tmp_path / '.run.txt.lock'}); "
        "wait for it or choose another --output"
    )
    with locked(path), pytest.raises(InputError, match=whole_message(message)):
        write_trec_run(path, REQUESTS, "bm25")
    assert not path.exists()


def test_the_weights_of_a_hugging_face_id_are_found_in_the_hub_cache(tmp_path, monkeypatch):
    """An id not converted locally is digested from its cached snapshot (``config.json``'s folder)."""
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text("{}")
    weights = snapshot / "model.safetensors"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)  # no folder named org/tiny here

    expected = hashlib.sha256(f"model.safetensors:{file_digest(weights)}\n".encode()).hexdigest()
    assert weights_digest("org/tiny", None) == expected
