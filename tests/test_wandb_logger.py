"""Loggers: mode resolution, and REAL offline W&B runs read back from their `.wandb` files (no mocks)."""

import json
import struct
from pathlib import Path

import pytest

from retrieval_lab.loggers import Logger, NoneLogger, WandbLogger, has_api_key, resolve_mode


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Offline W&B with every folder it writes (runs, staging, cache, settings) under tmp_path, and no key."""
    for var, sub in [("WANDB_DIR", "wandb-dir"), ("WANDB_DATA_DIR", "wandb-data"), ("WANDB_CACHE_DIR", "wandb-cache"),
                     ("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_ARTIFACT_DIR", "wandb-artifacts")]:
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for var in ("WANDB_API_KEY", "WANDB_DISABLED", "RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def read_wandb_records(path: Path) -> list:
    """The protobuf records of a `.wandb` file. wandb >= 0.2x has no Python reader any more (its Go core
    writes the file), so this follows the format: a 7-byte header (":W&B", magic 0xBEE1, version 0) then
    LevelDB-log chunks (crc32, length, type: 1 full / 2 first / 3 middle / 4 last) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0)
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too small for a chunk header: skip to the next block
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def items(records, kind: str) -> dict:
    """Merged key -> value of every `kind` record (config / summary / history), keys joined with '.'."""
    out = {}
    for r in records:
        if r.WhichOneof("record_type") != kind:
            continue
        body = getattr(r, kind)
        entries = body.item if kind == "history" else body.update
        for e in entries:
            key = e.key or ".".join(e.nested_key)
            out[key] = json.loads(e.value_json)
    return out


def test_resolve_mode(tmp_path):
    no_netrc = {"NETRC": str(tmp_path / "missing")}
    assert resolve_mode("auto", no_netrc) == "offline"
    assert resolve_mode("auto", {**no_netrc, "WANDB_API_KEY": "x" * 40}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert has_api_key({"NETRC": str(netrc)}) and resolve_mode("auto", {"NETRC": str(netrc)}) == "online"
    assert not has_api_key({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"})
    assert resolve_mode("auto", {"NETRC": str(netrc), "WANDB_MODE": "offline"}) == "offline"
    assert resolve_mode("auto", {**no_netrc, "WANDB_MODE": "dryrun"}) == "offline"
    assert resolve_mode("auto", {**no_netrc, "WANDB_DISABLED": "true"}) == "disabled"
    assert resolve_mode("online", no_netrc) == "online" and resolve_mode("disabled", no_netrc) == "disabled"
    with pytest.raises(ValueError, match="auto, online, offline, disabled"):
        resolve_mode("cloud")


def test_none_logger_does_nothing(tmp_path):
    with NoneLogger() as logger:
        assert isinstance(logger, Logger)
        logger.log_config({"a": 1})
        logger.log_metrics({"bm25/ndcg@10": 0.5}, step=1)
        logger.log_table("per_query", ["qid", "v"], [["1", 0.5]])
        logger.log_artifact("runs", "run", [tmp_path / "missing"])
        assert logger.get_lightning_logger() is False  # Trainer(logger=False): no training logs


def test_offline_run_holds_config_metrics_table_and_artifact(wandb_env, tmp_path, capsys, monkeypatch):
    import wandb

    out = tmp_path / "outputs" / "run1"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "bm25.trec").write_text("q1 Q0 d1 1 3.5 bm25\n")
    (out / "metrics.json").write_text('{"bm25": {"ndcg@10": 0.5058}}\n')

    monkeypatch.delenv("WANDB_MODE")  # auto, no key anywhere: offline
    logger = WandbLogger(mode="auto", dir=out, name="dl19/bm25", group="g1", tags=["test"])
    assert logger.mode == "offline" and logger.sync_dir.parent == out / "wandb"
    logger.log_config({"retriever": {"name": "bm25", "k1": 0.9}, "seed": 7})
    logger.log_metrics({"bm25/ndcg@10": 0.5058, "bm25/map": 0.2476})
    logger.log_table("per_query", ["stage", "metric", "qid", "value"],
                     [["bm25", "ndcg@10", "19335", 0.75], ["bm25", "ndcg@10", "47923", 0.25]])
    monkeypatch.setattr(wandb.Table, "MAX_ROWS", 2)  # a bigger table goes through an artifact, not cut
    logger.log_table("big", ["qid", "value"], [[str(i), i / 10] for i in range(5)])
    logger.log_artifact("runs", "run", [out / "runs", out / "metrics.json"])
    logger.finish()
    logger.finish()  # harmless

    sync_dir = logger.sync_dir
    assert sync_dir.is_dir() and sync_dir.name.startswith("offline-run-")
    err = capsys.readouterr().err
    assert "no W&B API key" in err and f"wandb sync {sync_dir}" in err

    records = read_wandb_records(next(sync_dir.glob("run-*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.display_name, run.run_group, list(run.tags)) == ("retrieval-lab", "dl19/bm25", "g1", ["test"])
    config = items(records, "config")
    assert config["retriever"] == {"name": "bm25", "k1": 0.9} and config["seed"] == 7
    summary = items(records, "summary")
    assert summary["bm25/ndcg@10"] == 0.5058 and summary["bm25/map"] == 0.2476
    assert items(records, "history")["bm25/ndcg@10"] == 0.5058
    table_files = list((sync_dir / "files" / "media" / "table").glob("per_query_*.table.json"))
    assert json.loads(table_files[0].read_text())["data"] == [["bm25", "ndcg@10", "19335", 0.75],
                                                              ["bm25", "ndcg@10", "47923", 0.25]]

    artifacts = {r.artifact.name: r.artifact for r in records if r.WhichOneof("record_type") == "artifact"}
    runs = artifacts["runs"]
    assert runs.type == "run"
    assert sorted(c.path for c in runs.manifest.contents) == ["metrics.json", "runs/bm25.trec"]
    big = next(a for name, a in artifacts.items() if name.endswith("-big"))
    assert big.type == "table" and [c.path for c in big.manifest.contents] == ["big.table.json"]


def test_lightning_logger_writes_to_the_same_run(wandb_env, tmp_path):
    from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

    logger = WandbLogger(mode="offline", dir=tmp_path / "out")
    lightning_logger = logger.get_lightning_logger()
    assert isinstance(lightning_logger, LightningWandbLogger)
    assert lightning_logger.experiment is logger.run and lightning_logger.version == logger.run.id
    assert logger.get_lightning_logger() is lightning_logger
    lightning_logger.log_metrics({"train/loss": 0.75}, step=3)
    logger.log_metrics({"bm25/ndcg@10": 0.5})
    logger.finish()

    records = read_wandb_records(next(logger.sync_dir.glob("run-*.wandb")))
    history = [items([r], "history") for r in records if r.WhichOneof("record_type") == "history"]
    assert {"train/loss": 0.75, "trainer/global_step": 3}.items() <= history[0].items()
    assert items(records, "summary")["bm25/ndcg@10"] == 0.5


def test_disabled_and_non_zero_ranks_write_nothing(wandb_env, tmp_path, monkeypatch):
    logger = WandbLogger(mode="disabled", dir=tmp_path / "off")
    logger.log_metrics({"x": 1.0})
    logger.finish()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP worker
    worker = WandbLogger(mode="offline", dir=tmp_path / "worker")
    assert worker.mode == "disabled" and worker.sync_dir is None
    worker.log_metrics({"x": 1.0})
    worker.finish()
    assert not (tmp_path / "off" / "wandb").exists() and not (tmp_path / "worker" / "wandb").exists()
