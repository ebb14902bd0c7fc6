"""ColBERT's token store and its search: exact MaxSim from stored embeddings against a float64 loop, atomic and cached
builds, damaged stores, end-to-end IVFPQ search against the exhaustive oracle, the retriever and re-ranker stages
(no document through the encoder at query time), and awkward input."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval_lab.cache import is_complete
from retrieval_lab.indexes.base import cached_folder
from retrieval_lab.indexes.multi_vector import MultiVectorIndex, TokenIVF, plan_ivf
from retrieval_lab.indexes.token_store import TokenStore, TokenStoreWriter
from retrieval_lab.rerankers.model import ModelReranker
from retrieval_lab.retrievers.model import ModelRetriever
from tests.conftest import TINY_BERT
from tests.test_stages import ctx_of


def unit(rng, *shape):
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_store(folder, docs, dtype="float16"):
    writer = TokenStoreWriter(folder, docs[0].shape[1] if len(docs[0]) else 8, dtype)
    writer.add([f"d{i}" for i in range(len(docs))], docs)
    writer.finish()
    return TokenStore.load(folder)


def loop_score(q, d, similarity="cosine", interaction="maxsim"):
    """The definition, one pair of vectors at a time, in float64 (a document without vectors matches nothing)."""
    if len(d) == 0:
        return float("-inf")
    total = 0.0
    for qi in q.astype(np.float64):
        sims = [float(qi @ dj) if similarity == "cosine" else -float(((qi - dj) ** 2).sum())
                for dj in d.astype(np.float64)]
        total += max(sims) if interaction == "maxsim" else sum(sims) / len(sims)
    return total


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5, 1, 17, 0, 9, 33, 2, 12]  # one document without vectors
    docs = [unit(rng, n, 16).astype(np.float32) if n else np.zeros((0, 16), np.float32) for n in lengths]
    return write_store(tmp_path / "store", docs), docs


def test_store_round_trips_and_is_memory_mapped(store):
    s, docs = store
    assert len(s) == 8 and s.num_tokens == sum(map(len, docs)) and s.dim == 16
    assert isinstance(s.tokens, np.memmap) and s.tokens.dtype == np.float16
    for i, d in enumerate(docs):
        np.testing.assert_array_equal(s.doc_tokens(i), d.astype(np.float16))
    assert s.nbytes() == s.num_tokens * 16 * 2  # 2 bytes a dimension
    assert list(s.token_doc[:7]) == [0, 0, 0, 0, 0, 1, 2]
    manifest = json.loads((s.path / "manifest.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["num_tokens"] == s.num_tokens
    # raw values at offset 0: numpy reads the file without any header
    raw = np.fromfile(s.path / "tokens.bin", dtype="<f2").reshape(-1, 16)
    np.testing.assert_array_equal(raw[5], docs[1][0].astype(np.float16))


@pytest.mark.parametrize("similarity", ["cosine", "l2"])
@pytest.mark.parametrize("interaction", ["maxsim", "avgsim"])
def test_stored_maxsim_equals_a_float64_loop_whatever_the_chunking(store, similarity, interaction):
    s, _ = store
    rng = np.random.default_rng(1)
    q = unit(rng, 7, 16).astype(np.float32)
    positions = np.array([5, 3, 0, 2, 7, 1, 6, 4])
    want = np.array([loop_score(q, s.doc_tokens(p).astype(np.float64), similarity, interaction) for p in positions])
    for chunk in (1, 3, 32):
        got = s.maxsim(q, positions, similarity, interaction, chunk_docs=chunk)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # a document's score does not depend on the other documents of the call (their lengths set the padding)
    alone = [s.maxsim(q, [p], similarity, interaction)[0] for p in positions]
    np.testing.assert_allclose(alone, s.maxsim(q, positions, similarity, interaction), rtol=0, atol=1e-6)
    assert s.maxsim(q, [3], similarity, interaction)[0] == float("-inf")  # no vectors: ranked last


def test_a_document_without_vectors_is_ranked_last_even_at_the_end_of_the_store(tmp_path):
    rng = np.random.default_rng(5)
    docs = [unit(rng, 4, 8).astype(np.float32), unit(rng, 2, 8).astype(np.float32), np.zeros((0, 8), np.float32)]
    s = write_store(tmp_path / "tail", docs)
    q = unit(rng, 3, 8).astype(np.float32)
    for similarity in ("cosine", "l2"):  # under l2 every real score is negative: a 0 would have won
        got = s.maxsim(q, [2, 0, 1], similarity)
        assert got[0] == float("-inf") and np.isfinite(got[1:]).all()
        run = MultiVectorIndex(s, None, mode="exhaustive", similarity=similarity).search_run(["q"], [q], 10)
        assert set(run["q"]) == {"d0", "d1"}


def test_negative_similarities_never_lose_to_padding(tmp_path):
    rng = np.random.default_rng(2)
    q = np.abs(unit(rng, 4, 8)).astype(np.float32)
    docs = [-np.abs(unit(rng, n, 8)).astype(np.float32) for n in (1, 6, 3)]
    s = write_store(tmp_path / "neg", docs, "float32")
    got = s.maxsim(q, [0, 1, 2])
    assert (got < 0).all()
    np.testing.assert_allclose(got, [loop_score(q, d) for d in docs], atol=1e-5)


def test_a_damaged_store_stops_naming_the_file(store):
    s, _ = store
    tokens = s.path / "tokens.bin"
    data = tokens.read_bytes()
    tokens.write_bytes(data[:-6])
    with pytest.raises(ValueError, match=r"tokens\.bin.*bytes, but the manifest says"):
        TokenStore.load(s.path)
    tokens.write_bytes(data)
    (s.path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest"):
        TokenStore.load(s.path)


def test_a_killed_build_is_never_reused(tmp_path):
    rng = np.random.default_rng(3)
    docs = [unit(rng, 4, 8).astype(np.float32) for _ in range(3)]
    target = tmp_path / "cache" / "key"

    def killed(folder):
        writer = TokenStoreWriter(folder, 8)
        writer.add(["a"], docs[:1])  # half-written, then the process dies
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_folder(target, killed, TokenStore.load)
    assert not is_complete(target) and not target.exists()
    calls = []

    def write(folder):
        calls.append(folder)
        writer = TokenStoreWriter(folder, 8)
        writer.add(["a", "b", "c"], docs)
        writer.finish()

    built, hit = cached_folder(target, write, TokenStore.load)
    again, hit2 = cached_folder(target, write, TokenStore.load)
    assert (hit, hit2, len(calls)) == (False, True, 1) and len(again) == 3
    assert again.path == target / "index"  # the memory map points at the published folder, not the temporary one


def test_ivf_plan_scales_partitions_and_says_so():
    shape, notes = plan_ivf(850_000, 128, 2000, 16)
    assert shape == {"partitions": 2000, "subvectors": 16, "bits": 8} and notes == []  # SciFact-sized: the paper's P
    shape, notes = plan_ivf(1000, 24, 2000, 16)
    assert shape["partitions"] == 25  # 1000 // 39: more partitions than vectors is never built
    assert shape["subvectors"] == 12  # the largest divisor of 24 not above 16
    assert shape["bits"] == 4 and len(notes) == 3  # 1000 vectors train at most 25 codewords
    assert "2000 -> 25" in notes[0]
    assert plan_ivf(3, 8, 10, 16)[0] == {"partitions": 1, "subvectors": 8, "bits": 1}


def clustered_store(tmp_path, n_docs=300, dim=32, seed=4):
    rng = np.random.default_rng(seed)
    centres = unit(rng, 40, dim)
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(5, 30))
        x = centres[rng.integers(0, 40, n)] + 0.3 * rng.standard_normal((n, dim))
        docs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return write_store(tmp_path / "clustered", docs), rng, centres


def test_end_to_end_search_finds_what_exhaustive_maxsim_finds(tmp_path):
    s, rng, centres = clustered_store(tmp_path)
    ivf = TokenIVF.build(s, partitions=64, subvectors=8)
    assert ivf.settings["partitions"] == 64 and ivf.index.ntotal == s.num_tokens
    queries = []
    for _ in range(20):
        x = centres[rng.integers(0, 40, 6)] + 0.3 * rng.standard_normal((6, 32))
        queries.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    qids = [f"q{i}" for i in range(20)]
    exhaustive = MultiVectorIndex(s, None, mode="exhaustive").search_run(qids, queries, 10)
    for qid, q in zip(qids, queries):  # exhaustive = every document scored by the loop
        want = sorted(((loop_score(q, s.doc_tokens(i)), s.doc_ids[i]) for i in range(len(s))), reverse=True)[:10]
        assert sorted(exhaustive[qid], key=exhaustive[qid].get, reverse=True) == [d for _, d in want]
    e2e = MultiVectorIndex(s, ivf, nprobe=8, candidates=200)
    run = e2e.search_run(qids, queries, 10)
    assert e2e.stats["top10_agreement"] >= 0.95 and e2e.stats["candidate_recall@10"] >= 0.95
    agree = np.mean([len(set(run[q]) & set(exhaustive[q])) / 10 for q in qids])
    assert agree == pytest.approx(e2e.stats["top10_agreement"])
    for qid in qids:  # candidates are re-ranked exactly: a document found by both has the same score
        for doc, score in run[qid].items():
            if doc in exhaustive[qid]:
                assert score == pytest.approx(exhaustive[qid][doc], abs=1e-6)
    assert set(e2e.stats["ms_per_query_split"]) == {"candidates", "gather", "convert", "maxsim"}
    # fewer candidates per query vector: fewer documents scored, recall can only drop
    narrow = MultiVectorIndex(s, ivf, nprobe=1, candidates=5)
    narrow.search_run(qids, queries, 10)
    assert narrow.stats["candidate_docs_per_query"] < e2e.stats["candidate_docs_per_query"]
    assert narrow.stats["candidate_recall@100"] <= e2e.stats["candidate_recall@100"]


# ------------------------------------------------------------------------------------------------ the stages


def colbert_ctx(tmp_path, *overrides):
    return ctx_of(tmp_path, "retriever=colbert", f"retriever.model={TINY_BERT}", "retriever.train.enabled=false",
                  "retriever.embeddings_dtype=float32", "hardware.inference_precision=fp32", *overrides)


def test_exhaustive_retrieval_ranks_as_the_model_scores(tmp_path):
    ctx = colbert_ctx(tmp_path, "retriever.search.mode=exhaustive", "retriever.k=5")
    stage = ModelRetriever(ctx.cfg.retriever, ctx)
    run = stage.retrieve("test")
    info = ctx.indexes[id(stage)]
    assert info["index"] == "token_store+exhaustive" and info["store_dtype"] == "float32"
    topics, corpus = ctx.collection.topics("test"), ctx.collection.corpus
    qid = sorted(run)[0]
    ids = corpus.ids()
    model_scores = stage.model.score_pairs([topics[qid]] * len(ids), [corpus[d].contents() for d in ids])
    top = torch.topk(model_scores, 5)
    assert sorted(run[qid], key=run[qid].get, reverse=True) == [ids[i] for i in top.indices]
    np.testing.assert_allclose(sorted(run[qid].values(), reverse=True), top.values.numpy(), atol=1e-4)


def test_the_token_store_is_cached_and_shared_by_search_modes(tmp_path, monkeypatch):
    ctx = colbert_ctx(tmp_path)
    first = ModelRetriever(ctx.cfg.retriever, ctx)
    run = first.retrieve("test")
    info = ctx.indexes[id(first)]
    assert info["index_cache"] == "built" and info["index"] == "token_store+ivfpq"
    assert info["ivf"]["partitions"] < 2000 and "2000 ->" in info["ivf"]["notes"][0]  # toy-sized: P lowered
    assert info["candidate_recall@10"] is not None and info["ms_per_query_split"]["encode"] > 0

    def no_write(*a, **k):
        raise AssertionError("the token store was rebuilt although a complete one is cached")

    monkeypatch.setattr(TokenStore, "write", no_write)
    monkeypatch.setattr(TokenIVF, "build", no_write)
    ctx2 = colbert_ctx(tmp_path)
    again = ModelRetriever(ctx2.cfg.retriever, ctx2)
    assert again.retrieve("test") == run and ctx2.indexes[id(again)]["index_cache"] == "hit"
    ctx3 = colbert_ctx(tmp_path, "retriever.search.mode=exhaustive", "retriever.search.nprobe=3")
    ModelRetriever(ctx3.cfg.retriever, ctx3).retrieve("test")  # same store, no IVF needed
    ctx4 = colbert_ctx(tmp_path, "retriever.embeddings_dtype=float16")  # 2 bytes a dimension: another store
    with pytest.raises(AssertionError, match="rebuilt"):
        ModelRetriever(ctx4.cfg.retriever, ctx4).prepare()


def test_the_reranker_scores_from_the_store_without_encoding_documents(tmp_path, monkeypatch):
    ctx = ctx_of(tmp_path, "retriever=bm25", "reranker=colbert", f"reranker.model={TINY_BERT}",
                 "reranker.train.enabled=false", "reranker.embeddings_dtype=float32",
                 "hardware.inference_precision=fp32")
    reranker = ModelReranker(ctx.cfg.reranker, ctx)
    reranker.prepare(None)
    from retrieval_lab.retrievers.model import token_store_for

    token_store_for(reranker)  # the corpus, encoded once (as a run would on first use)
    q1, q2 = sorted(ctx.collection.topics("test"))[:2]
    pairs = [(q1, d) for d in ctx.collection.corpus.ids()[:7]] + [(q2, ctx.collection.corpus.ids()[3])]
    queries, corpus = ctx.collection.queries, ctx.collection.corpus
    want = reranker.model.score_pairs([queries[q] for q, _ in pairs], [corpus[d].contents() for _, d in pairs])

    def no_docs(*a, **k):
        raise AssertionError("a document went through the encoder at query time")

    monkeypatch.setattr(reranker.model, "encode_docs", no_docs)
    got = reranker.score(pairs)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    split = ctx.indexes[id(reranker)]["ms_per_query_split"]
    assert set(split) == {"encode", "gather", "convert", "maxsim"}


def test_awkward_documents_and_queries(tmp_path, caplog):
    from tests.test_bad_inputs import trec_files

    files = trec_files(tmp_path, corpus="d1\tcats and dogs\nd2\t...!?;\nd3\tfish swim\n",
                       topics="1\tcats\n2\t" + " ".join(["word"] * 60) + "\n", qrels="1 0 d1 1\n2 0 d3 1\n")
    overrides = [f"dataset.{k}={v}" for k, v in files.items()]
    ctx = colbert_ctx(tmp_path, *overrides, "retriever.search.mode=end_to_end")
    stage = ModelRetriever(ctx.cfg.retriever, ctx)
    with caplog.at_level(logging.WARNING):
        run = stage.retrieve("test")
    store = stage.index.store
    # a document of punctuation only keeps [CLS], [D] and [SEP]: it has vectors and a score, it is not dropped
    assert store.lengths[store.positions(["d2"])[0]] == 3
    assert set(run["1"]) == {"d1", "d2", "d3"}
    assert any("truncated" in r.getMessage() for r in caplog.records)  # the 60-word query was cut at Nq
    assert any("partitions 2000 ->" in r.getMessage() for r in caplog.records)  # 3 documents: P lowered, said so


@pytest.mark.parametrize("ablation, check", [
    ("single_vector", lambda m, info: m.index_kind == "single_vector" and info["index"] == "faiss"),
    ("avgsim", lambda m, info: m.interaction == "avgsim" and info["index"] == "token_store+exhaustive"),
    ("no_augmentation", lambda m, info: m.query_augmentation is False),
    ("five_layers", lambda m, info: len(m.encoder.encoder.layer) == 1),  # tiny-bert has one layer: num_layers=1
])
def test_each_ablation_preset_trains_and_retrieves(tmp_path, ablation, check):
    from hydra import compose, initialize_config_dir

    from retrieval_lab.context import StageContext
    from retrieval_lab.data import load_collection
    from retrieval_lab.loggers import NoneLogger
    from tests.conftest import ROOT

    overrides = ["logger=none", "show_progress=false", "retriever=colbert", f"retriever.model={TINY_BERT}",
                 f"+colbert_ablation={ablation}", "retriever.train.max_steps=2", "retriever.train.batch_size=4",
                 "retriever.train.warmup_steps=0", "retriever.search.mode=exhaustive", "hardware.precision=32-true",
                 "hardware.inference_precision=fp32"]
    if ablation == "five_layers":
        overrides.append("retriever.num_layers=1")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    ctx = StageContext(cfg, load_collection(cfg.dataset), tmp_path / "out", tmp_path / "cache", NoneLogger())
    stage = ModelRetriever(cfg.retriever, ctx)
    run = stage.retrieve("test")
    assert len(run) == len(ctx.collection.topics("test")) and all(len(r) == min(1000, 129) for r in run.values())
    assert check(stage.model, ctx.indexes[id(stage)])
    training = json.loads((Path(stage.model_path) / "training.json").read_text())
    assert training["steps"] == 2


@pytest.mark.parametrize("override, key", [
    ("retriever.search.mode=approximate", "retriever.search.mode"),
    ("retriever.search.partitions=0", "retriever.search.partitions"),
    ("retriever.embeddings_dtype=int8", "retriever.embeddings_dtype"),
    ("retriever.dim=0", "retriever.dim"),
    ("retriever.interaction=sumsim", "retriever.interaction"),
])
def test_impossible_colbert_settings_stop_naming_the_key(override, key):
    from retrieval_lab.config import ConfigError, validate_config
    from tests.test_bad_inputs import compose

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(compose("retriever=colbert", override))
