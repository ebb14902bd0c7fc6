"""Exact resume: a run killed mid-epoch and resumed from its checkpoint ends with the same weights as the
uninterrupted run (retrieval_lab.training.loader.train_loader + build_trainer's RngStateCheckpoint).

(a) in-process: tiny BERT cross-encoder, dropout on, killed by an exception right after the step-k checkpoint;
    plus the defects this fixes (a plain shuffled DataLoader, no RNG states) shown to change the weights;
(b) through run.py: the second run really SIGKILLs itself right after its step-k checkpoint is written, the third
    resumes it with reranker.train.resume_from; the exported models of the first and third are equal.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from retrieval_lab.data.collection import Collection, Corpus, Doc
from retrieval_lab.training import loader as loader_mod
from retrieval_lab.training.data import RerankerCollator, RerankerListDataset
from retrieval_lab.training.loader import EpochSampler, ResumableDataLoader, train_loader
from tests.conftest import ROOT, TINY_BERT

import lightning  # noqa: F401  (a hard dependency: imported, never skipped)
from lightning.pytorch.callbacks import Checkpoint

from retrieval_lab.losses import build_loss
from retrieval_lab.training.modules import RerankerModule  # noqa: E402
from retrieval_lab.training.trainer import RngStateCheckpoint, build_trainer, checkpoint_dir, fit  # noqa: E402

CPU = {"accelerator": "cpu", "devices": 1, "precision": "32-true"}


@pytest.fixture(autouse=True, scope="module")  # module scope: set before the module-scoped `uninterrupted` run
def _quiet_single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine; one thread is also the fastest for the tiny model
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------
# the loader on its own


class Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n
        self.epoch = 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def collate(items):
    return list(items)


def epoch_batches(dl, epoch):
    dl.set_epoch(epoch)
    return list(dl)


def test_order_is_a_function_of_seed_and_epoch_and_matches_distributed_sampler():
    ds = Items(11)
    a = train_loader(ds, batch_size=3, seed=5, collate_fn=collate)
    b = train_loader(ds, batch_size=3, seed=5, collate_fn=collate)
    torch.manual_seed(0)
    e2 = epoch_batches(a, 2)
    torch.manual_seed(1)  # the global RNG plays no part
    assert epoch_batches(b, 0) != e2 and epoch_batches(b, 2) == e2
    assert epoch_batches(a, 2) == e2  # repeatable
    assert len(a) == 4 and [len(x) for x in e2] == [3, 3, 3, 2]
    assert sorted(i for x in e2 for i in x) == list(range(11))
    # the DistributedSampler order (world size 1)
    ref = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=5)
    ref.set_epoch(2)
    assert [i for x in e2 for i in x] == list(ref)
    # no shuffle: in order; drop_last drops the incomplete batch
    plain = train_loader(ds, batch_size=3, seed=5, collate_fn=collate, shuffle=False, drop_last=True)
    assert list(plain) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and len(plain) == 3
    # set_epoch moves the dataset too
    assert ds.epoch == 2


def test_creating_and_iterating_never_draws_from_the_global_rng():
    dl = train_loader(Items(10), batch_size=4, seed=0, collate_fn=collate)
    state = torch.get_rng_state()
    for e in range(3):
        epoch_batches(dl, e)
    assert torch.equal(torch.get_rng_state(), state)


def test_state_dict_resumes_mid_epoch_at_the_next_unseen_batch():
    ds = Items(10)
    dl = train_loader(ds, batch_size=3, seed=1, collate_fn=collate)
    full = epoch_batches(dl, 1)
    dl.set_epoch(1)
    it = iter(dl)
    seen = [next(it), next(it)]
    state = dl.state_dict()
    assert state["epoch"] == 1 and state["batches"] == 2 and seen == full[:2]
    fresh = train_loader(Items(10), batch_size=3, seed=1, collate_fn=collate)
    fresh.load_state_dict(state)
    fresh.set_epoch(1)
    rest = list(fresh)
    assert rest == full[2:]
    assert fresh.state_dict()["batches"] == len(full) == 4
    assert list(fresh) == full  # the position applies to one iteration only
    # a position in another epoch (the checkpoint was taken at an epoch's end; Lightning moved on) is not used
    other = train_loader(Items(10), batch_size=3, seed=1, collate_fn=collate)
    other.load_state_dict({**state, "batches": 4})
    assert epoch_batches(other, 2) == epoch_batches(dl, 2)
    # lazily: the epoch and the position are read when the first batch is asked for (Lightning creates the
    # iterator in setup_data, then loads the state and sets the epoch)
    late = train_loader(Items(10), batch_size=3, seed=1, collate_fn=collate)
    it = iter(late)
    late.load_state_dict(state)
    late.set_epoch(1)
    assert list(it) == full[2:]


def test_distributed_shares(monkeypatch):
    """World size 3: each rank a strided share of the same (padded) permutation, the same number of batches,
    together every item; resuming on each rank continues its own share."""
    ds = Items(10)
    ref_order = EpochSampler(ds, seed=7).order(epoch=3)
    per_rank = {}
    for rank in range(3):
        monkeypatch.setattr(loader_mod, "_world", lambda r=rank: (3, r))
        dl = train_loader(ds, batch_size=2, seed=7, collate_fn=collate)
        assert len(dl) == 2  # ceil(10 / 3) = 4 items per rank
        per_rank[rank] = epoch_batches(dl, 3)
        ref = DistributedSampler(ds, num_replicas=3, rank=rank, shuffle=True, seed=7)
        ref.set_epoch(3)
        assert [i for x in per_rank[rank] for i in x] == list(ref)
        dl.set_epoch(3)
        it = iter(dl)
        next(it)
        again = train_loader(ds, batch_size=2, seed=7, collate_fn=collate)
        again.load_state_dict(dl.state_dict())
        assert epoch_batches(again, 3) == per_rank[rank][1:]
    flat = [i for r in range(3) for x in per_rank[r] for i in x]
    assert len(flat) == 12 and set(flat) == set(range(10))
    assert [per_rank[r][0][0] for r in range(3)] == ref_order[:3]


def test_lightning_keeps_the_sampler_and_sees_a_stateful_loader():
    from lightning.fabric.utilities.types import _Stateful

    dl = train_loader(Items(4), batch_size=2, seed=0, collate_fn=collate)
    assert isinstance(dl, ResumableDataLoader) and isinstance(dl, _Stateful)
    assert isinstance(dl.sampler, DistributedSampler)  # Lightning's DDP does not swap in its own sampler
    assert not isinstance(DataLoader(Items(4)), _Stateful)


def _child_reads_the_loader(rank, dl, expected):
    dl.set_epoch(1)
    assert list(dl) == expected


@pytest.mark.slow  # ~14 s: the child imports this module (lightning, transformers)
def test_the_loader_goes_to_ddp_spawn_processes():
    """ddp_spawn pickles the loader for its processes with torch.multiprocessing, through which a torch.Generator
    does not go (torch 2.13); the loader rebuilds its generator instead."""
    dl = train_loader(Items(7), batch_size=2, seed=4, collate_fn=collate)
    expected = epoch_batches(dl, 1)
    torch.multiprocessing.start_processes(_child_reads_the_loader, args=(dl, expected), nprocs=1,
                                          start_method="spawn")


# ---------------------------------------------------------------------------------------------------------------
# (a) training: killed mid-epoch and resumed == uninterrupted


def small_collection():
    """9 judged queries over 12 docs: 9 lists, batch_size 2 -> 5 batches per epoch (the last one of 1 list)."""
    docs = [Doc(f"d{i}", f"text about topic {i % 4} number {i}", title=f"t{i}" if i % 3 else "") for i in range(12)]
    queries = {f"q{i}": f"which topic {i % 4} doc" for i in range(9)}
    qrels = {f"q{i}": {f"d{i}": 1, f"d{(i + 1) % 12}": 0} for i in range(9)}
    run = {q: {f"d{j}": float((j * 7 + i) % 12) for j in range(12)} for i, q in enumerate(queries)}
    return Collection("small", Corpus(docs), queries, {"train": qrels}), run


BATCHES_PER_EPOCH = 5


class Killed(Exception):
    pass


class KillAfterCheckpoint(Checkpoint):
    """Stops the run right after the step-`step` checkpoint: a ``Checkpoint`` subclass, so Lightning runs it after
    the ``ModelCheckpoint`` (checkpoint callbacks keep their order, at the end of the list)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.step:
            assert (checkpoint_dir(trainer.default_root_dir) / f"step{self.step}.ckpt").is_file()
            raise Killed(self.step)


