"""Structured configs: one dataclass per config-group option.

Hydra validates every yaml file in ``conf/`` against the schema it names in its defaults list
(``/schema/<group>/<option>@_here_``), so a misspelt key or a wrong type fails at start-up with the
key's name, before any data or model is loaded. ``register()`` puts the schemas in Hydra's ConfigStore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# --------------------------------------------------------------------------------------- dataset


@dataclass
class DatasetConfig:
    name: str = MISSING
    # embedded: packaged collection; beir: local BEIR folder; trec: TREC files; ir_datasets: an ir_datasets id
    loader: str = "beir"
    # folder under $RETRIEVAL_LAB_DATA holding a BEIR-layout copy (tried first)
    local_dir: Optional[str] = None
    # absolute or relative path to a BEIR folder (beir), or to the corpus file (trec)
    path: Optional[str] = None
    topics: Optional[str] = None  # trec loader: topics file
    qrels: Optional[str] = None  # trec loader: qrels file
    # ir_datasets fallback: split name -> ir_datasets id (e.g. {test: beir/scifact/test})
    ir_datasets_id: Optional[str] = None
    ir_datasets_splits: Optional[Dict[str, str]] = None
    train_split: Optional[str] = "train"
    test_split: str = "test"
    rel_threshold: int = 1  # binary metrics count grade >= this as relevant
    default_run: Optional[str] = None  # bundled first-stage run used by retriever=run


# ------------------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    enabled: bool = False
    split: str = "train"
    max_steps: int = 1000
    max_time_minutes: Optional[float] = None  # stop training after this many minutes
    batch_size: int = 8  # queries per step
    list_size: int = 36  # reranker lists: 1 positive + m-1 sampled negatives (RankT5: m=36)
    sample_depth: int = 1000  # negatives sampled uniformly from the first stage's top-k (RankT5: k=1000)
    num_hard_negatives: int = 1  # retriever: hard negatives per query from the first-stage run
    hard_negative_depth: int = 100
    in_batch_negatives: bool = True
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 50
    warmup_ratio: Optional[float] = None  # warm-up over this share of max_steps (replaces warmup_steps when set)
    schedule: str = "linear"  # linear | constant
    gradient_clip_val: Optional[float] = None  # clip the gradient norm (null: no clipping)
    # the loss of this stage: a loss-group node ({name: margin, margin: 1.0}); null = the top-level `loss` group
    loss: Optional[Any] = None
    # retrievers: scores are divided by this before the loss (null: 0.05 for cosine similarity, 1 for dot)
    temperature: Optional[float] = None
    # dropout on attention probabilities while training (null = the model's own, 0.1 for BERTs); 0 lets CPU
    # attention use its fused kernel: 2.5x faster MiniLM steps here
    attention_dropout: Optional[float] = None
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    resume_from: Optional[str] = None  # a Lightning checkpoint to resume from (not part of the model's cache key)
    checkpoint_every_n_steps: Optional[int] = None  # also checkpoint mid-epoch every n optimiser steps
    seed: int = 42
    # an ir_datasets id with docpairs (e.g. msmarco-passage/train/triples-small): train on its first max_triples
    # (null = all) (query, positive, negative) triples instead of the collection's train split + first-stage run
    triples: Optional[str] = None
    max_triples: Optional[int] = None


# ------------------------------------------------------------------------------------ retriever


@dataclass
class BM25Config:
    _target_: str = "retrieval_lab.retrievers.bm25.BM25Retriever"
    name: str = "bm25"
    backend: str = "bm25s"  # bm25s (fast) | rank_bm25 (reference)
    k1: float = 0.9  # Anserini defaults
    b: float = 0.4
    method: str = "lucene"
    stopwords: Optional[str] = "en"
    stemmer: Optional[str] = "english"
    k: int = 1000  # documents retrieved per query


@dataclass
class RunFileConfig:
    _target_: str = "retrieval_lab.retrievers.run_file.RunFileRetriever"
    name: str = "run"
    path: Optional[str] = None  # TREC run file; null = the dataset's bundled default run
    k: int = 1000


@dataclass
class DenseIndexConfig:
    factory: str = "Flat"  # any faiss index_factory string: Flat, IVF1024,Flat, IVF1024,PQ16, HNSW32
    metric: str = "ip"  # ip | l2
    nprobe: Optional[int] = None
    ef_search: Optional[int] = None


DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class ModelRetrieverConfig:
    """What every model-backed first stage has (retrieval_lab/retrievers/model.py); a family adds its settings."""

    _target_: str = "retrieval_lab.retrievers.model.ModelRetriever"
    name: str = MISSING
    family: str = MISSING  # model family (retrieval_lab/models/registry.py)
    model: str = DEFAULT_MODEL  # a folder or a Hub name
    batch_size: int = 64  # inference batch
    embeddings_dtype: str = "float32"  # float32 | float16 (cache storage)
    index: DenseIndexConfig = field(default_factory=DenseIndexConfig)
    k: int = 1000
    train: TrainConfig = field(default_factory=TrainConfig)
    # first stage whose runs give hard negatives when training
    negatives: BM25Config = field(default_factory=BM25Config)


@dataclass
class ModelRerankerConfig:
    """What every model-backed second stage has (retrieval_lab/rerankers/model.py); a family adds its settings."""

    _target_: str = "retrieval_lab.rerankers.model.ModelReranker"
    name: str = MISSING
    family: str = MISSING
    model: str = DEFAULT_MODEL
    batch_size: int = 64
    depth: int = 100  # re-rank the first stage's top-depth
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class BiEncoderSettings:
    # null = what the model folder says (a sentence-transformers folder: its pooling, normalisation and
    # max length, segment 0 everywhere), else RepBERT's: mean pooling, dot, segment ids on, 20 / 256 tokens
    pooling: Optional[str] = None  # mean | cls
    similarity: Optional[str] = None  # dot | cosine
    segment_ids: Optional[bool] = None  # RepBERT: segment 0 for queries, 1 for documents
    query_max_length: Optional[int] = None
    doc_max_length: Optional[int] = None


@dataclass
class BiEncoderConfig(BiEncoderSettings, ModelRetrieverConfig):
    name: str = "biencoder"
    family: str = "biencoder"


# ------------------------------------------------------------------------------------- reranker


@dataclass
class NoRerankerConfig:
    _target_: Optional[str] = None
    name: str = "none"
    depth: int = 0


@dataclass
class CrossEncoderConfig(ModelRerankerConfig):
    name: str = "cross_encoder"
    family: str = "cross_encoder"
    max_length: int = 256
    train: TrainConfig = field(default_factory=lambda: TrainConfig(enabled=True))


@dataclass
class BiEncoderRerankerConfig(BiEncoderSettings, ModelRerankerConfig):
    """The bi-encoder as a re-ranker: the top-depth re-scored by the dot product of its embeddings; trained (when
    enabled) as a retriever, with hard negatives from the first stage's run."""

    name: str = "biencoder"
    family: str = "biencoder"


