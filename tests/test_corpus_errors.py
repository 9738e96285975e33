"""A corpus file with no document is refused by ``read_corpus`` naming the file (issue 28: fresh
set 4's read_corpus_23 dropped the path and no test saw it; the index path had the only test)."""

from __future__ import annotations

import pytest

from headrank_ir.errors import InputError
from headrank_ir.pipeline.readers import read_corpus


@pytest.mark.parametrize("content", ["", "\n", "\n\n  \n"])
def test_a_corpus_without_documents_is_refused_naming_its_file(tmp_path, content):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(content)
    with pytest.raises(InputError) as error:
        read_corpus(corpus)
    assert str(error.value) == f"{corpus}: no documents in this corpus file"
    assert error.value.path == corpus
