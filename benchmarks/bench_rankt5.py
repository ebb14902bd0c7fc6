"""RankT5 scoring and training throughput: RankT5 / MonoT5 (ours) vs the plain Hugging Face T5 path.

One process, one T5, the same tokenised inputs on both sides. The model: a randomly initialised
``T5ForConditionalGeneration`` built from ``transformers.T5Config`` with t5-small's configuration (d_model 512,
d_ff 2048, 6 + 6 layers, 8 heads, d_kv 64, vocab 32128, relu, tied embeddings; nothing downloaded; ``config=
"t5-base"``: t5-base's, ``"tiny"``: the committed ``tests/fixtures/models/tiny-t5`` itself, for a smoke run), seeded,
and the tokenizer of ``tests/fixtures/models/tiny-t5`` (its ids are < 867, inside every vocabulary here). Random
weights cost what trained ones cost: throughput does not depend on the values.

Texts: SciFact (``$RETRIEVAL_LAB_DATA`` or ``/work/shared/datasets``/scifact, BEIR layout): train queries with a
judged positive, documents ``title + " " + text``; when it cannot be read, the embedded toy collection
(``retrieval_lab/data/embedded/toy``). Negatives are random corpus documents not judged relevant: throughput cares
only how long they are (most SciFact pairs fill the 128 tokens; see the notes).

1. Scoring (inference mode, eval mode): ``n_pairs`` (query, doc) pairs tokenised once per family by
   ``model.tokenize_pairs`` (max length 128) into batches of ``batch_size``; every system scores the same batches:

   - ``RankT5-EncDec (ours)``: ``RankT5(model, tokenizer, variant="encdec").forward``: the encoder, ONE decoder step
     from the start token, the hidden state (scaled by d_model ** -0.5) times one row of the output embedding
     (``<extra_id_10>``): no full-vocabulary projection;
   - ``HF T5, full vocab``: ``model(input_ids=..., attention_mask=..., decoder_input_ids=<start>).logits[:, 0,
     id]``: the same encoder and decoder step, then the whole ``[n, 32128]`` LM head (HF's defaults, ``use_cache``
     included);
   - ``MonoT5 (ours)``: ``MonoT5.inference_scores`` (``... Relevant:`` inputs; the two logits (false, true) only, log
     P(true) over them) vs ``HF T5, full vocab, monoT5``: the full forward, then ``log_softmax`` over the logits
     of (false, true) at step 0 (on the monoT5-tokenised batches);
   - ``RankT5-Enc (ours)``: ``variant="enc"`` (the encoder + a dense head on the first token), for reference: there is
     no HF counterpart (the HF path would be the same encoder call), so no ratio.

   Agreement: every HF score against ours on every batch (the warm-up pass); max |diff| and max |diff| / max |HF
   score| are recorded; fp32 fails unless the relative one is < 1e-4. Under bf16 the HF path rounds its LM head to
   bf16 while ours computes the score in fp32 (by design), so bf16 differences are reported, not asserted.

   Timing: ``warmup`` untimed passes, then ``repeats`` passes over all batches; within a pass each batch is run by
   every system in turn, the order rotating from batch to batch, so that the systems share the machine's load.
   pairs/s = n_pairs / median pass time. ``ratio`` = median over passes of (HF s / ours s) (> 1: ours faster).

2. Training (train mode, dropout on): ``lists`` lists x ``list_size`` docs (1 positive + random negatives, all lists
   full), max length 128, one AdamW step per batch (lr 1e-4, weight decay 0.01, the same for both), no clipping, no
   schedule, from the same weights (two deep copies of the one model):

   - ``ours``: ``RerankerModule(RankT5(copy, tokenizer, variant="encdec"), build_loss("softmax"))``;
     ``module.compute_loss(batch)`` on batches made by ``RerankerCollator(model.tokenize_pairs)`` (what the training
     stage feeds it), ``backward``, then the optimizer of ``module.configure_optimizers()`` (AdamW, no weight decay
     on the < 2-dim parameters: T5's layer-norm weights);
   - ``HF T5 + F.cross_entropy``: the other copy, ``model(input_ids, attention_mask, decoder_input_ids=<start>)
     .logits[:, 0, <extra_id_10>].view(B, L)``, ``torch.nn.functional.cross_entropy`` against the positive's index,
     ``backward``, ``torch.optim.AdamW(model.parameters(), lr, weight_decay)``: the plain way.

   Same tokenised tensors on both sides (tokenising is outside the timing; the collator's cost is a note). Before
   training, with dropout off and the weights still equal, both losses on the first batch are compared (fp32
   asserted < 1e-4 relative). Steps run alternately (ours, HF; then HF, ours; ...); ``train_warmup`` untimed steps
   (the first allocates AdamW's state), then ``train_steps`` timed; a step = forward + loss + backward + optimiser
   step. lists/s and pairs/s from the median step; ``ratio`` = median over steps of (HF s / ours s). CPU s: the
   process's CPU seconds for the step (all torch threads).

Precision: fp32, plus bf16 autocast (``torch.autocast("cpu", dtype=torch.bfloat16)`` around both sides) only when
the CPU runs bf16 natively (``retrieval_lab.hardware.native_bf16``; ``bf16="on"|"off"`` to force). Threads: torch
threads fixed to 2 (``threads=`` / ``--threads``, or ``$RETRIEVAL_LAB_BENCH_THREADS``).

    .venv/bin/python -m benchmarks.run rankt5              # t5-small config, writes results/rankt5.{json,md}
    .venv/bin/python -m benchmarks.run rankt5 --quick --out /tmp/x   # smoke: tiny T5, a few pairs and steps
    .venv/bin/python -m benchmarks.bench_rankt5 [--quick|--smoke] [--config tiny|t5-small|t5-base] [--pairs N]
        [--batch-size B] [--lists B] [--list-size L] [--max-length T] [--repeats R] [--train-steps S]
        [--threads T] [--bf16 auto|on|off] [--no-train] [--no-score] [--out DIR]

The script writes ``OUT/rankt5.json`` and ``.md`` (default ``benchmarks/results``) only for a full run (not
``--quick``, not ``--config tiny``) unless ``--out`` is given; the table is the last thing it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import random
import statistics
import sys
import time
from pathlib import Path

PACKAGES = ("torch", "transformers", "tokenizers", "lightning")
DEFAULT_DATA = "/work/shared/datasets"
THREADS_ENV = "RETRIEVAL_LAB_BENCH_THREADS"
ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny-t5"
TOY = ROOT / "retrieval_lab" / "data" / "embedded" / "toy"

#: T5Config keyword arguments (the rest: T5Config's defaults, which are t5-small's / t5-base's: relu, 32 buckets,
#: dropout 0.1, eps 1e-6, pad 0, eos 1, decoder start 0, tied embeddings)
CONFIGS = {
    "t5-small": dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6,
                     num_heads=8, feed_forward_proj="relu", tie_word_embeddings=True),
    "t5-base": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12,
                    num_heads=12, feed_forward_proj="relu", tie_word_embeddings=True),
}
N_PAIRS, BATCH, MAX_LENGTH, REPEATS, WARMUP = 128, 32, 128, 3, 1
LISTS, LIST_SIZE, TRAIN_WARMUP, TRAIN_STEPS = 2, 36, 1, 3
LR, WEIGHT_DECAY = 1e-4, 0.01
THREADS = 2
TOLERANCE = 1e-4  # relative: max |ours - HF| / max |HF|
QUICK = dict(config="tiny", n_pairs=16, batch_size=8, repeats=2, lists=2, list_size=8, train_steps=2)

COLUMNS = [
    ("part", "part", None),
    ("system", "system", None),
    ("precision", "precision", None),
    ("pairs_per_s", "pairs/s", ".2f"),
    ("lists_per_s", "lists/s", ".3f"),
    ("seconds", "s (median pass / step)", ".3f"),
    ("cpu_seconds", "CPU s (median)", ".3f"),
    ("vs", "compared with", None),
    ("ratio", "speed ratio (median of paired HF s / ours s)", ".3f"),
    ("ratio_medians", "speed ratio (medians)", ".3f"),
    ("max_abs_diff", "max |diff| vs ours", ".2e"),
    ("rel_diff", "max |diff| / max |HF|", ".2e"),
    ("loss_first", "loss step 1", ".4f"),
    ("loss_last", "loss last step", ".4f"),
]


# -- model and data ------------------------------------------------------------------------------------------------

def build_model(config: str, seed: int):
    """``(T5ForConditionalGeneration in eval mode, tokenizer, description)``."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(str(TINY))
    if config == "tiny":
        model = T5ForConditionalGeneration.from_pretrained(str(TINY), dtype=torch.float32)
    elif config in CONFIGS:
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(T5Config(**CONFIGS[config], decoder_start_token_id=0, pad_token_id=0,
                                                    eos_token_id=1))
    else:
        raise ValueError(f"config must be one of tiny, {', '.join(CONFIGS)}; got {config!r}")
    model = model.float().eval()
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    origin = "committed tiny-t5" if config == "tiny" else f"random init, seed {seed}"
    what = (f"{config}: d_model {c.d_model}, d_ff {c.d_ff}, {c.num_layers}+{c.num_decoder_layers} layers, "
            f"{c.num_heads} heads, d_kv {c.d_kv}, vocab {c.vocab_size}, {c.feed_forward_proj}, "
            f"{n_params / 1e6:.1f} M parameters ({origin})"
            f"; tokenizer of tiny-t5 ({len(tokenizer)} ids)")
    assert len(tokenizer) <= c.vocab_size, "the tokenizer's ids must fit the model's vocabulary"
    return model, tokenizer, what


