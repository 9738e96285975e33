"""The run journal's helpers by hand: the header difference a refused resume names, and the
prefix digest that checks a partial run against its journal (issue 28)."""

from __future__ import annotations

import hashlib

import pytest

# Name other engineers may move: imported here only.
from headrank_ir.pipeline.journal import hash_prefix, header_differences


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
