"""Structured configs: one dataclass per config-group option.

Hydra validates every yaml file in ``conf/`` against the schema it names in its defaults list
(``/schema/<group>/<option>@_here_``), so a misspelt key or a wrong type fails at start-up with the
key's name, before any data or model is loaded. ``register()`` puts the schemas in Hydra's ConfigStore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
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
    # binary metrics count grade >= this as relevant; null = the folder's collection.yaml, else 1 (an explicit value wins)
    rel_threshold: Optional[int] = None
    default_run: Optional[str] = None  # bundled first-stage run used by retriever=run (null: collection.yaml's)
    # loading stops when more than this share of the judged queries are missing from the topics (e.g. '01' vs '1')
    max_unknown_query_share: float = 0.05


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
    # rerankers: score at most this many (query, doc) pairs per forward pass, each pass recomputed in backward
    # (activation checkpointing); the loss still sees whole lists, so the gradient is the unsplit one. null: all
    micro_batch_size: Optional[int] = None
    gradient_checkpointing: bool = False  # the backbone's own (Hugging Face) activation checkpointing


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


@dataclass
class ColBERTSettings:
    # the paper's defaults (retrieval_lab/models/colbert.py); null = what a saved ColBERT folder says, else these
    dim: Optional[int] = None  # m = 128: the linear layer's output (ablation: 24, 32, 64, ...)
    query_max_length: Optional[int] = None  # Nq = 32 ([CLS] [Q] and [SEP] included)
    doc_max_length: Optional[int] = None  # 180
    query_augmentation: Optional[bool] = None  # pad queries with [MASK] to Nq (ablation [C]: false)
    similarity: Optional[str] = None  # cosine | l2 (negative squared L2, the paper's end-to-end model)
    interaction: Optional[str] = None  # maxsim | avgsim (ablation [B])
    mask_punctuation: Optional[bool] = None
    single_vector: Optional[bool] = None  # ablation [A]: the [CLS] vector to Nq*m dims, dot product, FAISS
    num_layers: Optional[int] = None  # ablation [D]: keep the first k encoder layers


@dataclass
class MultiVectorSearchConfig:
    """How a multi-vector (ColBERT) first stage searches its token store (retrieval_lab/indexes/multi_vector.py)."""

    mode: str = "end_to_end"  # end_to_end (FAISS IVFPQ candidates, exact MaxSim) | exhaustive (MaxSim, every doc)
    partitions: int = 2000  # P (lowered for collections with few vectors, and said so)
    subvectors: int = 16  # s: one byte each
    nprobe: int = 10  # partitions searched per query vector
    candidates: int = 1000  # k': token matches per query vector
    train_size: Optional[int] = None  # vectors k-means trains on (null: 256 per partition)
    oracle_max_docs: int = 20000  # end-to-end runs compare their candidates with exhaustive MaxSim up to this size


@dataclass
class ColBERTConfig(ColBERTSettings, ModelRetrieverConfig):
    name: str = "colbert"
    family: str = "colbert"
    embeddings_dtype: str = "float16"  # bytes per dimension of the token store: float16 (2) | float32 (4)
    search: MultiVectorSearchConfig = field(default_factory=MultiVectorSearchConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(enabled=True))


# ------------------------------------------------------------------------------------- reranker


@dataclass
class NoRerankerConfig:
    _target_: Optional[str] = None
    name: str = "none"
    depth: int = 0
    # unused without a second stage. They exist because Hydra composes a sweep's own config (`-m reranker=a,b`)
    # with the default reranker (this one) and every non-swept override: `reranker.model=...` or
    # `reranker.train.max_steps=...` beside a swept reranker group must find the key here too
    model: Optional[str] = None
    batch_size: Optional[int] = None
    train: TrainConfig = field(default_factory=TrainConfig)


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


@dataclass
class ColBERTRerankerConfig(ColBERTSettings, ModelRerankerConfig):
    """ColBERT as a re-ranker (section 3.5): the top-depth scored by MaxSim against the stored token embeddings
    (the corpus is encoded once into the token store; no document goes through the encoder at query time)."""

    name: str = "colbert"
    family: str = "colbert"
    embeddings_dtype: str = "float16"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(enabled=True))


T5_MODEL = "t5-base"  # the RankT5 paper's base size; offline, point reranker.model at a local folder


def _t5_train() -> TrainConfig:
    """RankT5's set-up (section 5.1): lists of 36 (1 relevant + 35 from the first stage's top 1000), a constant
    learning rate of 1e-4."""
    return TrainConfig(enabled=True, list_size=36, sample_depth=1000, lr=1e-4, schedule="constant", warmup_steps=0)


@dataclass
class RankT5Config(ModelRerankerConfig):
    """RankT5 (retrieval_lab/models/rankt5.py): ``variant=encdec`` scores the first decoder step's logit of
    ``score_token``; ``variant=enc`` pools the encoder and applies a dense layer."""

    name: str = "rankt5"
    family: str = "rankt5"
    model: str = T5_MODEL
    variant: str = "encdec"  # encdec | enc
    max_length: int = 128  # input tokens (MS MARCO setting of the paper); only the document is cut
    score_token: str = "<extra_id_10>"  # EncDec: whose logit is the score
    pooling: str = "first"  # Enc: first | mean
    train: TrainConfig = field(default_factory=_t5_train)


@dataclass
class MonoT5Config(ModelRerankerConfig):
    """monoT5 (retrieval_lab/models/rankt5.py): ``... Relevant:`` -> log P(true) over (false, true)."""

    name: str = "monot5"
    family: str = "monot5"
    model: str = T5_MODEL
    max_length: int = 128
    train: TrainConfig = field(default_factory=_t5_train)


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
    # auto: bf16 where the CPU/GPU runs it natively (AVX512-BF16, AMX, Ampere+), fp32 otherwise (retrieval_lab/hardware.py)
    precision: str = "auto"  # Lightning training precision: auto | 32-true | bf16-mixed | 16-mixed
    inference_precision: str = "auto"  # encoding/scoring: auto | fp32 | bf16 (autocast)
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
    "retriever": {"bm25": BM25Config, "run": RunFileConfig, "biencoder": BiEncoderConfig, "colbert": ColBERTConfig},
    "reranker": {"none": NoRerankerConfig, "cross_encoder": CrossEncoderConfig, "biencoder": BiEncoderRerankerConfig,
                 "colbert": ColBERTRerankerConfig, "rankt5": RankT5Config, "monot5": MonoT5Config},
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
    from omegaconf import OmegaConf

    # conf/config.yaml: outputs/<date>/<HH-MM-SS>-${run_suffix:}, so two runs started in the same second differ
    OmegaConf.register_new_resolver("run_suffix", run_suffix, replace=True)


# ------------------------------------------------------------------------------ start-up checks
#
# Hydra checks each group's yaml against its schema, but a `+key=value` override bypasses that (Hydra's own hint
# for a misspelt key tells users to add the `+`), and a schema's types say nothing about impossible values. These
# checks run on the whole composed config when a run starts (run.py), before any data, model or stage is touched.


class ConfigError(ValueError):
    """A config that cannot run: the message names the key and says what to do."""


#: top-level keys that are not ours (Hydra's own node; present when a caller passes the config with it)
_NOT_OURS = frozenset({"hydra"})


def validate_config(cfg) -> None:
    """Every problem found in the composed config, as one :class:`ConfigError`: keys no schema knows (each group
    node is checked against the dataclass its yaml names in its defaults list, nested nodes against their field
    types, a stage's ``train.loss`` against the loss schemas), impossible values, a missing ``resume_from``."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        problems = _unknown_keys(cfg, Config, "") + _bad_values(cfg) + _bad_settings(cfg)
    except OmegaConfBaseException as error:  # e.g. an interpolation that resolves to nothing: `retriever.k=${nope}`
        key = getattr(error, "full_key", None)
        where = f"`{key}`" if key else "an interpolation (${...})"
        raise ConfigError(f"config error:\n  - {where}: {str(error).splitlines()[0]}") from None
    if problems:
        head = "config error" if len(problems) == 1 else f"{len(problems)} config errors"
        raise ConfigError(f"{head}:\n" + "\n".join(f"  - {p}" for p in problems))


def _schema_of(node, declared, path: str):
    """The dataclass a composed node is checked against: the one Hydra merged into it (its object type), else its
    declared field type, else (an untyped group node) the schema of the option named by its ``name``."""
    import dataclasses

    from omegaconf import OmegaConf

    merged = OmegaConf.get_type(node)
    if isinstance(merged, type) and dataclasses.is_dataclass(merged):
        return merged
    if isinstance(declared, type) and dataclasses.is_dataclass(declared):
        return declared
    group = "loss" if path.endswith("train.loss") else path
    options = SCHEMAS.get("retriever" if group == "baseline" else group)
    name = node.get("name") if options else None
    return options.get(str(name)) if options and name is not None else None


def _field_types(schema) -> dict[str, Any]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(schema)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(schema)}


