"""The BM25 index on disk executes nothing when loaded (issue 8): rank_bm25's state is JSON, not a pickle."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from retrieval_lab.data import EMBEDDED_ROOT, load_beir
from retrieval_lab.indexes import BM25Index


@pytest.fixture(scope="module")
def toy():
    collection = load_beir(EMBEDDED_ROOT / "toy")
    docs = list(collection.corpus)
    return [d.id for d in docs], [d.contents() for d in docs], list(collection.queries.values())


def test_rank_bm25_index_is_stored_without_pickle_and_scores_exactly_as_a_fresh_one(toy, tmp_path):
    ids, texts, queries = toy
    fresh = BM25Index(backend="rank_bm25")
    fresh.build(ids, texts, show_progress=False)
    fresh.save(tmp_path / "idx")
    files = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert files == ["doc_ids.json", "meta.json", "rank_bm25.json.gz"]
    assert json.loads((tmp_path / "idx" / "meta.json").read_text())["format_version"] == 2

    loaded = BM25Index.load(tmp_path / "idx")
    rebuilt = BM25Index(backend="rank_bm25")  # built again from the texts, not from anything saved
    rebuilt.build(ids, texts, show_progress=False)
    for query in queries:
        tokens = rebuilt.tokenizer(query)
        assert np.array_equal(loaded._engine.get_scores(tokens), rebuilt._engine.get_scores(tokens))
    assert loaded.search(queries, k=1000) == rebuilt.search(queries, k=1000)  # identical, not approximately
    assert loaded.nbytes() == rebuilt.nbytes() > 0


class _Payload:
    """Unpickling this writes a file: what a planted cache entry could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_index_is_never_unpickled(toy, tmp_path):
    ids, texts, _ = toy
    index = BM25Index(backend="rank_bm25")
    index.build(ids[:10], texts[:10], show_progress=False)
    index.save(tmp_path / "v2")
    marker = tmp_path / "ran"
    planted = pickle.dumps(_Payload(marker))

    # a folder in the old layout (format 1: rank_bm25.pkl) is refused, and its pickle is not opened
    old = tmp_path / "v1"
    old.mkdir()
    meta = json.loads((tmp_path / "v2" / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))
    (old / "doc_ids.json").write_text((tmp_path / "v2" / "doc_ids.json").read_text())
    (old / "rank_bm25.pkl").write_bytes(planted)
    with pytest.raises(ValueError, match="pickle"):
        BM25Index.load(old)
    assert not marker.exists()

    # a pickle planted beside a current index is ignored
    (tmp_path / "v2" / "rank_bm25.pkl").write_bytes(planted)
    assert BM25Index.load(tmp_path / "v2").num_docs == 10
    assert not marker.exists()


def test_the_storage_change_gives_rank_bm25_indexes_a_new_cache_key():
    # the key is built from settings(): a cached v1 (pickled) folder is never looked up again
    assert BM25Index(backend="rank_bm25").settings()["storage"] == "json"
    assert "storage" not in BM25Index(backend="bm25s").settings()  # bm25s's cached indexes stay valid


def test_a_bm25s_index_saved_as_format_1_still_loads(toy, tmp_path):
    ids, texts, queries = toy
    index = BM25Index()
    index.build(ids, texts, show_progress=False)
    index.save(tmp_path / "idx")
    meta_path = tmp_path / "idx" / "meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format_version": 1}))
    assert BM25Index.load(tmp_path / "idx").search(queries, k=100) == index.search(queries, k=100)


def test_a_malformed_state_is_an_error_naming_the_file(toy, tmp_path):
    import gzip

    ids, texts, _ = toy
    index = BM25Index(backend="rank_bm25")
    index.build(ids[:5], texts[:5], show_progress=False)
    index.save(tmp_path / "idx")
    path = tmp_path / "idx" / "rank_bm25.json.gz"
    with gzip.open(path, "rt") as f:
        state = json.load(f)
    state["doc_len"] = state["doc_len"][:-1]
    with gzip.open(path, "wt") as f:
        json.dump(state, f)
    with pytest.raises(ValueError, match="rank_bm25.json.gz"):
        BM25Index.load(tmp_path / "idx")