def weights_of(module):
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def run_training(tmp, *, max_steps=-1, max_epochs=None, kill_at=None, resume=None, plain=False, rng=True,
                 seed_global=1234, ckpt_every=2, val=False):
    from retrieval_lab.models import CrossEncoder

    torch.manual_seed(0)  # the same initial weights (the tiny BERT's score head is initialised randomly)
    model = CrossEncoder.from_pretrained(str(TINY_BERT), max_length=32)
    model.train()  # dropout on
    c, run = small_collection()
    ds = RerankerListDataset(c, "train", run, list_size=4, sample_depth=1000, seed=3)
    collate_fn = RerankerCollator(model.tokenize_pairs)
    if plain:
        dl = DataLoader(ds, batch_size=2, shuffle=True, collate_fn=collate_fn,
                        generator=torch.Generator().manual_seed(3))
    else:
        dl = train_loader(ds, batch_size=2, seed=3, collate_fn=collate_fn)
    module = RerankerModule(model, build_loss("softmax"), lr=2e-3, warmup_steps=2)
    callbacks = [KillAfterCheckpoint(kill_at)] if kill_at is not None else []
    train = {"max_steps": max_steps, "max_epochs": max_epochs, "checkpoint_every_n_steps": ckpt_every,
             "val_check_interval": 3 if val else None}
    trainer = build_trainer(CPU, train, tmp, callbacks=callbacks, enable_progress_bar=False,
                            num_sanity_val_steps=2 if val else 0)
    if not rng:
        trainer.callbacks[:] = [cb for cb in trainer.callbacks if not isinstance(cb, RngStateCheckpoint)]
    val_loader = None
    if val:
        from retrieval_lab.training.data import RerankEvalDataset

        val_loader = DataLoader(RerankEvalDataset(c, "train", run, depth=3), batch_size=4, collate_fn=collate_fn)
    # the global RNGs (dropout) start from the same state; a resumed run starts from another one
    torch.manual_seed(seed_global)
    random.seed(seed_global)
    np.random.seed(seed_global)
    if kill_at is not None:
        with pytest.raises(Killed):
            fit(module, dl, trainer, val_loader=val_loader)
        return checkpoint_dir(tmp) / f"step{kill_at}.ckpt"
    fit(module, dl, trainer, ckpt_path=resume, val_loader=val_loader)
    return weights_of(module), trainer