def _unwrap_optional(tp):
    import typing

    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def _unknown_keys(node, declared, path: str) -> list[str]:
    import difflib

    from omegaconf import DictConfig

    if not isinstance(node, DictConfig):
        return []
    schema = _schema_of(node, declared, path)
    if schema is None:
        return []  # a free-form mapping (Dict[str, ...], Any): nothing to check against
    fields = _field_types(schema)
    problems = []
    for key in node.keys():
        key = str(key)
        full = f"{path}.{key}" if path else key
        if not path and key in _NOT_OURS:
            continue
        if key not in fields:
            where = f"`{path}` (schema {schema.__name__})" if path else "the top level"
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean `{(path + '.') if path else ''}{close[0]}`? " if close else ""
            problems.append(f"unknown key `{full}`: {where} has no `{key}`; {hint}remove it or fix its spelling "
                            f"(known: {', '.join(sorted(k for k in fields if not k.startswith('_')))})")
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            problems += _unknown_keys(child, _unwrap_optional(fields[key]), full)
    return problems


def _bad_values(cfg) -> list[str]:
    """Values no run can use, each named by its key; only clear cases (a count below 1, a negative rate...)."""
    problems: list[str] = []
    for group in ("retriever", "baseline", "reranker"):
        stage = cfg.get(group)
        if stage is None or not stage.get("_target_"):
            continue
        problems += _stage_values(cfg, stage, group)
        negatives = stage.get("negatives")
        if negatives is not None and stage.get("train") is not None and stage.train.get("enabled"):
            problems += _stage_values(cfg, negatives, f"{group}.negatives")
    hardware = cfg.get("hardware")
    if hardware is not None:
        if hardware.get("threads") is not None and hardware.threads < 1:
            problems.append(f"`hardware.threads={hardware.threads}`: must be >= 1 (or null for the library default)")
        if hardware.get("num_nodes") is not None and hardware.num_nodes < 1:
            problems.append(f"`hardware.num_nodes={hardware.num_nodes}`: must be >= 1")
    return problems


