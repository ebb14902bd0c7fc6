"""Multi-process training on CPU (gloo): cross-device negatives give the gradients of one big batch, and a real
Lightning DDP run completes.

How these run here (2-core CPU machine, no GPU):

* the gradient test spawns 2 processes with ``torch.multiprocessing`` and a gloo process group directly (no
  Lightning), so the exact backward of ``RetrieverModule`` can be compared with one process;
* the Lightning test runs this file as a script in a subprocess: ``Trainer(strategy="ddp", devices=2)``
  relaunches the script it is started from for rank 1 (``sys.argv``), which would be pytest itself if it were
  started inside pytest. ``strategy="ddp_spawn"`` also works from inside pytest; it is tested too.

Both are marked slow (run with ``pytest -m slow tests/test_ddp.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # when run as a script
    sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402

TINY_BERT = ROOT / "tests" / "fixtures" / "models" / "tiny-bert"
B, H = 3, 1  # queries per process, hard negatives per query


def _collection():
    from retrieval_lab.data.collection import Collection, Corpus, Doc

    docs = [Doc(f"d{i}", f"document {i} words " + " ".join(["alpha", "beta", "gamma"][: i % 3 + 1])) for i in range(12)]
    queries = {f"q{i}": f"query {i} about beta" for i in range(6)}
    qrels = {
        "train": {
            "q0": {"d0": 1, "d4": 1},  # d4 is q4's positive, on the other rank: a cross-device positive for q0
            "q1": {"d1": 1},
            "q2": {"d2": 1},
            "q3": {"d3": 1, "d1": 1},  # d1 is q1's positive, on the other rank
            "q4": {"d4": 1},
            "q5": {"d5": 1},
        }
    }
    run = {q: {f"d{i}": float(12 - i) for i in range(12)} for q in queries}
    return Collection("ddp", Corpus(docs), queries, qrels), run


def _model(seed: int = 0, family: str = "biencoder"):
    from retrieval_lab.models import BiEncoder
    from retrieval_lab.models.colbert import ColBERT

    torch.manual_seed(seed)
    if family == "colbert":  # token vectors: documents of different lengths on the two ranks, padded in the gather
        model = ColBERT.from_pretrained(str(TINY_BERT), dim=16, query_max_length=8, doc_max_length=12)
    else:
        model = BiEncoder.from_pretrained(str(TINY_BERT))
    model.eval()  # no dropout: both set-ups must compute the same function
    return model


def _items():
    from retrieval_lab.training.data import RetrieverPairDataset

    c, run = _collection()
    ds = RetrieverPairDataset(c, "train", run, num_hard_negatives=H, hard_negative_depth=8, seed=0,
                              positives="all")
    by_q = {}
    for i, (q, d) in enumerate(ds.items):
        if d == f"d{q[1:]}":
            by_q[q] = ds[i]
    return [by_q[f"q{i}"] for i in range(2 * B)]  # rank 0: q0..q2, rank 1: q3..q5


def _grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _module(model):
    from retrieval_lab.losses import build_loss
    from retrieval_lab.training.modules import RetrieverModule

    return RetrieverModule(model, build_loss("softmax"), cross_device_negatives=True)


def _worker(rank: int, world: int, port: int, out: str, family: str = "biencoder") -> None:
    import torch.distributed as dist

    from retrieval_lab.training.data import RetrieverCollator
    from retrieval_lab.training.modules import gather_with_grad

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        # 1. gather_with_grad with uneven rows: rank r has r + 2 rows
        x = torch.full((rank + 2, 3), float(rank + 1), requires_grad=True)
        gathered, gathered_mask = gather_with_grad(x)
        weights = torch.arange(gathered.numel(), dtype=torch.float).view_as(gathered) * (rank + 1)
        (gathered * weights).sum().backward()
        gather_check = {"rows": gathered.shape[0], "values": gathered[:, 0].tolist(), "grad": x.grad.tolist(),
                        "mask": gathered_mask.tolist()}

        # 2. the module's loss on this rank's half, DDP-style gradient averaging
        model = _model(family=family)
        module = _module(model)
        items = _items()[rank * B : (rank + 1) * B]
        batch = RetrieverCollator(model.tokenize_queries, model.tokenize_docs)(items)
        loss, scores, labels, mask = module.loss_scores_labels(batch)
        loss.backward()
        grads = _grads(module)
        for g in grads.values():
            dist.all_reduce(g)
            g /= world
        losses = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(losses, loss.detach())
        if rank == 0:
            torch.save({"grads": grads, "loss": torch.stack(losses).mean(), "labels": labels,
                        "scores_shape": tuple(scores.shape), "gather": gather_check}, out)
        else:
            torch.save({"gather": gather_check, "labels": labels}, out + ".rank1")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["biencoder", "colbert"])
def test_two_processes_with_cross_device_negatives_give_one_big_batch_gradients(tmp_path, family):
    import torch.multiprocessing as mp

    from retrieval_lab.training.data import RetrieverCollator

    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, free_port(), out, family), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    rank1 = torch.load(out + ".rank1", weights_only=True)

    # gather_with_grad: rows of both ranks in rank order (2 + 3), and each rank's rows get the gradient both
    # ranks' losses send them (weights * 1 from rank 0 + weights * 2 from rank 1 = 3 * weights)
    for r, g in ((0, two["gather"]), (1, rank1["gather"])):
        assert g["rows"] == 5 and g["values"] == [1.0, 1.0, 2.0, 2.0, 2.0]
        assert g["mask"] == [True] * 5  # single vectors: one mask entry per row, no padding inside a row
        start = 0 if r == 0 else 2
        expected = 3 * torch.arange(15, dtype=torch.float).view(5, 3)[start : start + r + 2]
        assert torch.equal(torch.tensor(g["grad"]), expected)

    # one process, batch 2B
    torch.set_num_threads(1)
    model = _model(family=family)
    module = _module(model)
    batch = RetrieverCollator(model.tokenize_queries, model.tokenize_docs)(_items())
    loss, scores, labels, _ = module.loss_scores_labels(batch)
    loss.backward()
    one = _grads(module)

    # each process scored its B queries against all 2 * B * (1 + H) docs, cross-device positives marked
    assert two["scores_shape"] == (B, 2 * B * (1 + H)) and scores.shape == (2 * B, 2 * B * (1 + H))
    # gathered columns: rank 0 [d0 d1 d2 n0 n1 n2], rank 1 [d3 d4 d5 n3 n4 n5]: q0 (rank 0) has its positive d4
    # on rank 1 (column 7), q3 (rank 1) has d1 on rank 0 (column 1)
    assert two["labels"][0, 0] == 1 and two["labels"][0, 7] == 1
    assert rank1["labels"][0, 6] == 1 and rank1["labels"][0, 1] == 1
    torch.testing.assert_close(two["loss"], loss.detach(), atol=1e-6, rtol=1e-6)
    assert one.keys() == two["grads"].keys() and len(one) > 10
    worst = max(float((one[k] - two["grads"][k]).abs().max()) for k in one)
    # measured: worst absolute difference 5.6e-6 with gradients up to 2.0 (float32 summation order); dropping
    # the other rank's gradient paths (gather without grad for the remote docs) gives differences of ~10
    for k in one:
        torch.testing.assert_close(two["grads"][k], one[k], atol=1e-5, rtol=1e-5, msg=lambda m: f"{k}: {m}")
    assert max(float(g.abs().max()) for g in one.values()) > 1e-3  # the gradients are not trivially zero


# ---------------------------------------------------------------------------------------------------------------
# a real Lightning DDP run


def _lightning_run(out_dir: str, strategy: str) -> dict:
    import logging
    import warnings

    from retrieval_lab.training.data import RetrieverCollator, RetrieverPairDataset
    from retrieval_lab.training.trainer import build_trainer, fit

    warnings.simplefilter("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    c, run = _collection()
    model = _model()
    model.train()
    ds = RetrieverPairDataset(c, "train", run, num_hard_negatives=H, hard_negative_depth=8, positives="all")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, collate_fn=RetrieverCollator(model.tokenize_queries, model.tokenize_docs)
    )
    trainer = build_trainer(
        {"accelerator": "cpu", "devices": 2, "strategy": strategy, "precision": "32-true"},
        {"max_steps": 3, "log_every_n_steps": 1},
        out_dir,
        enable_progress_bar=False,
    )
    fit(_module(model), loader, trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    result = {"global_step": trainer.global_step, "world_size": trainer.world_size, "metrics": metrics}
    if trainer.global_rank == 0:
        Path(out_dir, f"result-{strategy}.json").write_text(json.dumps(result))
    return result


@pytest.mark.slow
def test_lightning_ddp_run_completes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path), "ddp"], env=env, cwd=str(ROOT), capture_output=True,
        text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result-ddp.json").read_text())
    assert result["world_size"] == 2 and result["global_step"] == 3
    # each query saw both processes' docs: 2 ranks x 2 queries x (1 + H) docs
    assert result["metrics"]["train/candidates_per_query"] == 2 * 2 * (1 + H)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_lightning_ddp_spawn_from_pytest(tmp_path):
    _lightning_run(str(tmp_path), "ddp_spawn")
    result = json.loads((tmp_path / "result-ddp_spawn.json").read_text())
    # with ddp_spawn the main process's trainer gets the metrics back but not the loop state (global_step stays
    # 0 there): the step count is read from the checkpoint rank 0 wrote
    assert result["world_size"] == 2
    assert result["metrics"]["train/candidates_per_query"] == 2 * 2 * (1 + H)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3


if __name__ == "__main__":  # python tests/test_ddp.py OUT_DIR STRATEGY (used by test_lightning_ddp_run_completes)
    _lightning_run(sys.argv[1], sys.argv[2])
