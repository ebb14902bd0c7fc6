"""Training as a pipeline stage: data + key parts in, a trained model folder out.

The stages (``retrievers/``, ``rerankers/``) call :func:`train_reranker` / :func:`train_retriever` with plain data:
the stage config, the collection (through the context), the backbone, a loader for the family and the first
stage's **run** on the training split (negatives are drawn from it; ``None`` when ``train.triples`` names an
ir_datasets set of training triples, see :mod:`.triples`). Nothing here imports a stage.

A trained model is cached under ``<cache>/models/<key>``; the key (:func:`model_key`) covers everything the
weights depend on and nothing they do not:

* the code's key version, the backbone's content (:func:`~retrieval_lab.cache.model_fingerprint`), the
  collection's content and its relevance threshold (which decides the positives), the negatives run's content
  (:func:`~retrieval_lab.cache.run_digest`: a run file or a model-backed first stage is keyed by what it ranked,
  not by its path or name), the stage's settings, its loss, the training precision and devices, the seeds;
* not: ``resume_from``, checkpoint and logging intervals, ``gradient_checkpointing`` (it replays the same dropout
  draws: bit-identical gradients), re-ranking depth, inference batch size, index settings.

Each training stage is seeded from (seed, train.seed, stage) when it starts (Lightning's ``seed_everything``, which
DDP's sampler follows), so a model does not depend on whether an earlier stage trained in this process or came
from the cache. The saved folder holds ``training.json``: the steps actually trained, why training stopped (a
run stopped by ``max_time_minutes`` before ``max_steps`` says so, and is cached as such), the resolved training
config and loss, and where the negatives came from. With ``hardware=ddp`` Lightning starts one process per
device; only rank 0 goes on past training.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from retrieval_lab.cache import (
    KEY_VERSION,
    atomic_dir,
    fingerprint,
    is_complete,
    model_fingerprint,
    run_digest,
    write_text_atomic,
)
from retrieval_lab.losses import build_loss

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]

TRAINING_RECORD = "training.json"

# stage settings that change how a trained model is used, not the model (re-ranking depth, inference batch,
# retrieval depth, index, embedding storage) and the first stage's config (keyed by its run's content instead)
# and the backbone's name or path (keyed by its content instead)
_NOT_IN_KEY = ("depth", "batch_size", "k", "index", "search", "embeddings_dtype", "negatives", "_target_", "model")
# training settings that do not change the weights
# (activation checkpointing replays the same dropout draws: bit-identical gradients, tests/test_rankt5.py; micro-batches
# draw dropout per chunk, so micro_batch_size stays in the key)
_TRAIN_NOT_IN_KEY = ("resume_from", "checkpoint_every_n_steps", "log_every_n_steps", "enabled",
                     "gradient_checkpointing")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def stage_loss_config(cfg: DictConfig, ctx) -> dict[str, Any]:
    """The loss this stage trains with: its own ``train.loss`` when set (``retriever=repbert``: RepBERT's margin
    loss), else the top-level ``loss`` group."""
    own = cfg.train.get("loss")
    loss = _plain(own) if own is not None else _plain(ctx.cfg.loss)
    if not isinstance(loss, dict) or "name" not in loss:
        raise ValueError(f"{cfg.name}.train.loss must be a loss-group node with a 'name' (e.g. {{name: margin, "
                         f"margin: 1.0}}), got {loss!r}")
    return loss


def loss_from_config(loss_cfg: Any):
    kwargs = dict(_plain(loss_cfg))
    return build_loss(kwargs.pop("name"), **kwargs)


def train_split(ctx, cfg: DictConfig, role: str) -> str:
    collection = ctx.collection
    split = cfg.train.split
    if split not in collection.qrels:
        raise ValueError(
            f"{role}.train.enabled=true, but dataset {collection.name!r} has no judged {split!r} split "
            f"(judged splits: {sorted(collection.qrels)}). Train on a dataset with one (e.g. dataset=scifact) "
            f"and pass the trained folder as {role}.model=<folder>, or set {role}.train.enabled=false."
        )
    return split


def stage_seed(seed: int, train_seed: int, stage: str) -> int:
    """The seed a training stage starts from: a function of (seed, train.seed, stage) only."""
    return int(fingerprint("seed", int(seed), int(train_seed), stage), 16) % (2**31 - 1)


def model_key(kind: str, backbone: str, cfg: DictConfig, ctx, run: Run | None) -> str:
    """Everything a trained model depends on, and nothing it does not (see the module docstring)."""
    hw = ctx.hardware
    settings = {k: v for k, v in _plain(cfg).items() if k not in _NOT_IN_KEY}
    settings["train"] = {k: v for k, v in settings["train"].items() if k not in _TRAIN_NOT_IN_KEY}
    # trained on train.triples (named, with max_triples, in cfg), the model does not depend on the collection
    triples = bool(cfg.train.get("triples"))
    data = None if triples else {"collection": ctx.collection.fingerprint,
                                 "rel_threshold": int(ctx.collection.rel_threshold)}
    return fingerprint(
        "trained-model", KEY_VERSION, kind, model_fingerprint(backbone), data, settings,
        stage_loss_config(cfg, ctx), None if run is None else run_digest(run),
        {"precision": hw.precision, "devices": _plain(hw.devices), "strategy": hw.strategy,
         "num_nodes": int(hw.get("num_nodes", 1) or 1)},
        int(ctx.cfg.seed),
    )


def _record_note(record: dict[str, Any]) -> str:
    steps, max_steps = record.get("steps"), record.get("max_steps")
    if record.get("stopped_by") == "max_time":
        return (f"stopped by max_time_minutes={record.get('max_time_minutes')} after {steps} of {max_steps} steps "
                f"(an undertrained model, cached as such)")
    return f"{steps} steps"


def _cached(key: str, ctx, stage: str) -> str | None:
    target = ctx.cache_dir / "models" / key
    if not is_complete(target):
        return None
    record = read_training_record(target) or {}
    log.info("%s: reusing the model trained with the same settings at %s (%s)", stage, target, _record_note(record))
    if record.get("stopped_by") == "max_time":
        log.warning("%s: the cached model was %s", stage, _record_note(record))
    (ctx.output_dir / f"{stage}_model.txt").write_text(str(target) + "\n")
    return str(target)


def _seed(cfg: DictConfig, ctx, stage: str) -> int:
    import lightning.pytorch as pl

    seed = stage_seed(ctx.cfg.seed, cfg.train.seed, stage)
    pl.seed_everything(seed, workers=True, verbose=False)
    return seed


def _loader(dataset, batch_size: int, seed: int, collate_fn):
    from retrieval_lab.training.loader import train_loader

    return train_loader(dataset, batch_size=int(batch_size), seed=int(seed), collate_fn=collate_fn)


def _fit_and_export(module, loader, cfg: DictConfig, ctx, stage: str, key: str, record: dict[str, Any]) -> str:
    from retrieval_lab.training.trainer import build_trainer, fit

    target = ctx.cache_dir / "models" / key
    module.model.train()  # from_pretrained returns eval mode; Lightning keeps modes as it finds them (dropout on)
    if cfg.train.get("attention_dropout") is not None:
        from retrieval_lab.models.backbone import set_attention_dropout

        n = set_attention_dropout(module.model, float(cfg.train.attention_dropout))
        log.info("%s: attention dropout %s in %d attention modules", stage, cfg.train.attention_dropout, n)
    if cfg.train.get("gradient_checkpointing"):
        from retrieval_lab.models.backbone import enable_gradient_checkpointing

        n = enable_gradient_checkpointing(module.model)
        log.info("%s: gradient checkpointing in %d backbone(s)", stage, n)
    trainer = build_trainer(
        ctx.hardware, cfg.train, output_dir=ctx.stage_dir(stage),
        logger=ctx.logger.get_lightning_logger(), enable_progress_bar=ctx.show_progress,
    )
    start = time.perf_counter()
    fit(module, loader, trainer, ckpt_path=cfg.train.resume_from)
    if trainer.global_rank != 0:  # DDP workers: training is their only job
        sys.exit(0)
    max_steps = int(cfg.train.max_steps)
    steps = int(trainer.global_step)
    stopped_by = _stopped_by(trainer, steps, max_steps)
    record.update(steps=steps, max_steps=max_steps, stopped_by=stopped_by,
                  max_time_minutes=cfg.train.get("max_time_minutes"), epochs=int(trainer.current_epoch),
                  seconds=round(time.perf_counter() - start, 2), key=key,
                  resumed_from=str(cfg.train.resume_from) if cfg.train.resume_from else None)
    with atomic_dir(target) as tmp:
        module.export(str(tmp))
        write_text_atomic(tmp / TRAINING_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    (ctx.output_dir / f"{stage}_model.txt").write_text(str(target) + "\n")
    if stopped_by == "max_time":
        log.warning("%s: %s; saved to %s", stage, _record_note(record), target)
    else:
        log.info("%s: trained model (%d steps) saved to %s", stage, steps, target)
    return str(target)


def _stopped_by(trainer, steps: int, max_steps: int) -> str:
    """Why ``fit`` returned: ``max_steps`` reached, Lightning's ``Timer`` (``max_time``) ran out, or ``max_epochs``."""
    if 0 <= max_steps <= steps:
        return "max_steps"
    from lightning.pytorch.callbacks import Timer

    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            remaining = callback.time_remaining("train")
            if remaining is not None and remaining <= 0:
                return "max_time"
    return "max_epochs"