_SIGNIFICANCE = ("t", "randomization", "none")
#: families trained on lists of (query, document) pairs (rerankers/model.py: those with tokenize_pairs)
_PAIR_FAMILIES = ("cross_encoder", "rankt5", "monot5")
_TRAIN_PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true")
_INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _bad_settings(cfg) -> list[str]:
    """Evaluation, dataset and hardware settings no run can use (metric names are checked by the pipeline)."""
    problems = []
    ev, ds, hw = cfg.get("eval"), cfg.get("dataset"), cfg.get("hardware")
    if ev is not None:
        if ev.get("rel_threshold") is not None and ev.rel_threshold < 1:
            problems.append(f"`eval.rel_threshold={ev.rel_threshold}`: must be >= 1 (grade >= it counts as relevant; "
                            f"0 would count every judged non-relevant document) or null")
        if ev.get("significance") is not None and ev.significance not in _SIGNIFICANCE:
            problems.append(f"`eval.significance={ev.significance}`: one of {list(_SIGNIFICANCE)}")
        if ev.get("metrics") is not None and len(ev.metrics) == 0:
            problems.append("`eval.metrics=[]`: name at least one metric (e.g. [ndcg@10])")
    if ds is not None and ds.get("rel_threshold") is not None and ds.rel_threshold < 1:
        problems.append(f"`dataset.rel_threshold={ds.rel_threshold}`: must be >= 1")
    if hw is not None:
        if hw.get("precision") is not None and str(hw.precision) not in _TRAIN_PRECISIONS:
            problems.append(f"`hardware.precision={hw.precision}`: one of {list(_TRAIN_PRECISIONS)}")
        if hw.get("inference_precision") is not None and str(hw.inference_precision) not in _INFERENCE_PRECISIONS:
            problems.append(f"`hardware.inference_precision={hw.inference_precision}`: one of "
                            f"{list(_INFERENCE_PRECISIONS)}")
        devices = hw.get("devices")
        if isinstance(devices, int) and not isinstance(devices, bool) and devices < 1 and devices != -1:
            problems.append(f"`hardware.devices={devices}`: >= 1, -1 (all), a list, or \"auto\"")
    return problems


