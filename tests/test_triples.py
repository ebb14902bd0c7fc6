"""Training triples through ir_datasets, offline: tiny datasets registered in ir_datasets' registry over local
files (LocalDownload, TsvDocPairs), so nothing is downloaded; then train_reranker / train_retriever on them."""

from __future__ import annotations

import dataclasses
import pickle
import uuid
from types import SimpleNamespace

import ir_datasets
import pytest
from hydra import compose, initialize_config_dir
from ir_datasets.datasets.base import Dataset
from ir_datasets.datasets.beir import BeirTitleDoc
from ir_datasets.formats import TsvDocPairs, TsvDocs, TsvQueries
from ir_datasets.util import LocalDownload

from retrieval_lab.config import register
from retrieval_lab.data import CollectionError
from retrieval_lab.training.data import ListItem, PairItem
from retrieval_lab.training.triples import IrDatasetsTriples
from tests.conftest import ROOT, TINY_BERT

register()

DOCS = "d1\tbody one\tTitle one\nd2\tbody two\t\nd3\tbody three\tTitle three\nd4\tbody four\t\n"
QUERIES = "q1\tfirst query\nq2\tsecond query\nq3\tthird query\nq9\tunused query\n"
TRIPLES = "q1\td1\td2\nq2\td3\td4\nq1\td1\td4\nq3\td4\td1\nq1\td3\td2\n"


