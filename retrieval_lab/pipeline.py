"""The stages of a run, in order: load -> [train] -> retrieve -> [train reranker] -> rerank -> evaluate -> log.

``run.py`` composes the config with Hydra and calls :func:`run_pipeline`; everything else lives here.
"""

from __future__ import annotations

import json
import logging
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from retrieval_lab.cache import write_text_atomic
from retrieval_lab.config import check_run_folder, run_suffix
from retrieval_lab.context import StageContext, default_cache_dir
from retrieval_lab.data import load_collection
from retrieval_lab.data.runs import write_trec_run
from retrieval_lab.hardware import resolve_precision
from retrieval_lab.evaluation import evaluate, metrics_table, paired_test, write_metrics
from retrieval_lab.evaluation.metrics import parse_metric
from retrieval_lab.retrievers import build_stage

log = logging.getLogger("retrieval_lab")
_NOISY = ("faiss.loader", "bm25s", "numba", "urllib3", "httpx")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def output_dir() -> Path:
    """The run's folder: Hydra's (``outputs/<date>/<HH-MM-SS>-<suffix>``, conf/config.yaml), or outside Hydra (tests,
    notebooks) a new folder of the same form. Either way a folder that already holds a finished run is refused."""
    try:
        path = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside Hydra
        path = Path("outputs") / f"{time.strftime('%Y-%m-%d/%H-%M-%S')}-{run_suffix()}"
    check_run_folder(path)  # ConfigError: metrics.json there marks another run's finished results
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_logger(cfg: DictConfig, out: Path):
    from retrieval_lab.loggers import NoneLogger, WandbLogger

    if cfg.logger.name == "none":
        return NoneLogger()
    if cfg.logger.name == "wandb":
        group = cfg.logger.group
        return WandbLogger(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=group,
            tags=list(cfg.logger.tags),
            mode=cfg.logger.mode,
            dir=str(out),
            name=_run_name(cfg),
        )
    raise ValueError(f"logger.name={cfg.logger.name!r}: expected 'wandb' or 'none'")


def _run_name(cfg: DictConfig) -> str:
    parts = [cfg.dataset.name, cfg.retriever.name]
    if cfg.reranker.name != "none":
        parts.append(f"{cfg.reranker.name}@{cfg.reranker.depth}-{cfg.loss.name}")
    return "/".join(parts)


def _same_stage(a: DictConfig, b: DictConfig) -> bool:
    return OmegaConf.to_container(a, resolve=True) == OmegaConf.to_container(b, resolve=True)


def run_pipeline(cfg: DictConfig) -> float:
    """Run every stage the config asks for; return the main metric of the last stage (for sweeps)."""
    for name in cfg.eval.metrics:  # a metric ranx cannot compute stops the run before any stage (and any training)
        try:
            parse_metric(str(name))
        except ValueError as error:
            raise ValueError(f"eval.metrics: {error}") from None
    # (run.py has checked that every stage's model can be loaded, before importing this module: hub.check_stage_models)
    _warn_unused_reranker_settings(cfg)
    out = output_dir()
    for note in resolve_precision(cfg.hardware):  # before config.yaml: it records what ran
        log.info(note)
    seed_everything(cfg.seed)
    if cfg.hardware.threads:
        torch.set_num_threads(int(cfg.hardware.threads))
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    _library_logs_to_file()
    logger = build_logger(cfg, out)
    try:
        value, report = _run(cfg, out, logger)
    finally:
        logger.finish()  # closes the W&B run (and prints where an offline run is) even when a stage fails
    print(report)  # the last thing a run prints: its result table and where its outputs are
    return value


def _warn_unused_reranker_settings(cfg: DictConfig) -> None:
    """``reranker=none`` carries ``model`` / ``train`` only so that a sweep over the reranker group composes with
    them (config.py: NoRerankerConfig); set there, they do nothing: say so."""
    reranker = cfg.get("reranker")
    if reranker is None or reranker.get("_target_"):
        return
    unused = [f"reranker.{k}" for k in ("model", "batch_size") if reranker.get(k) is not None]
    if reranker.get("train") is not None and reranker.train.get("enabled"):
        unused.append("reranker.train.enabled")
    if unused:
        log.warning("reranker=none: %s set but no second stage runs (choose one: reranker=cross_encoder, rankt5, ...)",
                    ", ".join(unused))