def _stage_values(cfg, stage, path: str) -> list[str]:
    problems = []

    def need(key: str, ok, rule: str, node=stage, where=path):
        value = node.get(key)
        if value is not None and not ok(value):
            problems.append(f"`{where}.{key}={value}`: {rule}")

    need("k", lambda v: v >= 1, "must be >= 1 (documents retrieved per query)")
    need("k1", lambda v: v >= 0, "BM25's k1 must be >= 0")
    need("b", lambda v: 0 <= v <= 1, "BM25's b must be in [0, 1]")
    need("batch_size", lambda v: v >= 1, "must be >= 1 (texts per inference batch)")
    if path == "reranker":
        need("depth", lambda v: v >= 1, "must be >= 1 (the first stage's top-depth is re-ranked; "
                                        "reranker=none runs no second stage)")
    index = stage.get("index")
    if index is not None:
        need("nprobe", lambda v: v >= 1, "must be >= 1 (or null)", index, f"{path}.index")
        need("ef_search", lambda v: v >= 1, "must be >= 1 (or null)", index, f"{path}.index")
    search = stage.get("search")
    if search is not None:
        where_s = f"{path}.search"
        need("mode", lambda v: v in ("end_to_end", "exhaustive"), "one of ['end_to_end', 'exhaustive']", search, where_s)
        for key in ("partitions", "subvectors", "nprobe", "candidates", "train_size"):
            need(key, lambda v: v >= 1, "must be >= 1", search, where_s)
        need("oracle_max_docs", lambda v: v >= 0, "must be >= 0 (0: never compare with exhaustive MaxSim)", search,
             where_s)
    need("embeddings_dtype", lambda v: v in ("float16", "float32"), "one of ['float16', 'float32'] (bytes per dim)")
    for key in ("dim", "num_layers"):
        need(key, lambda v: v >= 1, "must be >= 1 (or null for the model's own)")
    need("interaction", lambda v: v in ("maxsim", "avgsim"), "one of ['maxsim', 'avgsim']")
    if stage.get("family") == "colbert":
        need("similarity", lambda v: v in ("cosine", "l2"), "one of ['cosine', 'l2'] for ColBERT")
    if stage.get("family") in ("rankt5", "monot5"):
        need("variant", lambda v: v in ("encdec", "enc"), "one of ['encdec', 'enc'] (RankT5-EncDec or RankT5-Enc)")
        need("pooling", lambda v: v in ("first", "mean"), "one of ['first', 'mean'] (RankT5-Enc's pooling)")
        need("max_length", lambda v: v >= 8, "must be >= 8 (the template alone takes several tokens)")
    train = stage.get("train")
    if train is None:
        return problems
    where = f"{path}.train"
    if not train.get("enabled"):
        if train.get("resume_from"):
            problems.append(f"`{where}.resume_from` is set but `{where}.enabled=false`: nothing would resume; "
                            f"set `{where}.enabled=true` or drop resume_from")
        return problems
    t = train
    need("max_steps", lambda v: v >= 1, "must be >= 1 (optimiser steps)", t, where)
    need("batch_size", lambda v: v >= 1, "must be >= 1 (queries per step)", t, where)
    need("sample_depth", lambda v: v >= 1, "must be >= 1", t, where)
    need("num_hard_negatives", lambda v: v >= 0, "must be >= 0", t, where)
    need("hard_negative_depth", lambda v: v >= 1, "must be >= 1", t, where)
    need("lr", lambda v: v > 0, "the learning rate must be > 0", t, where)
    need("weight_decay", lambda v: v >= 0, "must be >= 0", t, where)
    need("warmup_steps", lambda v: v >= 0, "must be >= 0", t, where)
    need("warmup_ratio", lambda v: 0 <= v < 1, "must be in [0, 1) (or null)", t, where)
    need("max_time_minutes", lambda v: v > 0, "must be > 0 (or null: no time limit)", t, where)
    need("temperature", lambda v: v > 0, "must be > 0 (or null)", t, where)
    need("attention_dropout", lambda v: 0 <= v < 1, "must be in [0, 1) (or null)", t, where)
    need("gradient_clip_val", lambda v: v >= 0, "must be >= 0 (or null: no clipping)", t, where)
    need("accumulate_grad_batches", lambda v: v >= 1, "must be >= 1", t, where)
    need("log_every_n_steps", lambda v: v >= 1, "must be >= 1", t, where)
    need("checkpoint_every_n_steps", lambda v: v >= 1, "must be >= 1 (or null)", t, where)
    need("max_triples", lambda v: v >= 1, "must be >= 1 (or null: all)", t, where)
    need("micro_batch_size", lambda v: v >= 1, "must be >= 1 (pairs per forward pass; or null: all at once)", t, where)
    if t.get("micro_batch_size") is not None and not (path == "reranker" and stage.get("family") in _PAIR_FAMILIES):
        problems.append(f"`{where}.micro_batch_size={t.micro_batch_size}`: only rerankers that read query and document "
                        f"together train in micro-batches ({', '.join(_PAIR_FAMILIES)}); remove it (or null)")
    need("schedule", lambda v: v in ("linear", "constant"), "expected linear or constant", t, where)
    loss = t.get("loss") if t.get("loss") is not None else cfg.get("loss")
    loss_name = str(loss.get("name")) if loss is not None and loss.get("name") is not None else None
    if loss_name is not None and loss_name not in SCHEMAS["loss"]:
        problems.append(f"`{where}.loss.name={loss_name}`: unknown loss; expected one of {sorted(SCHEMAS['loss'])}")
    list_size = t.get("list_size")
    if path == "reranker" and not t.get("triples") and list_size is not None:
        if list_size < 1:
            problems.append(f"`{where}.list_size={list_size}`: must be >= 1")
        elif list_size < 2 and loss_name not in (None, "pointwise_ce"):
            problems.append(f"`{where}.list_size={list_size}`: a list of 1 positive + {list_size - 1} negatives "
                            f"gives the {loss_name} loss nothing to rank against; use list_size >= 2")
    resume = t.get("resume_from")
    if resume and str(resume) != "last":
        from pathlib import Path

        ckpt = Path(str(resume)).expanduser()
        if not ckpt.is_file():
            what = "is a folder, not a checkpoint file" if ckpt.is_dir() else "does not exist"
            problems.append(f"`{where}.resume_from={resume}`: {what} (resolved: {ckpt.resolve()}); point it at a "
                            f"Lightning checkpoint such as <run folder>/train_*/checkpoints/last.ckpt")
    return problems