def killed_and_resumed(tmp_path, kill_at, **kw):
    ckpt = run_training(tmp_path / "killed", kill_at=kill_at, **kw)
    return run_training(tmp_path / "resumed", resume=ckpt, seed_global=999, **kw)


def assert_same(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different


def assert_differ(a, b):
    assert any(not torch.equal(a[k], b[k]) for k in a)


MAX_STEPS = BATCHES_PER_EPOCH + 4  # a few steps past one epoch


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    weights, trainer = run_training(tmp_path_factory.mktemp("uninterrupted"), max_steps=MAX_STEPS)
    assert trainer.global_step == MAX_STEPS and trainer.num_training_batches == BATCHES_PER_EPOCH
    return weights


# 2: in the middle of epoch 0; 5: the last batch of epoch 0; 6: the first of epoch 1
@pytest.mark.parametrize("kill_at", [2, 5, 6])
def test_killed_mid_epoch_and_resumed_gives_the_uninterrupted_weights(tmp_path, uninterrupted, kill_at):
    resumed, trainer = killed_and_resumed(tmp_path, kill_at, max_steps=MAX_STEPS, ckpt_every=kill_at)
    assert trainer.global_step == MAX_STEPS
    assert_same(uninterrupted, resumed)


def test_the_checkpoint_holds_the_loader_position_and_the_rng_states(tmp_path):
    ckpt = run_training(tmp_path, kill_at=2, max_steps=MAX_STEPS)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)  # what Lightning 2.6 reads (torch's default)
    (loader_state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["epoch"] == 0 and loader_state["batches"] == 2
    (rank0,) = saved["callbacks"]["RngStateCheckpoint"]["ranks"]
    assert isinstance(rank0["base_seed"], int) and set(rank0["rng"]) >= {"torch", "python", "numpy"}


# 3: a validation is due right after the checkpoint (the resumed run only "fast-forwards" it); 4: none is
@pytest.mark.parametrize("kill_at", [3, 4])
def test_resume_with_validation_and_max_epochs(tmp_path, kill_at):
    """Validation (its loader draws from the global RNG) every 3 steps, and max_epochs instead of max_steps:
    configure_optimizers' estimated_stepping_batches then builds the train loader before Lightning restores the
    loop state, so Lightning itself would not give the loader its position back (RngStateCheckpoint does)."""
    kw = dict(max_epochs=2, val=True, ckpt_every=kill_at)
    full, _ = run_training(tmp_path / "full", **kw)
    resumed, trainer = killed_and_resumed(tmp_path, kill_at, **kw)
    assert trainer.global_step == 2 * BATCHES_PER_EPOCH
    assert_same(full, resumed)


def test_without_the_fix_the_weights_differ(tmp_path, uninterrupted):
    """The defects: a plain shuffled DataLoader restarts the epoch (and its shuffle) after a mid-epoch resume,
    and without the RNG states dropout draws other masks."""
    plain_full, _ = run_training(tmp_path / "plain", max_steps=MAX_STEPS, plain=True)
    plain_resumed, _ = killed_and_resumed(tmp_path / "p", 2, max_steps=MAX_STEPS, plain=True)
    assert_differ(plain_full, plain_resumed)
    assert_differ(uninterrupted, plain_resumed)
    no_rng, _ = killed_and_resumed(tmp_path / "r", 2, max_steps=MAX_STEPS, rng=False)
    assert_differ(uninterrupted, no_rng)


def _ddp_fit(out_dir, max_steps, resume=None):
    """2 processes (Lightning "ddp" on CPU, gloo): each rank its strided share of the epoch's permutation, its own
    dropout. Runs in a script (``python tests/test_resume.py ...``): Lightning relaunches the script for rank 1."""
    from retrieval_lab.models import CrossEncoder

    warnings.simplefilter("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(str(TINY_BERT), max_length=32)
    model.train()
    c, run = small_collection()
    ds = RerankerListDataset(c, "train", run, list_size=4, sample_depth=1000, seed=3)
    dl = train_loader(ds, batch_size=2, seed=3, collate_fn=RerankerCollator(model.tokenize_pairs))
    # a constant lr: a run stopped at max_steps=k is then the same as a longer run killed after step k
    module = RerankerModule(model, build_loss("softmax"), lr=2e-3, warmup_steps=0, schedule="constant")
    trainer = build_trainer({"accelerator": "cpu", "devices": 2, "strategy": "ddp", "precision": "32-true"},
                            {"max_steps": max_steps, "checkpoint_every_n_steps": 1}, out_dir,
                            enable_progress_bar=False)
    torch.manual_seed(1234 if resume is None else 999)
    fit(module, dl, trainer, ckpt_path=resume)


def ddp_run(out_dir, max_steps, resume=None):
    args = [sys.executable, __file__, str(out_dir), str(max_steps), *([str(resume)] if resume else [])]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(checkpoint_dir(out_dir) / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_ddp_resume_mid_epoch_is_exact(tmp_path):
    # 9 lists over 2 ranks: 5 per rank (padded), 3 batches of 2 per rank and epoch; stopped after step 1 and
    # step 4 (the middle of epochs 0 and 1), 7 steps in all
    full = ddp_run(tmp_path / "full", 7)
    for k in (1, 4):
        first = ddp_run(tmp_path / f"first{k}", k)
        (position,) = first["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        assert position["world_size"] == 2 and position["batches"] == k % 3
        assert len(first["callbacks"]["RngStateCheckpoint"]["ranks"]) == 2
        resumed = ddp_run(tmp_path / f"resumed{k}", 7, resume=checkpoint_dir(tmp_path / f"first{k}") / "last.ckpt")
        assert resumed["global_step"] == full["global_step"] == 7
        a, b = full["state_dict"], resumed["state_dict"]
        assert [n for n in a if not torch.equal(a[n], b[n])] == [], k


# ---------------------------------------------------------------------------------------------------------------
# (b) through run.py, killed for real


KILLER = """
import os, signal, sys
sys.path.insert(0, os.getcwd())
from lightning.pytorch.callbacks import Checkpoint
import retrieval_lab.training.trainer as trainer_mod

STEP = {step}


class SigkillAfterCheckpoint(Checkpoint):  # runs after ModelCheckpoint (checkpoint callbacks keep their order)
    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == STEP:
            assert (trainer_mod.checkpoint_dir(trainer.default_root_dir) / f"step{{STEP}}.ckpt").is_file()
            os.kill(os.getpid(), signal.SIGKILL)


_build = trainer_mod.build_trainer


def build_trainer(*args, callbacks=(), **kwargs):
    return _build(*args, callbacks=[*callbacks, SigkillAfterCheckpoint()], **kwargs)


trainer_mod.build_trainer = build_trainer
sys.argv = ["run.py", *sys.argv[1:]]
import runpy

runpy.run_path("run.py", run_name="__main__")  # run.py as its own script: Hydra finds conf/ next to it
"""


def run_py(tmp_path, name, *args, wrapper=None):
    out = tmp_path / name
    cmd = [sys.executable, str(wrapper) if wrapper else "run.py", *args, f"hydra.run.dir={out}",
           f"cache_dir={tmp_path / ('cache_' + name)}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    return out, result


def exported_weights(out):
    from safetensors.torch import load_file

    model_dir = (out / "train_reranker_model.txt").read_text().strip()
    return load_file(os.path.join(model_dir, "model.safetensors"))


@pytest.mark.slow
def test_run_py_killed_with_sigkill_and_resumed_exports_the_uninterrupted_model(tmp_path):
    # the toy collection's train split: 24 queries with a positive -> 3 batches of 8 per epoch; killed after step 2
    # (the middle of epoch 0), resumed through the end of epoch 0 and into epoch 1
    step = 2
    args = ["logger=none", "dataset=toy", "retriever=bm25", "reranker=cross_encoder",
            f"reranker.model={TINY_BERT}", "reranker.train.enabled=true", "reranker.train.max_steps=5",
            "reranker.train.batch_size=8", "reranker.train.list_size=4", "reranker.train.warmup_steps=2",
            f"reranker.train.checkpoint_every_n_steps={step}", "reranker.depth=5"]
    start = time.perf_counter()
    full, r1 = run_py(tmp_path, "full", *args)
    assert r1.returncode == 0, r1.stderr[-3000:]
    wrapper = tmp_path / "killer.py"
    wrapper.write_text(KILLER.format(step=step))
    killed, r2 = run_py(tmp_path, "killed", *args, wrapper=wrapper)
    assert r2.returncode == -9, (r2.returncode, r2.stderr[-3000:])  # SIGKILL: nothing ran after the checkpoint
    ckpts = list(killed.rglob(f"step{step}.ckpt"))
    assert len(ckpts) == 1, list(killed.rglob("*.ckpt"))
    assert not (killed / "train_reranker_model.txt").exists()
    saved = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    (position,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # the stage uses train_loader
    assert (position["epoch"], position["batches"]) == (0, step) and position["dataset_len"] == 24
    resumed, r3 = run_py(tmp_path, "resumed", *args, f"reranker.train.resume_from={ckpts[0]}")
    assert r3.returncode == 0, r3.stderr[-3000:]
    a, b = exported_weights(full), exported_weights(resumed)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    print(f"3 run.py runs in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":  # python tests/test_resume.py OUT_DIR MAX_STEPS [CKPT] (test_ddp_resume_mid_epoch_is_exact)
    _ddp_fit(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
