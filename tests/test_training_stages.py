"""Training as a pipeline stage: what the cache key of a trained model covers."""

from types import SimpleNamespace

from hydra import compose, initialize_config_dir

from retrieval_lab.config import register
from retrieval_lab.training.stages import _model_key
from tests.conftest import ROOT, TINY_BERT

register()


def key(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["retriever=bm25", "reranker=cross_encoder", *overrides])
    ctx = SimpleNamespace(cfg=cfg, hardware=cfg.hardware, collection=SimpleNamespace(fingerprint="abc"))
    return _model_key("reranker", str(TINY_BERT), cfg.reranker, ctx, cfg.retriever)


def test_inference_settings_do_not_retrain():
    assert key() == key("reranker.depth=10") == key("reranker.batch_size=8")


def test_training_settings_loss_first_stage_and_precision_do():
    base = key()
    changed = [
        key("loss=poly1"), key("loss=softmax", "reranker.train.lr=1e-4"), key("reranker.train.list_size=8"),
        key("retriever.k1=1.2"), key("hardware=cpu_bf16"), key("seed=1"), key("reranker.max_length=128"),
        key("reranker.train.attention_dropout=null"),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