def _triples(t: DictConfig):
    from retrieval_lab.training.triples import IrDatasetsTriples

    return IrDatasetsTriples(t.triples, max_triples=t.max_triples, seed=t.seed)


def _base_record(cfg: DictConfig, ctx, stage: str, seed: int, loss: dict, run: Run | None, run_name: str) -> dict:
    return {
        "stage": stage, "name": str(cfg.name), "seed": seed, "loss": loss,
        "train": {k: v for k, v in _plain(cfg.train).items() if k != "resume_from"},
        "collection": None if cfg.train.get("triples") else ctx.collection.name,
        "rel_threshold": int(ctx.collection.rel_threshold),
        "negatives": None if run is None else {"from": run_name, "queries": len(run), "digest": run_digest(run)},
        "precision": str(ctx.hardware.precision),
    }


def train_reranker(cfg: DictConfig, ctx, backbone: str, load_model, run: Run | None, run_name: str = "-") -> str:
    """Fine-tune a reranker family (``load_model(path)``) on lists from ``run`` (the first stage's run on the
    training split: 1 positive + ``list_size - 1`` negatives from its top ``sample_depth``), or on (positive,
    negative) lists from ``train.triples``; returns the trained model's folder."""
    from retrieval_lab.training.data import RerankerCollator, RerankerListDataset
    from retrieval_lab.training.modules import RerankerModule

    t = cfg.train
    stage = "train_reranker"
    if t.get("triples"):  # ir_datasets training triples: no train split, no first-stage run
        run = None
    else:
        split = train_split(ctx, cfg, "reranker")
        if run is None:
            raise ValueError("reranker training needs a first stage: negatives are sampled from its run")
    key = model_key("reranker", backbone, cfg, ctx, run)
    if (done := _cached(key, ctx, stage)) is not None:
        return done
    seed = _seed(cfg, ctx, stage)
    loss_cfg = stage_loss_config(cfg, ctx)
    if t.get("triples"):
        dataset = _triples(t)
        source = f"{len(dataset)} triples of {t.triples} (lists of 2: positive, negative)"
    else:
        dataset = RerankerListDataset(ctx.collection, split, run, list_size=t.list_size,
                                      sample_depth=t.sample_depth, seed=t.seed)
        source = f"{len(dataset)} {split} queries (lists of {t.list_size} from {run_name}'s top {t.sample_depth})"
    model = load_model(backbone)  # after seeding: a new score head is initialised the same way every time
    loader = _loader(dataset, t.batch_size, seed, RerankerCollator(model.tokenize_pairs))
    module = RerankerModule(model, loss_from_config(loss_cfg), lr=t.lr, weight_decay=t.weight_decay,
                            warmup_steps=t.warmup_steps, warmup_ratio=t.get("warmup_ratio"), schedule=t.schedule,
                            micro_batch_size=t.get("micro_batch_size"))
    log.info("training %s on %s, loss=%s", cfg.name, source, loss_cfg["name"])
    record = _base_record(cfg, ctx, stage, seed, loss_cfg, run, run_name)
    return _fit_and_export(module, loader, cfg, ctx, stage, key, record)


