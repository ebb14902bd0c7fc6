"""Dense search throughput: ``FaissIndex.search`` vs calling faiss directly.

Random unit vectors of SciFact's shape (5,183 docs x 384 dims, 300 queries; 384 = MiniLM's
dimension), inner product, k = 1000 and k = 10, for ``Flat`` and ``HNSW32`` (faiss defaults:
efSearch 16, so max(16, k) candidates). Both sides search the SAME faiss index object with the
same thread count and the same effective search parameters (for HNSW with k > efSearch,
``FaissIndex`` searches with efSearch = k, so the direct call gets those SearchParameters too);
"faiss" returns the raw (D, I) arrays, "ours" (``FaissIndex.search``)
returns ``list[list[(doc_id, score)]]``, "run" (``FaissIndex.search_run``) a Run dict
qid -> doc id -> score, and "arrays" (``FaissIndex.search_arrays``) scores and id positions
(no Python objects). Timings are the median of interleaved repeats.

Also reports the serialised index size per vector and recall@k against exact search.

    .venv/bin/python -m benchmarks.bench_faiss [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

N_DOCS, DIM, N_QUERIES = 5183, 384, 300
# (label, factory, FaissIndex kwargs): faiss defaults, plus HNSW with a usable efSearch
CONFIGS = (("Flat", "Flat", {}), ("HNSW32", "HNSW32", {}),
           ("HNSW32 ef128", "HNSW32", {"ef_search": 128}))
KS = (1000, 10)


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(data_dir=None, threads: int | None = None, repeats: int = 7, seed: int = 0) -> list[dict]:
    """One row per (index, k). ``data_dir`` is accepted for the runner's uniform signature and
    unused: the vectors are random (only SciFact's shape matters for throughput)."""
    import faiss

    from retrieval_lab.indexes.faiss_index import FaissIndex

    rng = np.random.default_rng(seed)
    docs = _unit(rng, N_DOCS, DIM)
    queries = _unit(rng, N_QUERIES, DIM)
    ids = [f"doc{i}" for i in range(N_DOCS)]
    exact = np.argsort(-(queries @ docs.T), axis=1)

    rows = []
    qids = [f"q{i}" for i in range(N_QUERIES)]
    for label, factory, kwargs in CONFIGS:
        idx = FaissIndex(factory, metric="ip", threads=threads, **kwargs)
        build_s = _timed(lambda: idx.build(docs, ids))
        raw = idx.index  # the very index object FaissIndex searches
        nthreads = idx.threads
        for k in KS:
            faiss.omp_set_num_threads(nthreads)
            params = idx.search_parameters(k)  # None, or HNSW efSearch = k
            calls = {
                "faiss": lambda: raw.search(queries, k, params=params),
                "ours": lambda: idx.search(queries, k),
                "run": lambda: idx.search_run(qids, queries, k),
                "ours_arrays": lambda: idx.search_arrays(queries, k),
            }
            for fn in calls.values():  # warm-up
                fn()
            times: dict[str, list[float]] = {name: [] for name in calls}
            names = list(calls)
            for r in range(repeats):  # interleave, rotating the order, to spread machine noise
                for name in names[r % len(names):] + names[:r % len(names)]:
                    faiss.omp_set_num_threads(nthreads)
                    times[name].append(_timed(calls[name]))
            med = {name: statistics.median(ts) for name, ts in times.items()}
            res = idx.search(queries, k)
            recall = np.mean([len({d for d, _ in r} & {ids[j] for j in e[:k]}) / k
                              for r, e in zip(res, exact)])
            rows.append({
                "index": label,
                "factory": factory,
                "ef_search": idx.ef_search,
                "k": k,
                "threads": nthreads,
                "queries": N_QUERIES,
                "docs": N_DOCS,
                "dim": DIM,
                "faiss_qps": N_QUERIES / med["faiss"],
                "ours_qps": N_QUERIES / med["ours"],
                "ours_arrays_qps": N_QUERIES / med["ours_arrays"],
                "run_qps": N_QUERIES / med["run"],
                "ratio": med["faiss"] / med["ours"],  # ours/faiss throughput; 1.0 = no overhead
                "ratio_arrays": med["faiss"] / med["ours_arrays"],
                "ratio_run": med["faiss"] / med["run"],
                "faiss_ms": med["faiss"] * 1e3,
                "ours_ms": med["ours"] * 1e3,
                "bytes_per_vector": idx.bytes_per_vector(),
                "recall@k": float(recall),
                "build_s": build_s,
                "faiss_version": faiss.__version__,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| index | k | threads | faiss q/s | search q/s | search/faiss | search_run/faiss | "
            "search_arrays/faiss | index bytes/vector | recall@k |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['index']} | {r['k']} | {r['threads']} | {r['faiss_qps']:,.0f} | "
            f"{r['ours_qps']:,.0f} | {r['ratio']:.2f} | {r['ratio_run']:.2f} | "
            f"{r['ratio_arrays']:.2f} | {r['bytes_per_vector']:,.1f} | {r['recall@k']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="faiss threads (default: all cores)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rows = run(threads=args.threads, repeats=args.repeats)
    print(f"{N_DOCS} x {DIM} docs, {N_QUERIES} queries, faiss {rows[0]['faiss_version']}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
