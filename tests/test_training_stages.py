"""Training as a pipeline stage: what the cache key of a trained model covers, and what it must not."""

import dataclasses
import shutil

import pytest
from hydra import compose, initialize_config_dir

from retrieval_lab.cache import model_fingerprint
from retrieval_lab.config import register
from retrieval_lab.context import StageContext
from retrieval_lab.data import load_collection
from retrieval_lab.data.runs import read_trec_run, write_trec_run
from retrieval_lab.loggers import NoneLogger
from retrieval_lab.training.stages import model_key, stage_loss_config, stage_seed
from tests.conftest import ROOT, TINY_BERT

register()

RUN = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": 1.5}}


def ctx_of(tmp_path, *overrides):
    # precision pinned (hardware=cpu says auto, which differs between machines) unless the test picks hardware
    pinned = [] if any(o.startswith("hardware") for o in overrides) else ["hardware.precision=32-true"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config",
                      overrides=["retriever=bm25", "reranker=cross_encoder", "logger=none", *pinned, *overrides])
    return StageContext(cfg, load_collection(cfg.dataset), tmp_path / "out", tmp_path / "cache", NoneLogger())


def key(tmp_path, *overrides, run=RUN, backbone=str(TINY_BERT), stage="reranker"):
    ctx = ctx_of(tmp_path, f"{stage}.model={backbone}", *overrides)  # the config names the folder too
    return model_key(stage, backbone, ctx.cfg[stage], ctx, run)


def test_inference_settings_and_resume_do_not_retrain(tmp_path):
    base = key(tmp_path)
    assert base == key(tmp_path, "reranker.depth=10") == key(tmp_path, "reranker.batch_size=8")
    assert base == key(tmp_path, "reranker.train.resume_from=/some/last.ckpt")
    assert base == key(tmp_path, "reranker.train.checkpoint_every_n_steps=5", "reranker.train.log_every_n_steps=1")


def test_training_settings_loss_precision_and_seeds_do(tmp_path):
    base = key(tmp_path)
    changed = [
        key(tmp_path, "loss=poly1"), key(tmp_path, "reranker.train.lr=1e-4"), key(tmp_path, "reranker.train.list_size=8"),
        key(tmp_path, "hardware=cpu_bf16"), key(tmp_path, "seed=1"), key(tmp_path, "reranker.train.seed=1"),
        key(tmp_path, "reranker.max_length=128"), key(tmp_path, "reranker.train.attention_dropout=null"),
        key(tmp_path, "reranker.train.gradient_clip_val=1.0"), key(tmp_path, "reranker.train.warmup_ratio=0.1"),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_relevance_threshold_changes_the_key(tmp_path):
    # the toy collection's train split is graded: threshold 1 and 2 give different positives (39 vs 24 queries
    # with a positive), so they are different training sets
    one, two = ctx_of(tmp_path, "dataset.rel_threshold=1"), ctx_of(tmp_path, "dataset.rel_threshold=2")
    from retrieval_lab.training.data import judged

    positives = [sum(map(len, judged(c.collection, "train")[0].values())) for c in (one, two)]
    assert positives == [39, 24]
    assert key(tmp_path, "dataset.rel_threshold=1") != key(tmp_path, "dataset.rel_threshold=2")


def test_negatives_run_is_keyed_by_content_not_path(tmp_path):
    a, b = tmp_path / "a.trec", tmp_path / "b.trec"
    write_trec_run(RUN, a)
    write_trec_run(RUN, b)
    same = [key(tmp_path, "retriever=run", f"retriever.path={p}", run=read_trec_run(p)) for p in (a, b)]
    assert same[0] == same[1]  # two paths, same rankings
    changed = dict(RUN, q2={"d3": 1.5, "d4": 1.0})
    write_trec_run(changed, a)  # same path, new content
    assert key(tmp_path, "retriever=run", f"retriever.path={a}", run=read_trec_run(a)) != same[0]


def test_local_backbone_is_keyed_by_weights_not_path(tmp_path):
    copy = tmp_path / "copy-of-tiny-bert"
    shutil.copytree(TINY_BERT, copy)
    assert key(tmp_path, backbone=str(copy)) == key(tmp_path)
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")  # one byte more
    assert model_fingerprint(copy) != model_fingerprint(TINY_BERT)
    assert key(tmp_path, backbone=str(copy)) != key(tmp_path)


def test_training_record_is_not_part_of_the_model_fingerprint(tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(TINY_BERT, copy)
    before = model_fingerprint(copy)
    (copy / "training.json").write_text('{"seconds": 12.5}')
    assert model_fingerprint(copy) == before


def test_key_version_is_part_of_the_key(tmp_path, monkeypatch):
    import retrieval_lab.training.stages as stages

    base = key(tmp_path)
    monkeypatch.setattr(stages, "KEY_VERSION", stages.KEY_VERSION + 1)
    assert key(tmp_path) != base


def test_repbert_selects_the_margin_loss_and_in_batch_negatives_only(tmp_path):
    ctx = ctx_of(tmp_path, "retriever=repbert", "loss=softmax")
    r = ctx.cfg.retriever
    assert stage_loss_config(r, ctx) == {"name": "margin", "margin": 1.0}
    assert r.train.num_hard_negatives == 0 and r.train.in_batch_negatives
    assert (r.pooling, r.similarity, r.segment_ids, r.query_max_length, r.doc_max_length) == ("mean", "dot", True, 20, 256)
    # the top-level loss group still trains the reranker of the same run
    assert stage_loss_config(ctx.cfg.reranker, ctx) == {"name": "softmax"}
    # the module the training stage builds gets RepBERT's loss
    from retrieval_lab.losses import MultiLabelMarginLoss
    from retrieval_lab.training.stages import loss_from_config

    assert isinstance(loss_from_config(stage_loss_config(r, ctx)), MultiLabelMarginLoss)


def test_stage_seeds_depend_on_seed_and_stage_only():
    assert stage_seed(42, 42, "train_reranker") == stage_seed(42, 42, "train_reranker")
    assert len({stage_seed(42, 42, "train_reranker"), stage_seed(42, 42, "train_retriever"),
                stage_seed(1, 42, "train_reranker"), stage_seed(42, 1, "train_reranker")}) == 4


def test_a_stage_loss_without_a_name_is_refused(tmp_path):
    ctx = ctx_of(tmp_path, "+reranker.train.loss.margin=1.0")
    with pytest.raises(ValueError, match="reranker.train.loss|cross_encoder.train.loss"):
        stage_loss_config(ctx.cfg.reranker, ctx)


def test_colbert_search_and_storage_settings_do_not_retrain_but_model_settings_do(tmp_path):
    def colbert(*overrides):
        return key(tmp_path, "retriever=colbert", *overrides, stage="retriever")

    base = colbert()
    assert base == colbert("retriever.search.nprobe=3", "retriever.search.candidates=100")
    assert base == colbert("retriever.search.mode=exhaustive", "retriever.search.partitions=64")
    assert base == colbert("retriever.embeddings_dtype=float32")  # how the store keeps the vectors, not the model
    changed = [colbert("retriever.dim=32"), colbert("retriever.query_augmentation=false"),
               colbert("retriever.interaction=avgsim"), colbert("retriever.train.loss.name=softmax")]
    assert base not in changed and len(set(changed)) == len(changed)