def load_texts(data_dir):
    """``(collection, split, source)``: SciFact when readable, else the embedded toy collection."""
    from retrieval_lab.data import load_beir

    root = Path(data_dir or os.environ.get("RETRIEVAL_LAB_DATA") or DEFAULT_DATA) / "scifact"
    try:
        collection, source = load_beir(root, splits=["train"]), f"SciFact ({root}), train queries"
    except Exception as error:  # noqa: BLE001 - the fallback says why
        collection = load_beir(TOY)
        source = f"embedded toy collection ({TOY.relative_to(ROOT)}; SciFact not read: {type(error).__name__})"
    split = "train" if "train" in collection.qrels else sorted(collection.qrels)[0]
    return collection, split, source


def make_lists(collection, split: str, n_lists: int, list_size: int, seed: int):
    """``n_lists`` :class:`ListItem` s: a judged positive + ``list_size - 1`` random non-relevant corpus docs."""
    from retrieval_lab.training.data import ListItem, judged

    positives, excluded = judged(collection, split)
    qids = sorted(q for q, docs in positives.items() if docs)
    ids = collection.corpus.ids()
    rng = random.Random(seed)
    order = rng.sample(qids, len(qids))  # a spread of queries, fixed; reused round-robin if too few
    items = []
    for k in range(n_lists):
        qid = order[k % len(order)]
        pos = rng.choice(positives[qid])
        negatives = []
        while len(negatives) < list_size - 1:
            d = ids[rng.randrange(len(ids))]
            if d not in excluded[qid] and d != pos and d not in negatives:
                negatives.append(d)
        doc_ids = [pos, *negatives]
        items.append(ListItem(collection.queries[qid], [collection.corpus[d].contents() for d in doc_ids],
                              [1.0] + [0.0] * (list_size - 1), qid, doc_ids))
    return items


