"""FaissIndex: exactness against numpy, ANN recall, persistence, clear errors."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from retrieval_lab.indexes.faiss_index import FaissIndex, _default_threads

# One faiss thread: on an oversubscribed CI box (parallel pytest, other jobs) OpenMP's
# spinning barriers make 2 threads several times slower than 1.
make = partial(FaissIndex, threads=1)


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    docs = _unit(rng, 1000, 32)
    queries = _unit(rng, 20, 32)
    ids = [f"d{i}" for i in range(len(docs))]
    return docs, queries, ids


@pytest.fixture(scope="module")
def medium():
    """~5k random vectors for the ANN recall checks, with exact top-10 by numpy."""
    rng = np.random.default_rng(1)
    docs = _unit(rng, 5000, 32)
    queries = _unit(rng, 100, 32)
    ids = [f"d{i}" for i in range(len(docs))]
    exact = np.argsort(-(queries.astype(np.float64) @ docs.T.astype(np.float64)), axis=1)[:, :10]
    return docs, queries, ids, exact


def _brute(docs, queries, k, metric):
    d64, q64 = docs.astype(np.float64), queries.astype(np.float64)
    if metric == "ip":
        scores = q64 @ d64.T
    else:  # negated squared L2: higher is better
        scores = -((q64[:, None, :] - d64[None, :, :]) ** 2).sum(-1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def _recall_at_10(results, exact, ids):
    hits = 0
    for res, ex in zip(results, exact):
        hits += len({d for d, _ in res[:10]} & {ids[j] for j in ex})
    return hits / exact.size


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_flat_equals_bruteforce(small, metric):
    docs, queries, ids = small
    k = 50
    idx = make("Flat", metric=metric).build(docs, ids)
    results = idx.search(queries, k)
    order, scores = _brute(docs, queries, k, metric)
    assert len(results) == len(queries)
    for res, o, s in zip(results, order, scores):
        assert [d for d, _ in res] == [ids[j] for j in o]
        np.testing.assert_allclose([sc for _, sc in res], s, atol=1e-5, rtol=0)
        got = [sc for _, sc in res]
        assert got == sorted(got, reverse=True)


def test_hnsw_recall(medium):
    docs, queries, ids, exact = medium
    idx = make("HNSW32", metric="ip", ef_search=128).build(docs, ids)
    assert _recall_at_10(idx.search(queries, 10), exact, ids) >= 0.95


def test_hnsw_k_above_ef_search_returns_k(medium):
    """faiss alone returns padding (-1) when k > efSearch; we search with efSearch = k."""
    docs, queries, ids, _ = medium
    idx = make("HNSW32", ef_search=16).build(docs, ids)
    k, q = 1000, queries[:5]
    res = idx.search(q, k)
    assert [len(r) for r in res] == [k] * len(q)
    exact = np.argsort(-(q @ docs.T), axis=1)[:, :k]
    recall = np.mean([len({d for d, _ in r} & {ids[j] for j in e}) / k for r, e in zip(res, exact)])
    assert recall >= 0.95
    assert idx.index.hnsw.efSearch == 16  # the index's own setting is untouched
    _, pos = idx.index.search(q, k)
    assert (pos < 0).any()  # what plain faiss does with this index


def test_ivf_recall(medium):
    docs, queries, ids, exact = medium
    idx = make("IVF16,Flat", metric="ip", nprobe=16).build(docs, ids)
    assert _recall_at_10(idx.search(queries, 10), exact, ids) >= 0.95
    # nprobe can be lowered after the fact; recall may drop but results stay well formed
    idx.set_search_params(nprobe=1)
    res = idx.search(queries, 10)
    assert all(len(r) <= 10 for r in res)


def test_ivfpq_builds_and_searches(medium):
    docs, queries, ids, _ = medium
    idx = make("IVF16,PQ8x4", metric="ip", nprobe=4).build(docs, ids)
    res = idx.search(queries[:3], 5)
    assert [len(r) for r in res] == [5, 5, 5]
    assert idx.bytes_per_vector() < 32 * 4  # compressed: far below float32 storage


def test_train_size_subsamples(medium):
    docs, queries, ids, exact = medium
    idx = make("IVF16,Flat", nprobe=16, train_size=1000).build(docs, ids)
    assert len(idx) == len(docs)
    assert _recall_at_10(idx.search(queries, 10), exact, ids) >= 0.95


def test_too_many_lists_is_a_clear_error(small):
    docs, _, ids = small
    with pytest.raises(ValueError) as err:
        make("IVF1024,Flat").build(docs, ids)
    msg = str(err.value)
    assert "'IVF1024,Flat'" in msg and "1000 vectors" in msg and "IVF25,Flat" in msg


def test_padding_ids_are_skipped(small):
    docs, queries, ids = small
    idx = make("Flat").build(docs[:5], ids[:5])
    res = idx.search(queries[:2], 10)
    assert [len(r) for r in res] == [5, 5]
    assert all(d in ids[:5] for r in res for d, _ in r)
    run = idx.search_run(["q1", "q2"], queries[:2], 10)
    assert run == {"q1": dict(res[0]), "q2": dict(res[1])}


def test_search_run_matches_search(small):
    docs, queries, ids = small
    idx = make("Flat", metric="l2").build(docs, ids)
    qids = [f"q{i}" for i in range(len(queries))]
    run = idx.search_run(qids, queries, 7)
    res = idx.search(queries, 7)
    assert list(run) == qids
    assert all(list(run[q].items()) == r for q, r in zip(qids, res))


@pytest.mark.parametrize("factory,kw", [("Flat", {}), ("HNSW32", {"ef_search": 64}),
                                        ("IVF16,Flat", {"nprobe": 4})])
def test_save_load_roundtrip(tmp_path, medium, factory, kw):
    docs, queries, ids, _ = medium
    idx = make(factory, metric="l2", **kw).build(docs, ids)
    before = idx.search(queries, 20)
    idx.save(tmp_path / "idx")
    loaded = FaissIndex.load(tmp_path / "idx", threads=1)
    assert loaded.settings() == idx.settings()
    assert loaded.search(queries, 20) == before
    # saving again over an existing directory replaces it
    loaded.save(tmp_path / "idx")
    assert FaissIndex.load(tmp_path / "idx", threads=1).search(queries, 20) == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temp/old dirs left behind


def test_load_refuses_incomplete_dir(tmp_path, small):
    docs, _, ids = small
    idx = make("Flat").build(docs, ids)
    idx.save(tmp_path / "idx")
    (tmp_path / "idx" / "_COMPLETE").unlink()  # as if the write had stopped half-way
    with pytest.raises(FileNotFoundError, match="not a complete FAISS index"):
        FaissIndex.load(tmp_path / "idx", threads=1)
    with pytest.raises(FileNotFoundError, match="not a complete"):
        FaissIndex.load(tmp_path / "never-written")


def test_interrupted_save_leaves_nothing(tmp_path, small, monkeypatch):
    import faiss

    docs, _, ids = small
    idx = make("Flat").build(docs, ids)

    def boom(*a, **k):
        raise OSError("disk full")

    idx.save(tmp_path / "old")
    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(OSError):
        idx.save(tmp_path / "idx")
    with pytest.raises(OSError):  # a failed overwrite keeps the previous index intact
        idx.save(tmp_path / "old")
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert len(FaissIndex.load(tmp_path / "old")) == len(ids)


def test_use_gpu_without_gpu(small):
    import faiss

    docs, _, ids = small
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="GPU"):
        make("Flat", use_gpu=True).build(docs, ids)
    auto = make("Flat", use_gpu="auto").build(docs, ids)
    assert not auto.on_gpu and len(auto.search(docs[:1], 1)[0]) == 1


def test_wrong_param_and_dim_errors(small):
    docs, queries, ids = small
    with pytest.raises(ValueError, match="nprobe"):
        make("Flat", nprobe=4).build(docs, ids)
    with pytest.raises(ValueError, match="metric"):
        make("Flat", metric="cos")
    idx = make("Flat").build(docs, ids)
    with pytest.raises(ValueError, match="dim"):
        idx.search(queries[:, :16], 5)
    with pytest.raises(ValueError, match="duplicates"):
        make("Flat").build(docs[:2], ["a", "a"])


def test_threads_default_to_all_cores():
    assert FaissIndex("Flat").threads == _default_threads() >= 1
    assert make("Flat").threads == 1