def default_temperature(model) -> float:
    """The family's own ``default_temperature`` when it has one (ColBERT: 1, the paper trains on raw MaxSim sums);
    else 0.05 for cosine similarities (scores in [-1, 1] need sharpening for a softmax), 1 for dot products."""
    own = getattr(model, "default_temperature", None)
    if own is not None:
        return float(own)
    return 0.05 if getattr(model, "similarity", None) == "cosine" else 1.0


def train_retriever(cfg: DictConfig, ctx, backbone: str, load_model, run: Run | None, run_name: str = "-",
                    stage: str = "train_retriever") -> str:
    """Fine-tune a retriever family (``load_model(path)``) with in-batch negatives plus ``num_hard_negatives`` hard
    negatives from ``run`` (a first stage's run on the training split; ``None`` when there are none), or from
    ``train.triples``; returns the trained model's folder. ``stage`` names its folder, log lines and seed (a
    bi-encoder trained as a re-ranker is ``train_reranker``)."""
    from retrieval_lab.training.data import RetrieverCollator, RetrieverPairDataset
    from retrieval_lab.training.modules import RetrieverModule

    t = cfg.train
    if t.get("triples"):  # ir_datasets training triples: no train split; their negatives are the hard ones
        run = None
    else:
        split = train_split(ctx, cfg, "retriever")
        if t.num_hard_negatives > 0 and run is None:
            raise ValueError(f"{cfg.name}.train.num_hard_negatives={t.num_hard_negatives} needs a first stage's run")
        if t.num_hard_negatives == 0:
            run = None  # in-batch negatives only: no first stage involved
    key = model_key(stage.removeprefix("train_"), backbone, cfg, ctx, run)
    if (done := _cached(key, ctx, stage)) is not None:
        return done
    seed = _seed(cfg, ctx, stage)
    loss_cfg = stage_loss_config(cfg, ctx)
    if t.get("triples"):
        dataset = _triples(t).pairs(t.num_hard_negatives)
        source = f"{len(dataset)} triples of {t.triples} ({t.num_hard_negatives} hard negative from each)"
    else:
        dataset = RetrieverPairDataset(ctx.collection, split, run, num_hard_negatives=t.num_hard_negatives,
                                       hard_negative_depth=t.hard_negative_depth, seed=t.seed)
        source = (f"{len(dataset)} {split} queries ({t.num_hard_negatives} hard negatives from "
                  f"{run_name if run is not None else '-'}; in-batch negatives: {t.in_batch_negatives})")
    model = load_model(backbone)
    loader = _loader(dataset, t.batch_size, seed, RetrieverCollator(model.tokenize_queries, model.tokenize_docs))
    temperature = float(t.temperature) if t.get("temperature") is not None else default_temperature(model)
    module = RetrieverModule(model, loss_from_config(loss_cfg), lr=t.lr, weight_decay=t.weight_decay,
                             warmup_steps=t.warmup_steps, warmup_ratio=t.get("warmup_ratio"), schedule=t.schedule,
                             in_batch_negatives=t.in_batch_negatives, temperature=temperature)
    log.info("training %s on %s, loss=%s, temperature=%s", cfg.name, source, loss_cfg["name"], temperature)
    record = _base_record(cfg, ctx, stage, seed, loss_cfg, run, run_name)
    record["temperature"] = temperature
    return _fit_and_export(module, loader, cfg, ctx, stage, key, record)


def read_training_record(path: str | Path) -> dict[str, Any] | None:
    """The ``training.json`` of a model folder trained here, or None."""
    file = Path(path) / TRAINING_RECORD
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