def _register(folder, name="retrieval-lab-test", docs=DOCS, queries=QUERIES, triples=TRIPLES, docpairs=True,
              docs_file="docs.tsv", triples_file="triples.tsv"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docs.tsv").write_text(docs)
    (folder / "queries.tsv").write_text(queries)
    (folder / "triples.tsv").write_text(triples)
    parts = [TsvDocs(LocalDownload(folder / docs_file), doc_cls=BeirTitleDoc),
             TsvQueries(LocalDownload(folder / "queries.tsv"))]
    if docpairs:
        parts.append(TsvDocPairs(LocalDownload(folder / triples_file)))
    dataset_id = f"{name}/{uuid.uuid4().hex}/train"
    ir_datasets.registry.register(dataset_id, Dataset(*parts))
    return dataset_id


@pytest.fixture(scope="module")
def triples_id(tmp_path_factory):
    return _register(tmp_path_factory.mktemp("triples"))


def test_list_items_in_file_order_with_texts_labels_and_ids(triples_id):
    ds = IrDatasetsTriples(triples_id)
    assert len(ds) == 5 and ds.triples[1] == ("q2", "d3", "d4")
    assert ds[0] == ListItem("first query", ["Title one body one", "body two"], [1.0, 0.0], "q1", ["d1", "d2"])
    assert ds[1] == ListItem("second query", ["Title three body three", "body four"], [1.0, 0.0], "q2", ["d3", "d4"])
    assert ds[3] == ListItem("third query", ["body four", "Title one body one"], [1.0, 0.0], "q3", ["d4", "d1"])
    assert ds.queries == {"q1": "first query", "q2": "second query", "q3": "third query"}  # only the needed ones
    assert [ds[i].doc_ids for i in range(len(ds))] == [["d1", "d2"], ["d3", "d4"], ["d1", "d4"], ["d4", "d1"],
                                                        ["d3", "d2"]]


def test_pickles_for_workers(triples_id):
    ds = IrDatasetsTriples(triples_id, max_triples=2)
    again = pickle.loads(pickle.dumps(ds.pairs()))  # spawned DataLoader workers / ddp_spawn get a copy
    assert again[1] == ds.pairs()[1] and again.source[0] == ds[0]


def test_max_triples_keeps_the_first_ones(triples_id):
    ds = IrDatasetsTriples(triples_id, max_triples=2)
    assert ds.triples == [("q1", "d1", "d2"), ("q2", "d3", "d4")]
    assert ds.queries == {"q1": "first query", "q2": "second query"}
    assert len(IrDatasetsTriples(triples_id, max_triples=100)) == 5
    with pytest.raises(ValueError, match="max_triples must be >= 1"):
        IrDatasetsTriples(triples_id, max_triples=0)


def test_retriever_pairs(triples_id):
    ds = IrDatasetsTriples(triples_id)
    pairs = ds.pairs()
    assert len(pairs) == 5
    # positive_ids: every positive of the query among the triples read (q1: d1, and d3 in the last triple)
    assert pairs[2] == PairItem("first query", "Title one body one", ["body four"], "q1", "d1", ["d4"],
                                frozenset({"d1", "d3"}))
    assert pairs[1].positive_ids == frozenset({"d3"})
    assert ds.pairs(num_hard_negatives=0)[2] == PairItem("first query", "Title one body one", [], "q1", "d1", [],
                                                         frozenset({"d1", "d3"}))
    assert IrDatasetsTriples(triples_id, max_triples=4).pairs()[2].positive_ids == frozenset({"d1"})
    with pytest.raises(ValueError, match="one hard negative per query.*got 2"):
        ds.pairs(num_hard_negatives=2)


def test_errors_name_the_problem(tmp_path, triples_id):
    with pytest.raises(CollectionError, match="unknown ir_datasets id 'retrieval-lab-test/nope'"):
        IrDatasetsTriples("retrieval-lab-test/nope")
    # without docpairs: say which ids have them (the same family's, else MS MARCO's)
    no_pairs = _register(tmp_path / "a", name="retrieval-lab-nopairs", docpairs=False)
    with pytest.raises(CollectionError, match=rf"'{no_pairs}' has no docpairs.*msmarco-passage/train/triples-small"):
        IrDatasetsTriples(no_pairs)
    same_family = _register(tmp_path / "b", docpairs=False)
    with pytest.raises(CollectionError, match=rf"has no docpairs.*{triples_id}"):
        IrDatasetsTriples(same_family)
    # what ir_datasets cannot provide (on MS MARCO: no network the first time): said so, with its cache folder
    no_file = _register(tmp_path / "c", triples_file="missing.tsv")
    with pytest.raises(CollectionError, match=r"docpairs of .*FileNotFoundError.*network.*IR_DATASETS_HOME"):
        IrDatasetsTriples(no_file)
    no_docs = _register(tmp_path / "d", docs_file="missing.tsv")
    with pytest.raises(CollectionError, match=r"documents of .*network.*IR_DATASETS_HOME"):
        IrDatasetsTriples(no_docs)
    unknown_query = _register(tmp_path / "e", triples="q1\td1\td2\nq7\td1\td2\n")
    with pytest.raises(CollectionError, match=r"1 of the 2 queries named by the triples .* 'q7'"):
        IrDatasetsTriples(unknown_query)
    unknown_doc = _register(tmp_path / "f", triples="q1\td1\td2\nq1\td1\td8\n")
    with pytest.raises(KeyError, match="'d8'"):
        IrDatasetsTriples(unknown_doc)[1]


# ---------------------------------------------------------------------------------------------------------------
# training stages on the triples: no train split, no first stage


def _ctx(tmp_path, *overrides):
    from retrieval_lab.context import StageContext
    from retrieval_lab.data import load_collection
    from retrieval_lab.loggers import NoneLogger

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", "show_progress=false", *overrides])
    return StageContext(cfg, load_collection(cfg.dataset), tmp_path / "out", tmp_path / "cache", NoneLogger())


def test_train_reranker_on_triples_end_to_end(tmp_path, triples_id):
    from retrieval_lab.rerankers.model import ModelReranker

    ctx = _ctx(tmp_path, "reranker=cross_encoder", f"reranker.model={TINY_BERT}", "reranker.max_length=32",
               f"reranker.train.triples={triples_id}", "reranker.train.max_triples=3",
               "reranker.train.split=absent",  # would fail if the collection's train split were looked at
               "reranker.train.max_steps=2", "reranker.train.batch_size=2", "reranker.train.warmup_steps=0")
    reranker = ModelReranker(ctx.cfg.reranker, ctx)
    reranker.prepare(None)  # no first stage
    trained = reranker.model_path
    assert trained.startswith(str(tmp_path / "cache" / "models"))
    assert (ctx.output_dir / "train_reranker_model.txt").exists()
    assert (ctx.output_dir / "train_reranker" / "checkpoints" / "last.ckpt").exists()
    qid = next(iter(ctx.collection.queries))
    doc_ids = ctx.collection.corpus.ids()[:2]
    scores = reranker.score([(qid, doc_ids[0]), (qid, doc_ids[1])])  # ids: the stage looks the texts up
    assert len(scores) == 2 and scores[0] != scores[1]
    again = ModelReranker(ctx.cfg.reranker, ctx)
    again.prepare(None)
    assert again.model_path == trained  # cached: the key covers the triples, not a first stage


def test_without_triples_training_still_uses_the_train_split_and_first_stage(tmp_path):
    from retrieval_lab.rerankers.model import ModelReranker
    from retrieval_lab.retrievers import build_stage

    common = ("reranker=cross_encoder", f"reranker.model={TINY_BERT}", "reranker.max_length=32", "retriever=bm25",
              "reranker.train.max_steps=2", "reranker.train.batch_size=2", "reranker.train.list_size=3")
    ctx = _ctx(tmp_path, *common, "reranker.train.split=absent")
    with pytest.raises(ValueError, match="no judged 'absent' split"):
        ModelReranker(ctx.cfg.reranker, ctx).prepare(build_stage(ctx.cfg.retriever, ctx))
    ctx = _ctx(tmp_path, *common)
    with pytest.raises(ValueError, match="needs a first stage"):
        ModelReranker(ctx.cfg.reranker, ctx).prepare(None)
    reranker = ModelReranker(ctx.cfg.reranker, ctx)
    reranker.prepare(build_stage(ctx.cfg.retriever, ctx))  # toy train split, BM25 negatives
    assert (ctx.output_dir / "train_reranker" / "checkpoints" / "last.ckpt").exists()


def test_train_retriever_on_triples_end_to_end(tmp_path, triples_id):
    from retrieval_lab.retrievers.model import ModelRetriever
    from retrieval_lab.training.stages import train_retriever

    ctx = _ctx(tmp_path, f"retriever.model={TINY_BERT}", "retriever.train.enabled=true",
               f"retriever.train.triples={triples_id}", "retriever.train.split=absent",
               "retriever.train.max_steps=2", "retriever.train.batch_size=2", "retriever.train.warmup_steps=0")
    retriever = ModelRetriever(ctx.cfg.retriever, ctx)
    run = {"q": {"d": 1.0}}  # a first stage's run would give negatives: the triples give them instead
    trained = train_retriever(ctx.cfg.retriever, ctx, str(TINY_BERT), retriever.load_model, run)
    assert (ctx.output_dir / "train_retriever" / "checkpoints" / "last.ckpt").exists()
    assert trained.startswith(str(tmp_path / "cache" / "models"))


def test_cache_key_covers_the_triples_not_the_collection(tmp_path, triples_id):
    from retrieval_lab.training.stages import model_key

    def key(*overrides, collection=None):
        ctx = _ctx(tmp_path, "reranker=cross_encoder", *overrides)
        if collection is not None:
            ctx = dataclasses.replace(ctx, collection=collection)
        return model_key("reranker", str(TINY_BERT), ctx.cfg.reranker, ctx, None)

    triples = (f"reranker.train.triples={triples_id}", "reranker.train.max_triples=3")
    base = key(*triples)
    assert key(f"reranker.train.triples={triples_id}", "reranker.train.max_triples=4") != base
    assert key("reranker.train.triples=msmarco-passage/train/triples-small", "reranker.train.max_triples=3") != base
    # the collection the model is evaluated on does not change what it was trained on (it does without triples)
    other = SimpleNamespace(fingerprint="another collection", rel_threshold=1)
    assert key(*triples, collection=other) == base
    assert key(collection=other) != key()
