"""The whole run through the real entry point (`python run.py ...`): files written, figures reproduced."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from retrieval_lab.evaluation.sweep import holm, summarize
from retrieval_lab.data import EMBEDDED_ROOT, load_beir, read_trec_run
from tests.conftest import ROOT, TINY_BERT, needs_data


def run_py(tmp_path, *args, timeout=900, name="run"):
    out = tmp_path / name  # a new folder per run: a run never writes into a finished run's folder
    env_args = [f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}"]
    result = subprocess.run(
        [sys.executable, "run.py", *args, *env_args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_bm25_on_the_embedded_collection_writes_every_output(tmp_path):
    out, stdout = run_py(tmp_path, "retriever=bm25", "logger=none")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"bm25"}
    assert set(metrics["bm25"]) == {"ndcg@10", "mrr@10", "map", "recall@100", "recall@1000"}
    assert 0.3 < metrics["bm25"]["ndcg@10"] < 0.95  # the toy collection is neither trivial nor broken
    assert f"{metrics['bm25']['ndcg@10']:.4f}" in stdout  # the printed table shows the same figure
    n = len(load_beir(EMBEDDED_ROOT / "toy").topics("test"))
    run = read_trec_run(out / "runs" / "bm25.trec")
    assert 0.9 * n <= len(run) <= n and all(0 < len(docs) <= 1000 for docs in run.values())
    per_query = (out / "per_query.tsv").read_text().splitlines()
    assert len(per_query) == 1 + 5 * n  # header + metric x query (queries BM25 finds nothing for score 0)
    assert "retriever" in (out / "config.yaml").read_text()
    assert json.loads((out / "efficiency.json").read_text())["bm25"]["index_cache"] == "built"
    # the index is cached: a second run loads it (it says so, and the cached folder is untouched) and ranks the same
    index_dir = next((tmp_path / "cache" / "bm25").iterdir())
    before = {p: p.stat().st_mtime_ns for p in index_dir.rglob("*")}
    out2, _ = run_py(tmp_path, "retriever=bm25", "logger=none", name="run2")
    assert json.loads((out2 / "efficiency.json").read_text())["bm25"]["index_cache"] == "hit"
    assert {p: p.stat().st_mtime_ns for p in index_dir.rglob("*")} == before
    assert json.loads((out2 / "metrics.json").read_text()) == metrics


@needs_data("trec-dl-2019-passage")
def test_trec_dl_2019_bundled_run_reproduces_published_ndcg(tmp_path):
    out, _ = run_py(tmp_path, "dataset=trec_dl_2019", "logger=none")
    metrics = json.loads((out / "metrics.json").read_text())
    assert round(metrics["run:bm25_top100"]["ndcg@10"], 4) == 0.5058


@needs_data("scifact")
def test_scifact_bm25_reaches_pyserini_level(tmp_path):
    out, _ = run_py(tmp_path, "dataset=scifact", "retriever=bm25", "logger=none")
    assert json.loads((out / "metrics.json").read_text())["bm25"]["ndcg@10"] >= 0.67


def test_sweep_runs_one_job_per_value(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "run.py", "-m", "retriever=bm25", "retriever.k1=0.6,0.9,1.2", "logger=none",
         f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 3
    values = [json.loads((j / "metrics.json").read_text())["bm25"]["ndcg@10"] for j in jobs]
    assert len(set(values)) > 1  # k1 changes the ranking
    table = summarize(sweep)
    for k1, value in zip(["0.6", "0.9", "1.2"], values):
        assert f"retriever.k1={k1}" in table and f"{value:.4f}" in table
    assert "Holm-corrected over 2 comparisons" in table


def test_holm_correction_by_hand():
    # sorted: 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_wandb_logger_writes_an_offline_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    out, stdout = run_py(tmp_path, "retriever=bm25", "logger=wandb")
    assert list((tmp_path / "wandb").rglob("*.wandb")) or list(out.rglob("*.wandb"))


def test_train_repbert_and_cross_encoder_end_to_end_with_tiny_models(tmp_path):
    out, stdout = run_py(
        tmp_path, f"retriever=repbert", f"retriever.model={TINY_BERT}", "retriever.train.max_steps=3",
        "retriever.train.batch_size=4", "loss=margin", "reranker=cross_encoder", f"reranker.model={TINY_BERT}",
        "reranker.train.max_steps=3", "reranker.train.list_size=4", "reranker.train.batch_size=2",
        "reranker.depth=20", "logger=none", "show_progress=false",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"baseline:bm25", "repbert", "repbert>>cross_encoder@20"}
    efficiency = json.loads((out / "efficiency.json").read_text())
    assert set(efficiency) == set(metrics)
    # training sits in the preparation (prepare_seconds), apart from search / re-ranking time (seconds)
    for stage in ("repbert", "repbert>>cross_encoder@20"):
        assert efficiency[stage]["prepare_seconds"] > 0 and efficiency[stage]["seconds"] > 0
    assert (out / "train_retriever" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "train_reranker" / "checkpoints" / "last.ckpt").is_file()
    log_text = (out / "run.log").read_text()  # the cross-encoder preset trains without attention dropout
    assert "train_reranker: attention dropout 0.0 in 1 attention modules" in log_text
    assert "train_retriever: attention dropout" not in log_text  # repbert keeps the model's own
    first = read_trec_run(out / "runs" / "repbert.trec")
    reranked = read_trec_run(out / "runs" / "repbert__cross_encoder_at20.trec")
    for qid, docs in first.items():  # re-ranking reorders the top 20 and keeps the rest below, in order
        top20 = sorted(docs, key=docs.get, reverse=True)[:20]
        new = sorted(reranked[qid], key=reranked[qid].get, reverse=True)
        assert set(new[:20]) == set(top20) and new[20:] == sorted(docs, key=docs.get, reverse=True)[20:]
    # the trained reranker folder loads as a cross-encoder, and refuses to load as a bi-encoder
    folder = (out / "train_reranker_model.txt").read_text().strip()
    result = subprocess.run(
        [sys.executable, "run.py", "retriever=biencoder", f"retriever.model={folder}", "logger=none",
         f"hydra.run.dir={tmp_path / 'mismatch'}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode != 0 and "cross_encoder" in result.stderr and "biencoder" in result.stderr


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(next(Path(folder).glob("*.safetensors"))))


def test_a_cached_first_stage_gives_the_same_second_stage(tmp_path):
    """Each training stage is seeded from (seed, stage) when it starts: the reranker trained after a retriever
    trained in the same process equals the one trained after the retriever came from the cache."""
    args = (f"retriever=repbert", f"retriever.model={TINY_BERT}", "retriever.train.max_steps=3",
            "retriever.train.batch_size=4", "reranker=cross_encoder", f"reranker.model={TINY_BERT}",
            "reranker.train.max_steps=3", "reranker.train.list_size=4", "reranker.train.batch_size=2",
            "reranker.depth=10", "logger=none", "show_progress=false")
    cold, _ = run_py(tmp_path / "cold", *args)
    retriever = Path((cold / "train_retriever_model.txt").read_text().strip())
    shutil.copytree(retriever, tmp_path / "warm" / "cache" / "models" / retriever.name)  # only the first stage
    warm, _ = run_py(tmp_path / "warm", *args)
    log_text = (warm / "run.log").read_text()
    assert "train_retriever: reusing the model" in log_text and "train_reranker: reusing" not in log_text
    a = _weights((cold / "train_reranker_model.txt").read_text().strip())
    b = _weights((warm / "train_reranker_model.txt").read_text().strip())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((cold / "metrics.json").read_text()) == json.loads((warm / "metrics.json").read_text())


@needs_data("trec-dl-2019-passage")
def test_training_without_a_train_split_says_so(tmp_path):
    result = subprocess.run(
        [sys.executable, "run.py", "dataset=trec_dl_2019", "reranker=cross_encoder", f"reranker.model={TINY_BERT}",
         "logger=none", f"hydra.run.dir={tmp_path / 'r'}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode != 0
    assert "no judged 'train' split" in result.stderr and "reranker.train.enabled=false" in result.stderr


def test_a_data_error_is_one_line_and_its_traceback_goes_to_the_run_log(tmp_path):
    env = {**os.environ, "RETRIEVAL_LAB_DATA": str(tmp_path / "nowhere"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "run.py", "dataset=cranfield", "dataset.ir_datasets_splits=null", "retriever=bm25", "logger=none",
         f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(tmp_path / "nowhere") in errors[0] and "run.log" in errors[0]
    assert "Traceback" in (out / "run.log").read_text()


def test_the_last_thing_a_run_prints_is_its_table_and_folder(tmp_path):
    out, stdout = run_py(tmp_path, "retriever=bm25", "logger=wandb")
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines[-1] == f"outputs: {out}"
    assert lines[-2].startswith("bm25 ") and lines[-4].startswith("system")
    assert "[bm25s]" not in stdout and "[bm25s]" in (out / "run.log").read_text()  # library chatter: log file only
