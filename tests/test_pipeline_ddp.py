"""`python run.py hardware=ddp ...`: Lightning's real DDP (2 processes over gloo on CPU) inside the pipeline."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_BERT


@pytest.mark.slow
def test_reranker_trains_with_ddp_through_run_py(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "run.py", "retriever=bm25", "baseline=none", "reranker=cross_encoder",
         f"reranker.model={TINY_BERT}", "reranker.train.max_steps=3", "reranker.train.list_size=4",
         "reranker.train.batch_size=2", "reranker.depth=10", "hardware=ddp", "hardware.accelerator=cpu",
         "hardware.threads=1", "logger=none", "show_progress=false",
         f"hydra.run.dir={out}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "world_size: 2" in log or "distributed_backend=gloo" in log  # two processes really ran
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"bm25", "bm25>>cross_encoder@10"}  # written once, by rank 0
    assert (out / "train_reranker" / "checkpoints" / "last.ckpt").is_file()
