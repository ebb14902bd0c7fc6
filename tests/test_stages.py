"""The generic model-backed stages: one retriever stage (index-kind hook, cached FAISS index), one reranker stage
(any family that scores pairs, the bi-encoder included), scores asked for by ids."""

import pytest
from hydra import compose, initialize_config_dir

from retrieval_lab.config import register
from retrieval_lab.context import StageContext
from retrieval_lab.data import load_collection
from retrieval_lab.indexes.faiss_index import FaissIndex
from retrieval_lab.loggers import NoneLogger
from retrieval_lab.rerankers.base import Reranker
from retrieval_lab.rerankers.model import ModelReranker
from retrieval_lab.retrievers.bm25 import BM25Retriever
from retrieval_lab.retrievers.model import INDEX_KINDS, ModelRetriever
from tests.conftest import ROOT, TINY_BERT

register()


def ctx_of(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        overrides = [o for o in overrides]
        if not any(o.startswith("retriever=") for o in overrides):
            overrides.append(f"retriever.model={TINY_BERT}")
        cfg = compose(config_name="config", overrides=["logger=none", "show_progress=false", *overrides])
    return StageContext(cfg, load_collection(cfg.dataset), tmp_path / "out", tmp_path / "cache", NoneLogger())


def test_faiss_index_is_cached_and_not_rebuilt(tmp_path, monkeypatch):
    ctx = ctx_of(tmp_path)
    first = ModelRetriever(ctx.cfg.retriever, ctx)
    run = first.retrieve("test")
    info = ctx.indexes[id(first)]
    assert info["index_cache"] == "built" and info["index"] == "faiss"
    assert info["index_bytes_per_doc"] >= 4 * first.model.dim  # float32 vectors, Flat

    def no_build(self, *a, **k):
        raise AssertionError("the FAISS index was rebuilt although a complete one is cached")

    monkeypatch.setattr(FaissIndex, "build", no_build)
    ctx2 = ctx_of(tmp_path)
    again = ModelRetriever(ctx2.cfg.retriever, ctx2)
    assert again.retrieve("test") == run
    assert ctx2.indexes[id(again)]["index_cache"] == "hit"
    # another factory is another index: it is built (and here, refused by the patched build)
    ctx3 = ctx_of(tmp_path, "retriever.index.factory=HNSW8")
    with pytest.raises(AssertionError, match="rebuilt"):
        ModelRetriever(ctx3.cfg.retriever, ctx3).prepare()


def test_search_time_settings_do_not_stick_to_the_cached_index(tmp_path):
    ctx = ctx_of(tmp_path, "retriever.index.factory=HNSW8", "retriever.index.ef_search=3")
    built = ModelRetriever(ctx.cfg.retriever, ctx)
    assert built.index.index.hnsw.efSearch == 3
    ctx2 = ctx_of(tmp_path, "retriever.index.factory=HNSW8")  # ef_search null: faiss's default, not the last run's
    reused = ModelRetriever(ctx2.cfg.retriever, ctx2)
    assert reused.index.index.hnsw.efSearch == 16 and ctx2.indexes[id(reused)]["index_cache"] == "hit"
    ctx3 = ctx_of(tmp_path, "retriever.index.factory=HNSW8", "retriever.index.ef_search=40")
    assert ModelRetriever(ctx3.cfg.retriever, ctx3).index.index.hnsw.efSearch == 40


def test_bm25_index_is_cached_and_not_rebuilt(tmp_path, monkeypatch):
    from retrieval_lab.indexes.bm25 import BM25Index

    ctx = ctx_of(tmp_path, "retriever=bm25")
    first = BM25Retriever(ctx.cfg.retriever, ctx)
    run = first.retrieve("test")
    assert ctx.indexes[id(first)]["index_cache"] == "built"
    monkeypatch.setattr(BM25Index, "build", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rebuilt")))
    ctx2 = ctx_of(tmp_path, "retriever=bm25")
    again = BM25Retriever(ctx2.cfg.retriever, ctx2)
    assert again.retrieve("test") == run
    assert ctx2.indexes[id(again)]["index_cache"] == "hit"


def test_index_kinds_hook_names_the_single_vector_index():
    assert "single_vector" in INDEX_KINDS


def test_bm25_and_faiss_share_the_index_protocol(tmp_path):
    import numpy as np

    from retrieval_lab.indexes.base import Index
    from retrieval_lab.indexes.bm25 import BM25Index

    bm25 = BM25Index()
    bm25.build(["a", "b"], ["cats purr", "dogs run fast"], show_progress=False)
    faiss_index = FaissIndex().build(np.eye(2, dtype=np.float32), ["a", "b"])
    for index, query in ((bm25, ["dogs"]), (faiss_index, np.array([[0.0, 1.0]], dtype=np.float32))):
        assert isinstance(index, Index) and index.nbytes() > 0
        assert list(index.search_run(["q"], query, k=1)["q"]) == ["b"]
        index.save(tmp_path / type(index).__name__)
        again = type(index).load(tmp_path / type(index).__name__)
        assert again.search_run(["q"], query, k=1) == index.search_run(["q"], query, k=1)


def test_reranker_score_receives_ids(tmp_path):
    ctx = ctx_of(tmp_path, "retriever=bm25")

    class Recorder(Reranker):
        seen: list = []

        def score(self, pairs):
            Recorder.seen = list(pairs)
            return [float(len(doc_id)) for _, doc_id in pairs]

    first = BM25Retriever(ctx.cfg.retriever, ctx).retrieve("test")
    Recorder(ctx.cfg.reranker, ctx).rerank("test", first, depth=3)
    qids = set(ctx.collection.topics("test"))
    assert Recorder.seen and all(q in qids and d in ctx.collection.corpus for q, d in Recorder.seen)


def test_biencoder_reranker_keeps_the_same_models_ranking(tmp_path):
    # re-scoring a bi-encoder's own top-depth with the same bi-encoder changes no order in the head
    ctx = ctx_of(tmp_path, "reranker=biencoder", f"reranker.model={TINY_BERT}", "reranker.depth=5")
    retriever = ModelRetriever(ctx.cfg.retriever, ctx)
    first = retriever.retrieve("test")
    reranker = ModelReranker(ctx.cfg.reranker, ctx)
    reranker.prepare(retriever)
    reranked = reranker.rerank("test", first, depth=5)
    from retrieval_lab.data.runs import ranked

    for qid in first:
        head = [d for d, _ in ranked(first[qid])[:5]]
        assert [d for d, _ in ranked(reranked[qid])[:5]] == head
        for d in head:
            assert reranked[qid][d] == pytest.approx(first[qid][d], abs=1e-4)


def test_a_reranker_preset_of_the_wrong_family_fails_naming_both(tmp_path):
    from retrieval_lab.models import BiEncoder, FamilyMismatchError

    folder = tmp_path / "bi"
    BiEncoder.from_pretrained(str(TINY_BERT)).save_pretrained(folder)
    ctx = ctx_of(tmp_path, "reranker=cross_encoder", f"reranker.model={folder}", "reranker.train.enabled=false")
    reranker = ModelReranker(ctx.cfg.reranker, ctx)
    reranker.prepare(None)
    with pytest.raises(FamilyMismatchError, match="'biencoder' checkpoint.*'cross_encoder' reranker"):
        reranker.model  # noqa: B018


def test_a_run_stopped_by_max_time_is_cached_as_such_and_says_so(tmp_path, caplog):
    import json
    import logging

    from retrieval_lab.retrievers.bm25 import BM25Retriever

    overrides = ("retriever=bm25", "reranker=cross_encoder", f"reranker.model={TINY_BERT}", "reranker.max_length=32",
                 "reranker.train.max_steps=1000", "reranker.train.max_time_minutes=0.0005",
                 "reranker.train.list_size=3", "reranker.train.batch_size=2", "reranker.train.warmup_steps=0")
    ctx = ctx_of(tmp_path, *overrides)
    first = BM25Retriever(ctx.cfg.retriever, ctx)
    reranker = ModelReranker(ctx.cfg.reranker, ctx)
    with caplog.at_level(logging.INFO, logger="retrieval_lab"):
        reranker.prepare(first)
    record = json.loads((tmp_path / "cache" / "models" / reranker.model_path.split("/")[-1] / "training.json").read_text())
    assert record["stopped_by"] == "max_time" and 1 <= record["steps"] < 1000 and record["max_steps"] == 1000
    assert record["negatives"]["from"] == "bm25" and record["loss"] == {"name": "softmax"}
    assert record["train"]["list_size"] == 3 and "resume_from" not in record["train"]
    assert f"stopped by max_time_minutes=0.0005 after {record['steps']} of 1000 steps" in caplog.text
    caplog.clear()
    again = ModelReranker(ctx.cfg.reranker, ctx)
    with caplog.at_level(logging.INFO, logger="retrieval_lab"):
        again.prepare(first)
    assert again.model_path == reranker.model_path
    assert "reusing the model" in caplog.text and "undertrained model, cached as such" in caplog.text


def _new_family():
    """A 'new family' for the plug-in test below: defined outside the package, registered by one line."""
    from retrieval_lab.models import BiEncoder

    class FirstToken(BiEncoder):  # one file's worth: a family with its own name and fixed settings
        family = "first_token"
        roles = ("retriever",)

        def __init__(self, encoder, tokenizer, **settings):
            super().__init__(encoder, tokenizer, **{**settings, "pooling": "cls"})

    return FirstToken


def test_a_new_family_plugs_in_with_one_registry_line(tmp_path, monkeypatch):
    import json
    import sys
    import types

    from retrieval_lab.models import registry

    module = types.ModuleType("first_token_family")
    module.FirstToken = _new_family()
    monkeypatch.setitem(sys.modules, "first_token_family", module)
    monkeypatch.setitem(registry.FAMILIES, "first_token", "first_token_family:FirstToken")  # the one line
    ctx = ctx_of(tmp_path, "retriever.family=first_token", "retriever.train.enabled=true",
                 "retriever.train.max_steps=2", "retriever.train.batch_size=4", "retriever.train.warmup_steps=0")
    stage = ModelRetriever(ctx.cfg.retriever, ctx)  # the generic stage: nothing copied
    run = stage.retrieve("test")
    assert type(stage.model).__name__ == "FirstToken" and stage.model.pooling == "cls"
    assert len(run) == len(ctx.collection.topics("test"))
    saved = json.loads((tmp_path / "cache" / "models" / stage.model_path.split("/")[-1] / "retrieval_lab.json").read_text())
    assert saved["family"] == "first_token"
    # the trained folder loads as its own family, and a bi-encoder preset refuses it naming both
    assert type(registry.load_family(stage.model_path, "retriever")).__name__ == "FirstToken"
    from retrieval_lab.models import FamilyMismatchError

    with pytest.raises(FamilyMismatchError, match="'first_token' checkpoint.*'biencoder' retriever"):
        registry.load_family(stage.model_path, "retriever", family="biencoder")


def test_unknown_documents_in_the_head_sink_below_the_rescored_ones(tmp_path, caplog):
    import logging

    ctx = ctx_of(tmp_path, "retriever=bm25")

    class ByLength(Reranker):
        def score(self, pairs):
            assert all(d in ctx.collection.corpus for _, d in pairs)  # never asked to score an unknown document
            return [float(len(ctx.collection.corpus[d].contents())) for _, d in pairs]

    known = ctx.collection.corpus.ids()[:3]
    run = {"q": {"ghost1": 10.0, known[0]: 9.0, "ghost2": 8.0, known[1]: 7.0, known[2]: 6.0}}
    with caplog.at_level(logging.WARNING, logger="retrieval_lab"):
        out = ByLength(ctx.cfg.reranker, ctx).rerank("test", run, depth=4)
    from retrieval_lab.data.runs import ranked

    order = [d for d, _ in ranked(out["q"])]
    lengths = {d: len(ctx.collection.corpus[d].contents()) for d in known[:2]}
    assert order[:2] == sorted(known[:2], key=lambda d: -lengths[d])  # re-scored head
    assert order[2:] == ["ghost1", "ghost2", known[2]]  # unknown in first-stage order, then the tail
    assert "2 documents in the first stage's top 4 are not in the corpus" in caplog.text