def make_pairs(collection, split: str, n_pairs: int, seed: int) -> tuple[list[str], list[str]]:
    """``n_pairs`` (query, doc) texts: lists of 8 (positive + 7 random), flattened."""
    items = make_lists(collection, split, -(-n_pairs // 8), 8, seed + 1)
    pairs = [(it.query, d) for it in items for d in it.docs][:n_pairs]
    return [q for q, _ in pairs], [d for _, d in pairs]


# -- scoring -------------------------------------------------------------------------------------------------------

def _autocast(precision: str):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def score_systems(model, tokenizer, max_length: int):
    """``{name: (batch kind, function of a tokenised batch -> scores [n], the name of its reference or None)}``."""
    import torch

    from retrieval_lab.models.rankt5 import MonoT5, RankT5

    rankt5 = RankT5(model, tokenizer, variant="encdec", max_length=max_length).eval()
    enc = RankT5(model, tokenizer, variant="enc", max_length=max_length).eval()
    mono = MonoT5(model, tokenizer, max_length=max_length).eval()
    start = int(model.config.decoder_start_token_id)
    token = rankt5.score_token_id
    two = [mono.false_id, mono.true_id]

    def hf_logits(batch):
        ids = batch["input_ids"]
        return model(input_ids=ids, attention_mask=batch["attention_mask"],
                     decoder_input_ids=torch.full((ids.shape[0], 1), start, dtype=torch.long)).logits[:, 0]

    def hf_rankt5(batch):
        return hf_logits(batch)[:, token]

    def hf_mono(batch):
        return torch.log_softmax(hf_logits(batch)[:, two].float(), dim=-1)[:, 1]

    systems = {
        "RankT5-EncDec (ours)": ("rankt5", rankt5.forward, None),
        "HF T5, full vocab": ("rankt5", hf_rankt5, "RankT5-EncDec (ours)"),
        "MonoT5 (ours)": ("mono", mono.inference_scores, None),
        "HF T5, full vocab, monoT5": ("mono", hf_mono, "MonoT5 (ours)"),
        "RankT5-Enc (ours)": ("rankt5", enc.forward, None),
    }
    tokenize = {"rankt5": rankt5.tokenize_pairs, "mono": mono.tokenize_pairs}
    return systems, tokenize


def bench_scoring(model, tokenizer, queries, docs, batch_size: int, max_length: int, precision: str,
                  warmup: int, repeats: int) -> tuple[list[dict], dict]:
    import torch

    systems, tokenize = score_systems(model, tokenizer, max_length)
    batches = {kind: [fn(queries[i:i + batch_size], docs[i:i + batch_size]) for i in range(0, len(queries),
                                                                                          batch_size)]
               for kind, fn in tokenize.items()}
    names = list(systems)
    n = len(queries)
    with torch.inference_mode(), _autocast(precision):
        outputs = {}
        for w in range(max(warmup, 1)):  # the first pass is the agreement check
            for name, (kind, fn, _) in systems.items():
                got = torch.cat([fn(b).float() for b in batches[kind]])
                outputs.setdefault(name, got)
        times = {name: [] for name in names}
        cpu = {name: [] for name in names}
        for r in range(repeats):
            t = dict.fromkeys(names, 0.0)
            c = dict.fromkeys(names, 0.0)
            for bi in range(len(batches["rankt5"])):
                k = (r * len(batches["rankt5"]) + bi) % len(names)
                for name in names[k:] + names[:k]:
                    kind, fn, _ = systems[name]
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn(batches[kind][bi])
                    t[name] += time.perf_counter() - t0
                    c[name] += time.process_time() - c0
            for name in names:
                times[name].append(t[name])
                cpu[name].append(c[name])
    rows = []
    for name in names:
        kind, _, ref = systems[name]
        med = statistics.median(times[name])
        row = {"part": "scoring", "system": name, "precision": precision, "pairs_per_s": n / med, "seconds": med,
               "cpu_seconds": statistics.median(cpu[name]), "seconds_all": [round(x, 4) for x in times[name]],
               "pairs": n, "batch_size": batch_size, "inputs": kind}
        if ref is not None:
            ratios = [a / b for a, b in zip(times[name], times[ref])]
            diff = float((outputs[name] - outputs[ref]).abs().max())
            scale = float(outputs[name].abs().max())
            row.update(vs=ref, ratio=statistics.median(ratios), ratio_medians=med / statistics.median(times[ref]),
                       pass_ratios=[round(x, 3) for x in ratios], max_abs_diff=diff,
                       rel_diff=diff / max(scale, 1e-12))
            if precision == "fp32":
                assert row["rel_diff"] < TOLERANCE, f"{name} differs from {ref}: {diff} (relative {row['rel_diff']})"
        rows.append(row)
    widths = sorted({int(b["input_ids"].shape[1]) for bs in batches.values() for b in bs})
    lengths = [int(x) for b in batches["rankt5"] for x in b["attention_mask"].sum(1)]
    notes = {"tokens per pair (RankT5 inputs)": f"mean {statistics.mean(lengths):.0f}, "
                                                f"{sum(x >= max_length for x in lengths)}/{len(lengths)} at "
                                                f"{max_length}; batch widths {widths}"}
    return rows, notes


# -- training ------------------------------------------------------------------------------------------------------

def bench_training(model, tokenizer, items, lists: int, max_length: int, precision: str, warmup: int,
                   steps: int) -> tuple[list[dict], dict]:
    import torch
    import torch.nn.functional as F

    from retrieval_lab.losses import build_loss
    from retrieval_lab.models.rankt5 import RankT5
    from retrieval_lab.training.data import RerankerCollator
    from retrieval_lab.training.modules import RerankerModule

    ours_model = RankT5(copy.deepcopy(model), tokenizer, variant="encdec", max_length=max_length)
    module = RerankerModule(ours_model, build_loss("softmax"), lr=LR, weight_decay=WEIGHT_DECAY, schedule="constant")
    ours_opt = module.configure_optimizers()["optimizer"]
    hf = copy.deepcopy(model)
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    start, token = int(model.config.decoder_start_token_id), ours_model.score_token_id

    collate = RerankerCollator(ours_model.tokenize_pairs)
    total = warmup + steps
    t0 = time.perf_counter()
    batches = [collate(items[k * lists:(k + 1) * lists]) for k in range(total)]
    collate_s = (time.perf_counter() - t0) / total
    assert all(bool(b["mask"].all()) for b in batches), "every list must be full"

    def ours_loss(batch):
        return module.compute_loss(batch)[0]

    def hf_loss(batch):
        p = batch["pairs"]
        n = p["input_ids"].shape[0]
        logits = hf(input_ids=p["input_ids"], attention_mask=p["attention_mask"],
                    decoder_input_ids=torch.full((n, 1), start, dtype=torch.long)).logits
        scores = logits[:, 0, token].view(batch["mask"].shape)
        return F.cross_entropy(scores.float(), torch.zeros(scores.shape[0], dtype=torch.long))

    # same weights, dropout off: the two losses must agree before any step
    ours_model.eval(), hf.eval()
    with torch.no_grad(), _autocast(precision):
        check = (float(ours_loss(batches[0])), float(hf_loss(batches[0])))
    loss_diff = abs(check[0] - check[1])
    if precision == "fp32":
        assert loss_diff / max(abs(check[1]), 1e-12) < TOLERANCE, f"losses differ before training: {check}"
    ours_model.train(), hf.train()

    def step(loss_fn, opt, batch):
        with _autocast(precision):
            loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    systems = {"RankT5-EncDec + RerankerModule (ours)": (ours_loss, ours_opt),
               "HF T5 + F.cross_entropy": (hf_loss, hf_opt)}
    names = list(systems)
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    losses = {n: [] for n in names}
    for k, batch in enumerate(batches):
        for name in (names if k % 2 == 0 else names[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            losses[name].append(step(*systems[name], batch))
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    pairs = lists * batches[0]["mask"].shape[1]
    ref = names[0]
    rows = []
    for name in names:
        measured = times[name][warmup:]
        med = statistics.median(measured)
        row = {"part": "training", "system": name, "precision": precision, "pairs_per_s": pairs / med,
               "lists_per_s": lists / med, "seconds": med, "cpu_seconds": statistics.median(cpu[name][warmup:]),
               "seconds_all": [round(x, 4) for x in measured], "warmup_s": [round(x, 4) for x in times[name][:warmup]],
               "loss_first": losses[name][0], "loss_last": losses[name][-1], "lists": lists, "pairs": pairs}
        if name != ref:
            ratios = [a / b for a, b in zip(measured, times[ref][warmup:])]
            row.update(vs=ref, ratio=statistics.median(ratios), ratio_medians=med / statistics.median(
                times[ref][warmup:]), step_ratios=[round(x, 3) for x in ratios], max_abs_diff=loss_diff,
                rel_diff=loss_diff / max(abs(check[1]), 1e-12))
        rows.append(row)
    lengths = [int(x) for b in batches for x in b["pairs"]["attention_mask"].sum(1)]
    notes = {"training tokens per pair": f"mean {statistics.mean(lengths):.0f}, "
                                         f"{sum(x >= max_length for x in lengths)}/{len(lengths)} at {max_length}",
             "ours collate (RerankerCollator: tokenise a step's pairs + labels/mask), s per step": round(collate_s, 4),
             f"training losses before any step, dropout off, {precision} (ours, HF)": [round(x, 6) for x in check]}
    return rows, notes


# -- the benchmark -------------------------------------------------------------------------------------------------

def run(data_dir=None, repeats: int | None = None, quick: bool = False, config: str = "t5-small",
        n_pairs: int = N_PAIRS, batch_size: int = BATCH, max_length: int = MAX_LENGTH, warmup: int = WARMUP,
        lists: int = LISTS, list_size: int = LIST_SIZE, train_warmup: int = TRAIN_WARMUP,
        train_steps: int = TRAIN_STEPS, threads: int | None = None, bf16: str = "auto", score: bool = True,
        train: bool = True, seed: int = 0) -> dict:
    """``repeats`` (the runner's ``--repeats``): timed scoring passes. ``quick``: ``QUICK``'s sizes, tiny T5."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if quick:
        config, n_pairs, batch_size, lists, list_size, train_steps = (QUICK[k] for k in (
            "config", "n_pairs", "batch_size", "lists", "list_size", "train_steps"))
        repeats = repeats or QUICK["repeats"]
    repeats = int(repeats or REPEATS)
    import torch

    from retrieval_lab.hardware import native_bf16

    threads = int(threads or os.environ.get(THREADS_ENV) or THREADS)
    torch.set_num_threads(threads)
    native, cpu_what = native_bf16("cpu")
    if bf16 not in ("auto", "on", "off"):
        raise ValueError(f"bf16 must be auto, on or off; got {bf16!r}")
    precisions = ["fp32"] + (["bf16"] if bf16 == "on" or (bf16 == "auto" and native) else [])

    model, tokenizer, model_what = build_model(config, seed)
    collection, split, source = load_texts(data_dir)
    queries, docs = make_pairs(collection, split, n_pairs, seed)
    items = make_lists(collection, split, lists * (train_warmup + train_steps), list_size, seed) if train else []

    rows: list[dict] = []
    notes: dict = {
        "model": model_what,
        "data": source,
        "scoring": f"{len(queries)} pairs in batches of {batch_size}, max length {max_length}, {warmup} warm-up "
                   f"pass(es) + {repeats} timed passes, inference mode, eval mode" if score else "not run",
        "training": f"{lists} lists x {list_size} docs = {lists * list_size} pairs per step, max length "
                    f"{max_length}, {train_warmup} warm-up + {train_steps} timed steps, AdamW lr {LR} weight decay "
                    f"{WEIGHT_DECAY}, loss: listwise softmax CE (ours build_loss('softmax'), HF F.cross_entropy)"
                    if train else "not run",
        "precisions": f"{', '.join(precisions)} ({cpu_what}; bf16={bf16})",
    }
    load = [os.getloadavg()]
    for precision in precisions:
        if score:
            r, n = bench_scoring(model, tokenizer, queries, docs, batch_size, max_length, precision, warmup, repeats)
            rows += r
            notes.update(n)
        if train:
            r, n = bench_training(model, tokenizer, items, lists, max_length, precision, train_warmup, train_steps)
            rows += r
            notes.update(n)
        load.append(os.getloadavg())
    notes.update({
        "torch threads": torch.get_num_threads(),
        "agreement": f"fp32 asserted: max |ours - HF| / max |HF| < {TOLERANCE} (scores on every pair; training "
                     "loss before the first step); bf16: reported only (HF rounds its LM head to bf16, ours "
                     "computes the score in fp32)",
        "not the same": "HF's forward also returns its KV cache (use_cache default) and runs the full LM head; the "
                        "HF AdamW decays the layer-norm weights too (ours: only >= 2-dim parameters), same cost",
        **({"bf16, ours": "the T5 stack (encoder and the decoder step) runs under autocast as HF's does; only the "
                          "last product (the token's row, monoT5's two logits and their softmax) is computed in "
                          "float32"} if "bf16" in precisions else {}),
        "load average (1/5/15 min) before and after each precision": [[round(x, 2) for x in v] for v in load],
    })
    return {"rows": rows, "notes": notes}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", "--smoke", action="store_true", help=f"smoke test: {QUICK}; writes nothing")
    ap.add_argument("--config", choices=["tiny", *CONFIGS], default="t5-small",
                    help="the T5's configuration (tiny: the committed tests/fixtures/models/tiny-t5)")
    ap.add_argument("--pairs", type=int, default=N_PAIRS, help="scored pairs")
    ap.add_argument("--batch-size", type=int, default=BATCH, help="scoring batch size")
    ap.add_argument("--max-length", type=int, default=MAX_LENGTH)
    ap.add_argument("--repeats", type=int, default=None, help=f"timed scoring passes (default {REPEATS})")
    ap.add_argument("--warmup", type=int, default=WARMUP, help="untimed scoring passes (>= 1: the agreement check)")
    ap.add_argument("--lists", type=int, default=LISTS, help="lists per training step")
    ap.add_argument("--list-size", type=int, default=LIST_SIZE, help="docs per list")
    ap.add_argument("--train-warmup", type=int, default=TRAIN_WARMUP, help="untimed training steps")
    ap.add_argument("--train-steps", type=int, default=TRAIN_STEPS, help="timed training steps")
    ap.add_argument("--threads", type=int, default=None, help=f"torch threads (default ${THREADS_ENV}, else {THREADS})")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="also bf16 autocast: auto = only where the CPU has native bf16")
    ap.add_argument("--no-score", dest="score", action="store_false", help="skip the scoring measurement")
    ap.add_argument("--no-train", dest="train", action="store_false", help="skip the training measurement")
    ap.add_argument("--data", type=Path, default=None, help="collections root (holding scifact/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None,
                    help="write OUT/rankt5.json and .md (default: benchmarks/results, for a full run only)")
    args = ap.parse_args(argv)
    kwargs = dict(data_dir=args.data, repeats=args.repeats, quick=args.quick, config=args.config,
                  n_pairs=args.pairs, batch_size=args.batch_size, max_length=args.max_length, warmup=args.warmup,
                  lists=args.lists, list_size=args.list_size, train_warmup=args.train_warmup,
                  train_steps=args.train_steps, threads=args.threads, bf16=args.bf16, score=args.score,
                  train=args.train, seed=args.seed)
    from benchmarks import run as runner

    module = sys.modules[__name__]
    rows, notes, env = runner.timed_run(module, lambda: run(**kwargs))
    out = args.out
    if out is None and not args.quick and args.config != "tiny":
        out = runner.DEFAULT_OUT
    if out is not None:
        runner.write("rankt5", module, rows, notes, env, out)
        print(f"wrote {out / 'rankt5.json'} and {out / 'rankt5.md'}", file=sys.stderr)
    for key, value in notes.items():
        print(f"- {key}: {value}")
    print()
    print(runner.markdown_table(rows, COLUMNS), flush=True)


if __name__ == "__main__":
    main()