def _library_logs_to_file() -> None:
    """Libraries' chatter (bm25s sets its own logger to DEBUG when imported) goes to the run log, not the console."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for name in _NOISY:
        lib = logging.getLogger(name)
        lib.propagate = False
        for handler in list(lib.handlers):  # a sweep's earlier jobs: their log files are not this job's
            if isinstance(handler, logging.FileHandler) and handler not in files:
                lib.removeHandler(handler)
        for handler in files:
            if handler not in lib.handlers:
                lib.addHandler(handler)


def _run(cfg: DictConfig, out: Path, logger) -> tuple[float, str]:
    logger.log_config(OmegaConf.to_container(cfg, resolve=True))
    collection = load_collection(cfg.dataset)
    split = cfg.dataset.test_split
    if split not in collection.qrels:
        raise ValueError(
            f"dataset.test_split={split!r}: {collection.name} has judgments for {sorted(collection.qrels)}"
        )
    ctx = StageContext(cfg, collection, out, default_cache_dir(cfg.cache_dir), logger)
    log.info(
        "%s: %d documents, %d %s queries with judgments",
        collection.name, len(collection.corpus), len(collection.topics(split)), split,
    )

    runs: dict[str, dict[str, dict[str, float]]] = {}

    def timed(name: str, fn):
        start = time.perf_counter()
        result = fn()
        ctx.timings[name] = time.perf_counter() - start
        return result

    baseline_name = None
    stage_of: dict[str, object] = {}  # run name -> the stage whose index it searched
    if cfg.get("baseline") and cfg.baseline.get("_target_") and not _same_stage(cfg.baseline, cfg.retriever):
        baseline = build_stage(cfg.baseline, ctx)
        baseline_name = f"baseline:{baseline.name}"
        stage_of[baseline_name] = baseline
        timed(f"index:{baseline_name}", baseline.prepare)
        runs[baseline_name] = timed(baseline_name, lambda: baseline.retrieve(split))

    retriever = build_stage(cfg.retriever, ctx)
    first = retriever.name
    stage_of[first] = retriever
    timed(f"index:{first}", retriever.prepare)  # training (when configured), encoding, indexing
    runs[first] = timed(first, lambda: retriever.retrieve(split))
    last = first

    reranker = build_stage(cfg.reranker, ctx)
    if reranker is not None:
        depth = int(cfg.reranker.depth)
        last = f"{first}>>{reranker.name}@{depth}"
        stage_of[last] = reranker  # a re-ranker with a store (ColBERT) reports it like an index
        timed(f"train:{reranker.name}", lambda: reranker.prepare(retriever))
        runs[last] = timed(last, lambda: reranker.rerank(split, runs[first], depth))

    runs_dir = out / "runs"
    run_paths = []
    for name, run in runs.items():
        path = runs_dir / f"{_file_name(name)}.trec"
        write_trec_run(run, path, tag=_file_name(name))
        run_paths.append(path)

    threshold = cfg.eval.rel_threshold if cfg.eval.rel_threshold is not None else collection.rel_threshold
    qrels = collection.qrels[split]
    with warnings.catch_warnings(record=True) as caught:  # the same notice for every stage: say it once
        warnings.simplefilter("always")
        results = {
            name: evaluate(qrels, run, metrics=list(cfg.eval.metrics), rel_threshold=threshold)
            for name, run in runs.items()
        }
    for message in {str(w.message): w.message for w in caught}.values():
        warnings.warn(message, stacklevel=1)
    # one-off preparation per stage: a retriever's index (and training), a reranker's training
    prepare = {name: ctx.timings.get(f"index:{name}", 0.0) for name in runs}
    if reranker is not None:
        prepare[last] = ctx.timings[f"train:{reranker.name}"]
    efficiency = {name: _efficiency(ctx.timings.get(name, 0.0), prepare[name], run) for name, run in runs.items()}
    for name, stage in stage_of.items():  # index kind, cache hit or built, bytes per document
        efficiency[name].update(ctx.indexes.get(id(stage), {}))
    write_text_atomic(out / "efficiency.json", json.dumps(efficiency, indent=2))

    rows = {name: res.aggregate for name, res in results.items()}
    main_metric = str(cfg.eval.metrics[0])
    table = metrics_table(rows, list(cfg.eval.metrics), fmt="plain")
    significance = _significance(cfg, results, baseline_name or first, main_metric)
    write_text_atomic(
        out / "results.md", metrics_table(rows, list(cfg.eval.metrics), fmt="markdown") + "\n" + significance + "\n"
    )
    write_metrics(out, results)  # metrics.json last: its presence marks a finished run
    report = f"\n{collection.name} ({split}, {len(qrels)} queries)\n{table}\n{significance}\noutputs: {out}"

    logger.log_metrics({f"{name}/{m}": v for name, agg in rows.items() for m, v in agg.items()})
    logger.log_metrics({f"{name}/seconds": s for name, s in ctx.timings.items()})
    logger.log_table(
        "per_query",
        ["stage", "metric", "qid", "value"],
        [
            [name, metric, qid, value]
            for name, res in results.items()
            for metric, per_q in res.per_query.items()
            for qid, value in per_q.items()
        ],
    )
    logger.log_artifact("runs", "run", run_paths)
    return float(rows[last][main_metric]), report


def _file_name(stage: str) -> str:
    return stage.replace(">>", "__").replace(":", "-").replace("@", "_at")


def _efficiency(seconds: float, prepare_seconds: float, run: dict) -> dict:
    """Search (or re-ranking) time per query, and the one-off preparation (training, encoding, indexing)."""
    return {"seconds": round(seconds, 4), "ms_per_query": round(1000 * seconds / max(len(run), 1), 3),
            "prepare_seconds": round(prepare_seconds, 4)}


def _significance(cfg: DictConfig, results: dict, reference: str, metric: str) -> str:
    test = cfg.eval.significance
    if test == "none" or len(results) < 2:
        return ""
    lines = [f"paired {test}-test on {metric} against {reference}:"]
    for name, res in results.items():
        if name == reference:
            continue
        p = paired_test(results[reference].per_query[metric], res.per_query[metric], test=test)
        delta = res.aggregate[metric] - results[reference].aggregate[metric]
        lines.append(f"  {name}: {delta:+.4f} (p={p:.4g})")
    return "\n".join(lines)
