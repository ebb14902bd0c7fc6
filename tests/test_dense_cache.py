"""encode_corpus: input order restored, length-sorted batches, caching, float16, atomicity."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from retrieval_lab.indexes.dense_cache import encode_corpus, load_encoded

DIM = 16


def _embed(text: str) -> np.ndarray:
    """Deterministic hashed bag of characters, L2-normalised."""
    v = np.zeros(DIM, dtype=np.float32)
    for ch in text:
        v[int(hashlib.md5(ch.encode()).hexdigest(), 16) % DIM] += 1.0
    return v / max(np.linalg.norm(v), 1e-6)


class CountingEncoder:
    def __init__(self, fail_after: int | None = None, as_tensor: bool = False):
        self.calls = 0
        self.batches: list[list[str]] = []
        self.fail_after = fail_after
        self.as_tensor = as_tensor

    def __call__(self, texts: list[str]):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("encoder crashed")
        self.calls += 1
        self.batches.append(list(texts))
        out = np.stack([_embed(t) for t in texts])
        if self.as_tensor:
            import torch

            return torch.from_numpy(out)
        return out


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ")
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 200)))) for _ in range(103)]
    ids = [f"doc-{i}" for i in range(len(texts))]
    return ids, texts


def test_rows_in_input_order_and_batches_length_sorted(tmp_path, corpus):
    ids, texts = corpus
    enc = CountingEncoder()
    emb = encode_corpus(enc, ids, texts, tmp_path, "k1", batch_size=10, show_progress=False)
    assert emb.dtype == np.float32 and emb.shape == (len(ids), DIM)
    np.testing.assert_allclose(emb, np.stack([_embed(t) for t in texts]), atol=1e-6)
    assert enc.calls == 11  # ceil(103 / 10)
    lengths = [len(t) for b in enc.batches for t in b]
    assert lengths == sorted(lengths, reverse=True)  # longest first, bucketed by length


def test_second_call_hits_cache_and_other_key_reencodes(tmp_path, corpus):
    ids, texts = corpus
    first = encode_corpus(CountingEncoder(), ids, texts, tmp_path, "k1", show_progress=False)
    again = CountingEncoder()
    second = encode_corpus(again, ids, texts, tmp_path, "k1", show_progress=False)
    assert again.calls == 0
    np.testing.assert_array_equal(first, second)
    other = CountingEncoder()
    encode_corpus(other, ids, texts, tmp_path, "k2", batch_size=64, show_progress=False)
    assert other.calls == 2
    assert json.loads((tmp_path / "k1" / "ids.json").read_text()) == ids
    assert (tmp_path / "k1" / "_COMPLETE").is_file()


def test_float16_storage_roundtrip(tmp_path, corpus):
    ids, texts = corpus
    fresh = encode_corpus(CountingEncoder(as_tensor=True), ids, texts, tmp_path, "h",
                          dtype="float16", show_progress=False)
    assert np.load(tmp_path / "h" / "embeddings.npy").dtype == np.float16
    cached = encode_corpus(CountingEncoder(), ids, texts, tmp_path, "h", dtype="float16",
                           show_progress=False)
    assert fresh.dtype == cached.dtype == np.float32
    np.testing.assert_array_equal(fresh, cached)  # fresh encode returns the stored values
    np.testing.assert_allclose(cached, np.stack([_embed(t) for t in texts]), atol=1e-3)


def test_exception_midway_leaves_no_complete_dir(tmp_path, corpus):
    ids, texts = corpus
    with pytest.raises(RuntimeError, match="encoder crashed"):
        encode_corpus(CountingEncoder(fail_after=3), ids, texts, tmp_path, "k",
                      batch_size=10, show_progress=False)
    assert not (tmp_path / "k").exists()
    assert [p for p in tmp_path.rglob("*") if p.name == "_COMPLETE"] == []
    # the next attempt encodes from scratch and succeeds
    enc = CountingEncoder()
    encode_corpus(enc, ids, texts, tmp_path, "k", batch_size=10, show_progress=False)
    assert enc.calls == 11
    emb, got_ids = load_encoded(tmp_path / "k")
    assert got_ids == ids and emb.shape == (len(ids), DIM)


def test_stale_cache_with_other_ids_is_refused(tmp_path, corpus):
    ids, texts = corpus
    encode_corpus(CountingEncoder(), ids, texts, tmp_path, "k", show_progress=False)
    with pytest.raises(ValueError, match="different doc ids"):
        encode_corpus(CountingEncoder(), ids[:-1], texts[:-1], tmp_path, "k",
                      show_progress=False)


def test_bad_arguments(tmp_path, corpus):
    ids, texts = corpus
    with pytest.raises(ValueError, match="key"):
        encode_corpus(CountingEncoder(), ids, texts, tmp_path, "../escape")
    with pytest.raises(ValueError, match="dtype"):
        encode_corpus(CountingEncoder(), ids, texts, tmp_path, "k", dtype="bfloat16")
    with pytest.raises(ValueError, match="texts"):
        encode_corpus(CountingEncoder(), ids, texts[:-1], tmp_path, "k")
    with pytest.raises(ValueError, match="shape"):
        encode_corpus(lambda b: np.zeros((1, 4)), ids, texts, tmp_path, "k", show_progress=False)
    assert not (tmp_path / "k").exists()
