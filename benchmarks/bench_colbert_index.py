"""ColBERT multi-vector index on real SciFact documents: build cost vs corpus size, and end-to-end search trade-offs.

Data: the first N documents of SciFact's corpus (``title text``, as the pipeline indexes them), encoded by a
ColBERT model: by default all-MiniLM-L6-v2 loaded as ColBERT (``ColBERT.from_pretrained``: [Q]/[D] markers
added, a RANDOM linear layer to 128 dims, fixed init (INIT_SEED): an untrained ColBERT, so the absolute recall figures are
those of untrained vectors), or ``--model PATH``, a trained ColBERT folder. Queries: the first Q SciFact test
queries (those with test judgments), encoded once per size (excluded from every latency).

Per corpus size N (``--sizes``, default 1000, 2000, 5000), in two fresh subprocesses so that each one's peak
memory is its own (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the high-water mark of resident memory, which
counts the memory-mapped store pages a process touched):

1. ``encode``: model load, corpus read, ``TokenStore.write`` (encoding in chunks, float16 store): encoding
   seconds, documents/s, token vectors, store bytes (the folder); peak RSS of the process and its increase
   during encoding;
2. ``index``: ``TokenStore.load`` (memory-mapped), ``TokenIVF.build`` (IVFPQ over every token vector; the
   paper's P=2000 partitions, s=16 sub-vectors, lowered by ``plan_ivf`` for small collections): build seconds,
   in-memory bytes (``TokenIVF.nbytes``) and file bytes; peak RSS after the build; then exhaustive MaxSim
   latency per query (``MultiVectorIndex(mode="exhaustive").search_one``, top-100; median and p90 ms, and the
   gather / maxsim split) and the peak RSS after it.

On the largest size (its own store and IVFPQ), end-to-end search (``MultiVectorIndex(mode="end_to_end")``,
top-10), for nprobe in {1, 2, 5, 10, 20} at k'=1000 and for k' in {100, 250, 500, 1000, 2000} at nprobe=10:
latency per query (median, p90; mean split into candidates / gather / maxsim), candidate documents per query,
and, against the exhaustive oracle computed once per query: the candidates' recall of the oracle's top-10 and
top-100 and the share of the oracle's top-10 in the returned top-10 (the definitions of
``MultiVectorIndex.oracle_agreement``; for the default setting the two are checked to agree).

Writes (besides the runner's ``colbert_index.json`` / ``.md``) two plots to the results folder:
``colbert_index_growth.png`` (build time, bytes, peak memory vs corpus size) and ``colbert_index_tradeoff.png``
(latency and recall vs nprobe and vs k').

    .venv/bin/python -m benchmarks.run colbert_index                       # full: minutes of encoding on CPU
    .venv/bin/python -m benchmarks.bench_colbert_index [--quick] [--sizes 1000,2000,5000] [--queries 50]
        [--model PATH] [--partitions 2000] [--subvectors 16] [--threads T] [--out DIR] [--work DIR]
    --quick: sizes 50,100, 5 queries (a smoke test; write it elsewhere with --out)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PACKAGES = ("torch", "transformers", "faiss-cpu", "numpy", "matplotlib")
HERE = Path(__file__).resolve().parent
THREADS_ENV = "RETRIEVAL_LAB_BENCH_THREADS"  # as bench_encode; default: torch's and faiss's own (all cores)
DEFAULT_OUT = HERE / "results"
DEFAULT_DATA = "/work/shared/datasets"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SIZES, N_QUERIES, QUICK_SIZES, QUICK_QUERIES = (1000, 2000, 5000), 50, (50, 100), 5
NPROBES, K_PRIMES, FIXED_NPROBE, FIXED_K_PRIME = (1, 2, 5, 10, 20), (100, 250, 500, 1000, 2000), 10, 1000
PARTITIONS, SUBVECTORS, BATCH, CHUNK_DOCS, EXHAUSTIVE_K, TOP_K = 2000, 16, 32, 256, 100, 10


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _ms(xs) -> tuple[float, float]:
    return 1e3 * statistics.median(xs), 1e3 * float(np.percentile(xs, 90))


# -- child processes -------------------------------------------------------------------------------------------

def child_encode(a) -> dict:
    """Encode the first ``a.size`` documents into ``a.work/store``; the first ``a.queries`` test queries into
    ``a.work/queries.npz``."""
    import torch

    from retrieval_lab.data import load_beir
    from retrieval_lab.indexes.token_store import TokenStore
    from retrieval_lab.models.backbone import resolve_backbone
    from retrieval_lab.models.colbert import ColBERT

    if a.threads:
        torch.set_num_threads(a.threads)
    rss0 = _max_rss_mib()
    # an untrained ColBERT's new weights come from a fixed generator (models/colbert.py INIT_SEED): the same model
    # in every process
    t = time.perf_counter()
    model = ColBERT.from_pretrained(a.model or resolve_backbone(MODEL)).eval()
    load_s = time.perf_counter() - t
    collection = load_beir(Path(a.data) / "scifact", splits=["test"])
    docs = list(collection.corpus)[: a.size]
    test = collection.qrels["test"]
    qids = [q for q in collection.queries if q in test][: a.queries]
    rss_before = _max_rss_mib()

    def encode(texts):
        return model.encode_docs(texts, batch_size=BATCH, precision=a.precision, show_progress=False)

    t = time.perf_counter()
    manifest = TokenStore.write(a.work / "store", [d.id for d in docs], [d.contents() for d in docs], encode,
                                dim=model.dim, dtype="float16", chunk_docs=CHUNK_DOCS)
    write_s = time.perf_counter() - t
    rss_after = _max_rss_mib()
    t = time.perf_counter()
    q = model.encode_queries([collection.queries[x] for x in qids], precision=a.precision)
    query_s = time.perf_counter() - t
    np.savez(a.work / "queries.npz", qids=np.array(qids), **{f"q{i}": x.numpy() for i, x in enumerate(q)})
    return {"docs": len(docs), "tokens": manifest["num_tokens"], "tokens_per_doc": manifest["num_tokens"] / len(docs),
            "encode_s": manifest["encode_seconds"], "write_s": write_s, "docs_per_s": len(docs) / write_s,
            "store_bytes": _folder_bytes(a.work / "store"), "model_load_s": load_s,
            "query_encode_ms": 1e3 * query_s / max(len(qids), 1), "queries": len(qids),
            "dim": model.dim, "doc_max_length": model.doc_max_length, "precision": a.precision,
            "torch_threads": torch.get_num_threads(), "rss_start_mib": rss0, "rss_before_encode_mib": rss_before,
            "peak_rss_encode_mib": rss_after, "encode_rss_increase_mib": rss_after - rss_before}


def _load_queries(work: Path) -> tuple[list[str], list[np.ndarray]]:
    z = np.load(work / "queries.npz")
    qids = [str(x) for x in z["qids"]]
    return qids, [z[f"q{i}"] for i in range(len(qids))]


def child_index(a) -> dict:
    """Build the IVFPQ over ``a.work/store``, time exhaustive MaxSim; with ``a.tradeoff`` also sweep end-to-end."""
    import faiss
    import torch

    from retrieval_lab.indexes.multi_vector import MultiVectorIndex, TokenIVF
    from retrieval_lab.indexes.token_store import TokenStore

    if a.threads:
        torch.set_num_threads(a.threads)
        faiss.omp_set_num_threads(a.threads)
    rss0 = _max_rss_mib()
    store = TokenStore.load(a.work / "store")
    t = time.perf_counter()
    ivf = TokenIVF.build(store, partitions=a.partitions, subvectors=a.subvectors, seed=0)
    ivf_s = time.perf_counter() - t
    rss_ivf = _max_rss_mib()
    ivf.save(a.work / "ivf")
    qids, queries = _load_queries(a.work)

    exhaustive = MultiVectorIndex(store, mode="exhaustive")
    exhaustive.search_one(queries[0], EXHAUSTIVE_K)  # warm-up (pages in the store)
    times, timer, oracle = [], {}, []
    for q in queries:
        t = time.perf_counter()
        exhaustive.search_one(q, EXHAUSTIVE_K, timer)
        times.append(time.perf_counter() - t)
    for q in queries:  # the oracle: every document's exact score (untimed)
        oracle.append(np.argsort(-store.score_all(q), kind="stable"))
    med, p90 = _ms(times)
    out = {"docs": len(store), "tokens": store.num_tokens, "ivf_build_s": ivf_s,
           "ivf_train_s": ivf.settings["train_seconds"], "ivf_bytes": ivf.nbytes(),
           "ivf_file_bytes": _folder_bytes(a.work / "ivf"),
           "ivf": {k: ivf.settings[k] for k in ("partitions", "subvectors", "bits", "train_vectors", "notes")},
           "exhaustive_ms": med, "exhaustive_p90_ms": p90,
           "exhaustive_gather_ms": 1e3 * (timer["gather"] + timer.get("convert", 0.0)) / len(queries),
           "exhaustive_maxsim_ms": 1e3 * timer["maxsim"] / len(queries),
           "rss_start_mib": rss0, "peak_rss_ivf_mib": rss_ivf, "ivf_rss_increase_mib": rss_ivf - rss0,
           "peak_rss_search_mib": _max_rss_mib(), "faiss_threads": faiss.omp_get_max_threads(),
           "torch_threads": torch.get_num_threads()}
    if a.tradeoff:
        out["tradeoff"] = sweep(store, ivf, qids, queries, oracle)
    return out


def sweep(store, ivf, qids, queries, oracle) -> list[dict]:
    from retrieval_lab.indexes.multi_vector import MultiVectorIndex

    settings = [("nprobe", n, FIXED_K_PRIME) for n in NPROBES] + [("k_prime", kp, FIXED_NPROBE) for kp in K_PRIMES]
    rows = []
    for varied, nprobe, k_prime in ((v, x, f) if v == "nprobe" else (v, f, x) for v, x, f in settings):
        index = MultiVectorIndex(store, ivf, mode="end_to_end", nprobe=nprobe, candidates=k_prime)
        index.search_one(queries[0], TOP_K)  # warm-up
        times, timer, n_cand, rec10, rec100, agree = [], {}, [], [], [], []
        run = {}
        for qid, q, order in zip(qids, queries, oracle):
            t = time.perf_counter()
            top, docs = index.search_one(q, TOP_K, timer)
            times.append(time.perf_counter() - t)
            run[qid] = top
            n_cand.append(len(docs))
            cand = set(docs.tolist())
            o10, o100 = order[:10].tolist(), order[:100].tolist()
            rec10.append(np.mean([d in cand for d in o10]))
            rec100.append(np.mean([d in cand for d in o100]))
            want = {store.doc_ids[d] for d in o10}
            agree.append(sum(d in want for d in sorted(top, key=top.get, reverse=True)[:10]) / len(o10))
        med, p90 = _ms(times)
        nq = len(queries)
        row = {"varied": varied, "nprobe": nprobe, "k_prime": k_prime, "ms": med, "p90_ms": p90,
               **{f"{key}_ms": 1e3 * timer.get(key, 0.0) / nq for key in ("candidates", "gather", "convert", "maxsim")},
               "candidate_docs": float(np.mean(n_cand)), "candidate_recall@10": float(np.mean(rec10)),
               "candidate_recall@100": float(np.mean(rec100)), "top10_agreement": float(np.mean(agree))}
        if nprobe == FIXED_NPROBE and k_prime == FIXED_K_PRIME and not any("checked" in r for r in rows):
            ref = index.oracle_agreement(qids, queries, run)  # the index's own definition, for a cross-check
            mine = {k: round(row[k], 4) for k in ref}
            assert all(abs(mine[k] - ref[k]) < 1e-3 for k in ref), (mine, ref)
            row["checked"] = "matches MultiVectorIndex.oracle_agreement"
        rows.append(row)
    return rows


def _child(argv) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=("encode", "index"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--size", type=int)
    ap.add_argument("--queries", type=int)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--model", default=None)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--partitions", type=int, default=PARTITIONS)
    ap.add_argument("--subvectors", type=int, default=SUBVECTORS)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tradeoff", action="store_true")
    a = ap.parse_args(argv)
    result = child_encode(a) if a.stage == "encode" else child_index(a)
    print("RESULT " + json.dumps(result, default=float))


def _run_child(args: list[str]) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_colbert_index", "--child", *args],
                          cwd=HERE.parent, env=env, capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[:1]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# -- the benchmark ---------------------------------------------------------------------------------------------------

def run(data_dir=None, quick: bool = False, sizes=None, n_queries: int | None = None, model: str | None = None,
        partitions: int = PARTITIONS, subvectors: int = SUBVECTORS, precision: str = "fp32",
        threads: int | None = None, out: Path | None = None, work: Path | None = None) -> dict:
    data = Path(data_dir or os.environ.get("RETRIEVAL_LAB_DATA") or DEFAULT_DATA)
    sizes = sorted(int(s) for s in (sizes or (QUICK_SIZES if quick else SIZES)))
    n_queries = int(n_queries or (QUICK_QUERIES if quick else N_QUERIES))
    out = Path(out) if out is not None else DEFAULT_OUT
    common = ["--data", str(data), "--partitions", str(partitions), "--subvectors", str(subvectors),
              "--precision", precision]
    if model:
        common += ["--model", str(model)]
    threads = threads or (int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None)
    if threads:
        common += ["--threads", str(threads)]

    rows, tradeoff = [], []
    with tempfile.TemporaryDirectory(prefix="bench_colbert_index_") as tmp:
        root = Path(work or tmp)
        for size in sizes:
            folder = root / f"size_{size}"
            folder.mkdir(parents=True, exist_ok=True)
            args = ["--work", str(folder), *common]
            enc = _run_child(["encode", "--size", str(size), "--queries", str(n_queries), *args])
            idx = _run_child(["index", *args, *(["--tradeoff"] if size == sizes[-1] else [])])
            tradeoff = idx.pop("tradeoff", tradeoff)
            rows.append({"part": "growth", "docs": enc["docs"], "tokens": enc["tokens"],
                         "tokens_per_doc": enc["tokens_per_doc"], "encode_s": enc["write_s"],
                         "docs_per_s": enc["docs_per_s"], "store_bytes": enc["store_bytes"],
                         "ivf_build_s": idx["ivf_build_s"], "ivf_train_s": idx["ivf_train_s"],
                         "ivf_bytes": idx["ivf_bytes"], "ivf_file_bytes": idx["ivf_file_bytes"],
                         "ivf_partitions": idx["ivf"]["partitions"], "ivf_bits": idx["ivf"]["bits"],
                         "peak_rss_encode_mib": enc["peak_rss_encode_mib"],
                         "encode_rss_increase_mib": enc["encode_rss_increase_mib"],
                         "peak_rss_ivf_mib": idx["peak_rss_ivf_mib"], "ivf_rss_increase_mib": idx["ivf_rss_increase_mib"],
                         "peak_rss_search_mib": idx["peak_rss_search_mib"],
                         "exhaustive_ms": idx["exhaustive_ms"], "exhaustive_p90_ms": idx["exhaustive_p90_ms"],
                         "exhaustive_gather_ms": idx["exhaustive_gather_ms"],
                         "exhaustive_maxsim_ms": idx["exhaustive_maxsim_ms"], "queries": enc["queries"],
                         "ivf_notes": idx["ivf"]["notes"]})
    largest = rows[-1]
    rows += [{"part": "tradeoff", "docs": largest["docs"], **r} for r in tradeoff]
    plots = plot(rows, out)
    notes = {
        "model": f"{model or MODEL + ' as an untrained ColBERT (random linear layer from INIT_SEED)'}; "
                 f"dim {enc['dim']}, doc_max_length {enc['doc_max_length']}, {precision}, batch {BATCH}, "
                 f"torch threads {enc['torch_threads']}, faiss threads {idx['faiss_threads']}",
        "queries": f"first {largest['queries']} SciFact test queries; encoding {enc['query_encode_ms']:.1f} ms/query "
                   f"(excluded from the latencies)",
        "IVFPQ asked": f"P={partitions}, s={subvectors}, 8 bits; per size as planned: "
                       + "; ".join(f"{r['docs']} docs: P={r['ivf_partitions']}, {r['ivf_bits']} bits"
                                   for r in rows if r["part"] == "growth"),
        "peak RSS": "ru_maxrss of the encode process (model + encoding) and of the index process (IVFPQ build, "
                    "then search: includes the store pages it touched)",
        "plots": [str(p) for p in plots],
    }
    return {"rows": rows, "notes": notes}


def plot(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    g = [r for r in rows if r["part"] == "growth"]
    n = [r["docs"] for r in g]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    ax[0].plot(n, [r["encode_s"] for r in g], "o-", label="token store (encoding)")
    ax[0].plot(n, [r["ivf_build_s"] for r in g], "s-", label="IVFPQ build")
    ax[0].set(xlabel="documents", ylabel="seconds", title="build time")
    mib = 2 ** 20
    ax[1].plot(n, [r["store_bytes"] / mib for r in g], "o-", label="token store (fp16)")
    ax[1].plot(n, [r["ivf_bytes"] / mib for r in g], "s-", label="IVFPQ (in memory)")
    ax[1].set(xlabel="documents", ylabel="MiB", title="size")
    ax[2].plot(n, [r["peak_rss_encode_mib"] for r in g], "o-", label="encode process")
    ax[2].plot(n, [r["peak_rss_ivf_mib"] for r in g], "s-", label="index process, after IVFPQ build")
    ax[2].plot(n, [r["peak_rss_search_mib"] for r in g], "^-", label="index process, after exhaustive search")
    ax[2].set(xlabel="documents", ylabel="MiB", title="peak RSS")
    for a in ax:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.suptitle("ColBERT token index on SciFact: cost vs corpus size")
    fig.tight_layout()
    growth = out / "colbert_index_growth.png"
    fig.savefig(growth, dpi=110)
    plt.close(fig)

    t = [r for r in rows if r["part"] == "tradeoff"]
    exhaustive = g[-1]["exhaustive_ms"]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for col, (varied, label, fixed) in enumerate((("nprobe", "nprobe", f"k'={FIXED_K_PRIME}"),
                                                  ("k_prime", "k'", f"nprobe={FIXED_NPROBE}"))):
        rs = [r for r in t if r["varied"] == varied]
        x = [r[varied] for r in rs]
        lat = ax[0, col]
        lat.plot(x, [r["ms"] for r in rs], "o-", label="total (median)")
        for key in ("candidates", "gather", "convert", "maxsim"):
            lat.plot(x, [r[f"{key}_ms"] for r in rs], ".--", label=f"{key} (mean)")
        lat.axhline(exhaustive, color="gray", ls=":", label=f"exhaustive ({exhaustive:.1f} ms)")
        lat.set(xlabel=label, ylabel="ms per query", title=f"latency vs {label} ({fixed}, {g[-1]['docs']} docs)")
        rec = ax[1, col]
        for key in ("candidate_recall@10", "candidate_recall@100", "top10_agreement"):
            rec.plot(x, [r[key] for r in rs], "o-", label=key)
        rec.set(xlabel=label, ylabel="vs exhaustive MaxSim", ylim=(0, 1.02), title=f"recall vs {label} ({fixed})")
        for a in (lat, rec):
            a.set_xscale("log")
            a.legend(fontsize=8)
            a.grid(alpha=0.3)
    fig.tight_layout()
    trade = out / "colbert_index_tradeoff.png"
    fig.savefig(trade, dpi=110)
    plt.close(fig)
    return [growth, trade]


GROWTH = [("docs", "docs", None), ("tokens", "token vectors", ",d"), ("encode_s", "encode s", ".1f"),
          ("docs_per_s", "docs/s", ".1f"), ("store_bytes", "store MiB", None), ("ivf_build_s", "IVFPQ s", ".1f"),
          ("ivf_bytes", "IVFPQ MiB", None), ("ivf_partitions", "P", None),
          ("peak_rss_encode_mib", "peak RSS encode MiB", ".0f"), ("peak_rss_ivf_mib", "peak RSS IVFPQ MiB", ".0f"),
          ("peak_rss_search_mib", "peak RSS search MiB", ".0f"), ("exhaustive_ms", "exhaustive ms/query", ".1f"),
          ("exhaustive_p90_ms", "p90", ".1f")]
TRADEOFF = [("nprobe", "nprobe", None), ("k_prime", "k'", None), ("ms", "ms/query", ".1f"), ("p90_ms", "p90", ".1f"),
            ("candidates_ms", "candidates ms", ".1f"), ("gather_ms", "gather ms", ".1f"),
            ("convert_ms", "convert ms", ".1f"), ("maxsim_ms", "maxsim ms", ".1f"), ("candidate_docs", "candidate docs", ".0f"),
            ("candidate_recall@10", "cand. recall@10", ".3f"), ("candidate_recall@100", "cand. recall@100", ".3f"),
            ("top10_agreement", "top-10 agreement", ".3f")]


def markdown(rows: list[dict]) -> str:
    from benchmarks.run import markdown_table

    mib = lambda r: {**r, "store_bytes": f"{r['store_bytes'] / 2**20:.1f}",  # noqa: E731
                     "ivf_bytes": f"{r['ivf_bytes'] / 2**20:.1f}"}
    growth = [mib(r) for r in rows if r["part"] == "growth"]
    trade = [r for r in rows if r["part"] == "tradeoff"]
    docs = trade[0]["docs"] if trade else ""
    return "\n".join(["### cost vs corpus size", "", markdown_table(growth, GROWTH), "",
                      f"### end-to-end search on {docs} documents (top-10), vs exhaustive MaxSim", "",
                      markdown_table(trade, TRADEOFF)])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, {QUICK_QUERIES} queries")
    ap.add_argument("--sizes", default=None, help=f"comma-separated corpus sizes (default {SIZES})")
    ap.add_argument("--queries", type=int, default=None, help=f"test queries (default {N_QUERIES})")
    ap.add_argument("--model", default=None, help="a trained ColBERT folder (default: MiniLM as ColBERT)")
    ap.add_argument("--partitions", type=int, default=PARTITIONS)
    ap.add_argument("--subvectors", type=int, default=SUBVECTORS)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=None,
                    help=f"torch and faiss threads (default ${THREADS_ENV}, else theirs: all cores)")
    ap.add_argument("--data", default=None, help="collections root (default $RETRIEVAL_LAB_DATA)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where colbert_index.{json,md,*.png} go")
    ap.add_argument("--work", type=Path, default=None, help="keep the stores and indexes here (default: temp)")
    a = ap.parse_args(argv)
    from benchmarks import run as runner

    module = sys.modules[__name__]
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else None
    rows, notes, env = runner.timed_run(module, lambda: run(
        a.data, quick=a.quick, sizes=sizes, n_queries=a.queries, model=a.model, partitions=a.partitions,
        subvectors=a.subvectors, precision=a.precision, threads=a.threads, out=a.out, work=a.work))
    print(runner.write("colbert_index", module, rows, notes, env, a.out))
    print(f"wrote {a.out / 'colbert_index.json'}, .md and the plots", file=sys.stderr)


if __name__ == "__main__":
    main()