# ----------------------------------------------------------------------------------------- loss


@dataclass
class LossConfig:
    name: str = MISSING


@dataclass
class PointwiseCEConfig(LossConfig):
    name: str = "pointwise_ce"
    balance: bool = True  # upsample positives to the number of negatives (RankT5)


@dataclass
class PairwiseLogisticConfig(LossConfig):
    name: str = "pairwise_logistic"


@dataclass
class SoftmaxConfig(LossConfig):
    name: str = "softmax"


@dataclass
class Poly1Config(LossConfig):
    name: str = "poly1"
    epsilon: float = 1.0


@dataclass
class MarginConfig(LossConfig):
    name: str = "margin"
    margin: float = 1.0


@dataclass
class PairwiseSoftmaxConfig(LossConfig):
    name: str = "pairwise_softmax"


# ------------------------------------------------------------------------------------- hardware


@dataclass
class HardwareConfig:
    accelerator: str = "cpu"  # cpu | gpu | auto (Lightning)
    devices: Any = 1  # int, list or "auto"
    strategy: str = "auto"  # auto | ddp | ddp_spawn | ...
    num_nodes: int = 1
    precision: str = "32-true"  # Lightning training precision: 32-true | bf16-mixed | 16-mixed
    inference_precision: str = "fp32"  # encoding/scoring: fp32 | bf16 (autocast)
    faiss_gpu: bool = False
    threads: Optional[int] = None  # torch/faiss threads; null = library default


# --------------------------------------------------------------------------------------- logger


@dataclass
class LoggerConfig:
    name: str = "none"  # none | wandb
    project: str = "retrieval-lab"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    mode: str = "auto"  # auto (online with an API key, else offline) | online | offline | disabled


# ------------------------------------------------------------------------------------------- top


@dataclass
class EvalConfig:
    metrics: List[str] = field(
        default_factory=lambda: ["ndcg@10", "mrr@10", "map", "recall@100", "recall@1000"]
    )
    rel_threshold: Optional[int] = None  # null = the dataset's
    significance: str = "t"  # paired test against the baseline: t | randomization | none


@dataclass
class Config:
    dataset: Any = MISSING
    retriever: Any = MISSING
    reranker: Any = MISSING
    loss: Any = MISSING
    hardware: Any = MISSING
    logger: Any = MISSING
    baseline: Any = None  # a second first stage evaluated side by side (null for none)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 42
    cache_dir: Optional[str] = None  # null: $RETRIEVAL_LAB_CACHE or ~/.cache/retrieval_lab
    show_progress: bool = True


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"dataset": DatasetConfig},
    "retriever": {"bm25": BM25Config, "run": RunFileConfig, "biencoder": BiEncoderConfig},
    "reranker": {"none": NoRerankerConfig, "cross_encoder": CrossEncoderConfig, "biencoder": BiEncoderRerankerConfig},
    "loss": {
        "pointwise_ce": PointwiseCEConfig,
        "pairwise_logistic": PairwiseLogisticConfig,
        "softmax": SoftmaxConfig,
        "poly1": Poly1Config,
        "margin": MarginConfig,
        "pairwise_softmax": PairwiseSoftmaxConfig,
    },
    "hardware": {"hardware": HardwareConfig},
    "logger": {"logger": LoggerConfig},
}


def register() -> None:
    """Store every schema as ``schema/<group>/<name>`` and the top-level one as ``base_config``."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