# ------------------------------------------------------------------------------------ run folders

_RUN_SUFFIX: str | None = None


def run_suffix() -> str:
    """6 random hex digits, drawn once per process: the run folder's suffix (``hydra.run.dir``, ``hydra.sweep.dir``
    in conf/config.yaml), so two runs started in the same second never share ``outputs/<date>/<HH-MM-SS>``. Once
    per process, so every job of a sweep sees the same sweep folder."""
    global _RUN_SUFFIX
    if _RUN_SUFFIX is None:
        import secrets

        _RUN_SUFFIX = secrets.token_hex(3)
    return _RUN_SUFFIX


FINISHED_MARKER = "metrics.json"  # written last by the pipeline: a folder holding it is a finished run


def check_run_folder(path, sweep: bool = False) -> None:
    """:class:`ConfigError` when ``path`` (a run folder; with ``sweep``, a sweep folder whose job folders are
    checked) already holds a finished run: a run never writes into another run's folder."""
    from pathlib import Path

    folder = Path(str(path))
    finished = sorted(folder.glob(f"*/{FINISHED_MARKER}")) if sweep else [folder / FINISHED_MARKER]
    finished = [p for p in finished if p.is_file()]
    if finished:
        key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
        raise ConfigError(
            f"{folder} already holds a finished run ({finished[0]}): a run never writes over another one; choose "
            f"another folder ({key}=...) or move that one away"
        )


def stop_with(error: BaseException) -> None:
    """End the run with one line on stderr naming what is wrong (exit status 2); the traceback goes to the run's log
    file when logging has one (run.py's checks), and nowhere else (Hydra's start-up callback, before logging)."""
    import logging
    import sys

    log = logging.getLogger("retrieval_lab")
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if files:
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (error,), sys.exc_info())
        for handler in files:
            handler.handle(record)
    where = f" (traceback in {files[0].baseFilename})" if files else ""
    text = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError's str() adds quotes
    print(f"error: {text}{where}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


class StartupChecks(Callback):
    """Hydra callback (conf/config.yaml ``hydra.callbacks``): before Hydra creates the run folder and writes
    ``.hydra/`` into it, stop on a config error (:func:`validate_config`) or a folder holding a finished run
    (:func:`check_run_folder`). Hydra turns a callback's exception into a warning, so this exits (status 2) with
    the message on stderr. run.py checks each job again (sweep jobs, and runs started without this callback)."""

    def on_run_start(self, config, **kwargs) -> None:
        try:
            validate_config(config)
            folder = self._select(config, "hydra.run.dir")
            if folder is not None:
                check_run_folder(folder)
        except ConfigError as error:
            stop_with(error)

    def on_multirun_start(self, config, **kwargs) -> None:
        try:
            folder = self._select(config, "hydra.sweep.dir")
            if folder is not None:
                check_run_folder(folder, sweep=True)
        except ConfigError as error:
            stop_with(error)

    @staticmethod
    def _select(config, key: str):
        from omegaconf import OmegaConf

        try:
            return OmegaConf.select(config, key)
        except Exception:  # an interpolation only Hydra's job set-up can resolve: run.py's check covers it
            return None
